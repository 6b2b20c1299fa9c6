"""Listener connections kept open between polls.

A poll with new mail otherwise connects to the local SMTP or LMTP listener,
reads its banner, says EHLO (and logs in, for ``esmtpname``) and QUITs at the
end: both sides' work for every poll, where one connection can serve the
polls of every mailbox that delivers to the same listener the same way. A
connection is kept only after a poll that ended cleanly with no reply
outstanding and nothing sent ahead; the next poll starts its first
transaction with RSET, as every later transaction on a connection does, and
one that went stale meanwhile (the listener's idle timeout, a restart) is
replaced before any of that message is sent (``SmtpSink.deliver``). One that
has anything unread when it is taken (a 421 sent while idle, a stray reply)
is closed unused: a reply out of turn must never be read as a later one.

``batchlimit`` counts a connection's transactions across the polls it serves.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING

from retrieval.engine.errors import EngineError
from retrieval.engine.wire.idle_pool import NOWHERE, IdlePool

if TYPE_CHECKING:
    from collections.abc import Callable

    from retrieval.engine.deliver.smtp import _Listener
    from retrieval.engine.ports import Transcript
    from retrieval.engine.spec import DeliverySpec


class KeptListeners:
    """The idle listener connections of one process, by how they were opened."""

    def __init__(
        self,
        idle_seconds: float,
        max_connections: int = 1000,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_connections = max_connections
        self._pool: IdlePool[_Listener] = IdlePool(
            idle_seconds, max_connections, close=_goodbye, clock=clock
        )

    def __len__(self) -> int:
        return len(self._pool)

    @staticmethod
    def key(delivery: DeliverySpec, *, lmtp: bool, helo: str) -> str | None:
        """What a connection for ``delivery`` was opened with: the listener
        list, EHLO name, the domain for bare names and the login; None when a
        program speaks for the listener (``plugout``), whose connection is
        not kept."""
        if delivery.plugout:
            return None
        password = delivery.esmtp_password.reveal() if delivery.esmtp_password else ""
        text = repr(
            (
                delivery.hosts,
                delivery.port,
                lmtp,
                helo,
                delivery.timeout,
                delivery.smtpaddress,
                delivery.esmtp_name,
                password,
                delivery.esmtp_auth,
                delivery.listener_verify,
                delivery.listener_ca_file,
            )
        )
        # A digest: the key may be shown; the password must not be.
        return hashlib.sha256(text.encode()).hexdigest()

    def take(self, key: str, transcript: Transcript) -> _Listener | None:
        """An idle connection opened the same way, recording into
        ``transcript``; None when there is none fit to use."""
        listener = self._pool.take(key)
        if listener is None:
            return None
        conn = listener.conn
        conn.rebind(transcript)
        opened = time.strftime("%H:%M:%S", time.gmtime(listener.opened_at))
        try:
            unread = conn.wait_for_data(0)
        except EngineError:
            unread = True  # closed by the listener
        if unread:
            conn.note(
                f"the {listener.name} connection kept since {opened} UTC was "
                "closed or spoke out of turn; connecting anew"
            )
            conn.close()
            return None
        conn.note(
            f"reusing the {listener.name} connection opened at {opened} UTC "
            f"({listener.transactions} messages on it)"
        )
        return listener

    def give(self, key: str, listener: _Listener) -> None:
        listener.conn.rebind(NOWHERE)  # its goodbye, later, belongs to no poll
        self._pool.give(key, listener)

    def sweep(self) -> int:
        return self._pool.sweep()

    def close_all(self) -> None:
        self._pool.close_all()


def _goodbye(listener: _Listener) -> None:
    """QUIT without waiting for the reply: nothing depends on it."""
    try:
        listener.conn.send_line("QUIT")
    except EngineError:
        pass
    finally:
        listener.conn.close()
