"""IMAP sessions kept open between polls, so that the next poll of the same
account skips connecting, the TLS handshake and the login.

A server spends most of an empty poll on those (Dovecot about 10 ms of CPU a
login on the bench's machine, against well under 1 ms for NOOP, SELECT and
SEARCH on a session it already has): an installation that polls its own
server often trades one idle server process per mailbox for that CPU. Only
IMAP: a POP3 server commits deletions at QUIT and locks the maildrop for as
long as the session lasts.

A session is kept only after a poll that ended cleanly (folders closed, so
nothing is pending), and only for a spec whose session nothing else wraps
(no plugin, no pre/postconnect, no link checks, no IDLE). It is handed out
again to the same account (server settings, user and password, so a changed
password logs in anew) as it is when the server sent nothing while it idled,
and after a NOOP answered OK when it did (news, or a BYE before hanging up);
one that died meanwhile (the server's autologout, a restart: its BYE or its
hang-up is waiting) is closed and the poll connects as usual, before anything
of its own is sent. A connection the network cut without a word from either
end (no hang-up arrives) fails that poll at its first command, within the
timeout; the next poll connects anew. Idle sessions older
than ``idle_seconds`` are logged out, as is the least recently used one when
``max_sessions`` are kept (``wire/idle_pool.py``).
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING

from retrieval.engine.errors import EngineError
from retrieval.engine.spec import MailProtocol
from retrieval.engine.wire.idle_pool import NOWHERE, IdlePool

if TYPE_CHECKING:
    from collections.abc import Callable

    from retrieval.engine.fetch.imap import ImapSession
    from retrieval.engine.ports import Transcript
    from retrieval.engine.spec import MailboxSpec


class KeptSessions:
    """The idle IMAP sessions of one process, by account."""

    def __init__(
        self,
        idle_seconds: float,
        max_sessions: int = 1000,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_sessions = max_sessions
        self._pool: IdlePool[ImapSession] = IdlePool(
            idle_seconds, max_sessions, close=_goodbye, clock=clock
        )

    def __len__(self) -> int:
        return len(self._pool)

    @staticmethod
    def key(spec: MailboxSpec) -> str | None:
        """The account a session of ``spec`` is logged in to, or None when such
        a session may not be kept (see the module docstring)."""
        server = spec.server
        if (
            server.protocol is not MailProtocol.IMAP
            or spec.idle
            or server.plugin
            or spec.preconnect
            or spec.postconnect
            or spec.interface
            or spec.monitor
        ):
            return None
        password = spec.password.reveal() if spec.password else ""
        # A digest: the key may be logged or shown; the password must not be.
        text = repr((server, spec.username, password))
        return hashlib.sha256(text.encode()).hexdigest()

    def take(self, key: str, transcript: Transcript) -> ImapSession | None:
        """The idle session of this account, checked alive, now recording into
        ``transcript``; None when there is none (the caller logs in)."""
        session = self._pool.take(key)
        if session is None:
            return None
        session.rebind(transcript)
        opened = time.strftime("%H:%M:%S", time.gmtime(session.opened_at))
        session.polls += 1
        session.note(
            f"reusing the session logged in at {opened} UTC (poll {session.polls} on it)"
        )
        try:
            # Nothing from the server while it idled (no BYE, no hang-up): used
            # as it is. Anything else is read by a NOOP, which must answer OK.
            alive = session.quiet() or session.noop()
        except EngineError:
            alive = False
        if not alive:
            session.note("the kept session is gone; connecting anew")
            session.abort()
            return None
        return session

    def give(self, key: str, session: ImapSession) -> None:
        """Keep ``session`` (its poll ended cleanly, folder closed) for the next
        poll of the account."""
        session.rebind(NOWHERE)  # its goodbye, later, belongs to no poll
        self._pool.give(key, session)

    def sweep(self) -> int:
        """Log out the sessions idle too long; returns how many."""
        return self._pool.sweep()

    def close_all(self) -> None:
        """Log out every idle session (the process is ending)."""
        self._pool.close_all()


def _goodbye(session: ImapSession) -> None:
    session.logout()
