"""What the poll loop needs from a mail server, whatever the protocol.

:func:`open_session` connects, applies the TLS policy, logs in and returns a
:class:`MailSession`; POP3 and IMAP each implement it (``pop3.py``, ``imap.py``),
so ``run.py`` holds the delivery rules once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from retrieval.engine.errors import ConfigError, TlsError
from retrieval.engine.spec import MailProtocol, TlsMode
from retrieval.engine.wire.tls import (
    check_fingerprint,
    client_context,
    fingerprint_algorithm,
    version_note,
)
from retrieval.engine.wire.tunnel import connect_server

if TYPE_CHECKING:
    from collections.abc import Callable

    from retrieval.engine.fetch.kept import KeptSessions
    from retrieval.engine.ports import ProgressStep, Transcript
    from retrieval.engine.spec import MailboxSpec
    from retrieval.engine.wire.spool import MessageSpool

# A server that claims more messages than this gets the first ones handled and
# the rest left for the next poll (catalogue 33: STAT claiming 4 billion).
MAX_MESSAGES_PER_FOLDER = 100_000
# RFC 1939 allows 70 characters; fetchmail keeps 128 (IDLEN), which also fits
# the database column the Django ledger stores UIDs in.
MAX_UID_LENGTH = 128
RFC_UID_LENGTH = 70
_Key = TypeVar("_Key", str, int)


@dataclass(frozen=True)
class RemoteMessage:
    uid: str  # POP3 UIDL or IMAP UID, as text; the ledger's key
    number: int  # POP3 message number or IMAP UID, what commands name
    size: int = -1  # as the server declared it; -1 when unknown
    seen: bool = False  # IMAP \\Seen when listed (read by some client): "old"


@dataclass
class FolderListing:
    folder: str
    uidvalidity: int | None
    messages: list[RemoteMessage] = field(default_factory=list)
    # The ledger cannot be trusted for this folder (POP3 without UIDL): every
    # message counts as new and nothing is recorded.
    ephemeral_uids: bool = False
    # Not every message was listed (more than MAX_MESSAGES_PER_FOLDER, or a
    # fastuidl search): the ledger must not be pruned from this listing.
    truncated: bool = False
    notes: list[str] = field(default_factory=list)


class MailSession(Protocol):
    greeting: str
    protocol_label: str  # "POP3", "IMAPS", ... for the trace header
    server_address: str
    # Things worth telling the user that happened outside any one call's result
    # (a deferred DELE refused, a server quirk); run.py moves them to the report.
    notes: list[str]

    def open_folder(
        self,
        folder: str,
        *,
        read_only: bool,
        known: Callable[[str], bool] | None = None,
    ) -> FolderListing:
        """Select ``folder`` and list what it holds, oldest first.

        ``known`` (POP3 fastuidl): the session may skip listing the messages
        before the first one ``known`` rejects, found by binary search.
        """
        ...

    def with_sizes(self, messages: list[RemoteMessage]) -> list[RemoteMessage]:
        """The same messages with their declared sizes, for the size limits."""
        ...

    def prefetch(self, messages: list[RemoteMessage]) -> None:
        """These will be fetched in this order: the session may ask for several
        at once (POP3 PIPELINING, IMAP UID FETCH of a set)."""
        ...

    def fetch(self, message: RemoteMessage) -> MessageSpool:
        """The message in a spool the caller closes; MessageFetchError if just
        this one cannot be read."""
        ...

    def delete(self, message: RemoteMessage) -> list[str]:
        """Ask for a delete; returns UIDs whose removal the server has confirmed."""
        ...

    def close_folder(self) -> list[str]:
        """Commit pending deletes where the protocol can (IMAP expunge)."""
        ...

    def logout(self) -> list[str]:
        """End politely; returns UIDs confirmed deleted by the goodbye (POP3 QUIT)."""
        ...

    make_durable: Callable[[], None]
    """Called right before a command that lets the server commit deletions
    (POP3 QUIT, IMAP STORE \\Deleted + EXPUNGE): the poll's ``Ledger.sync``."""

    def abort(self) -> None:
        """Drop the connection without committing anything."""
        ...


def open_session(
    spec: MailboxSpec,
    transcript: Transcript,
    *,
    on_greeting: Callable[[str], None] | None = None,
    make_durable: Callable[[], None] | None = None,
    on_step: Callable[[ProgressStep], None] | None = None,
    kept: KeptSessions | None = None,
) -> MailSession:
    """Connect, secure and log in; raises an EngineError subclass on any fault.

    ``make_durable`` is the ledger's group commit (``Ledger.sync``): the session
    calls it before every command that lets the server commit deletions, so no
    deletion outlives an unsynced record of its delivery. Sessions that never
    delete (connection tests, probes) leave it out.

    ``on_step`` is told "connecting", "connected", "tls" and "logged_in" as the
    first session gets there (a POP3 reconnect for ``expunge`` is not told).

    1. Connect to ``via`` or ``host`` with a deadline.
    2. Implicit TLS: handshake before the greeting.
    3. The protocol session reads the greeting, upgrades with STARTTLS when the
       mode asks for it (and ends the poll if it cannot), re-reads capabilities,
       and only then sends credentials.

    A POP3 session keeps the means to do all this again: ``expunge N`` ends the
    session with QUIT every N deletions and logs in anew.

    ``kept``: an IMAP session of the same account kept from an earlier poll is
    used instead, when one is there and still answers (``kept.py``); the caller
    gives it back after a clean end.
    """
    # Imported here: each protocol module imports this one for the dataclasses.
    from retrieval.engine.fetch.imap import ImapSession
    from retrieval.engine.fetch.pop3 import Pop3Session

    server = spec.server
    if server.protocol not in (MailProtocol.POP3, MailProtocol.IMAP):
        raise ConfigError(
            f"The {server.protocol.value.upper()} protocol is not supported yet."
        )
    if spec.password is not None:
        _check_line_safe(spec.password.reveal(), "password")
    _check_line_safe(spec.username, "user name")
    for folder in spec.folders:
        _check_line_safe(folder, f"folder name {folder!r}")
    key = kept.key(spec) if kept is not None else None
    if kept is not None and key is not None:
        reused = kept.take(key, transcript)
        if reused is not None:
            if on_greeting is not None:
                on_greeting(reused.greeting)
            reused.make_durable = make_durable or nothing_to_sync
            (on_step or _untold)("logged_in")
            return reused
    mode = server.tls.mode
    context = client_context(server.tls) if mode is not TlsMode.NONE else None
    if context is not None and server.tls.fingerprint:
        fingerprint_algorithm(server.tls.fingerprint)  # a typo fails before connecting
    if context is not None and (note := version_note(server.tls.min_version)):
        transcript.record("*", note)
    server_name = server.tls.server_name or server.host

    def connect(
        greeted: Callable[[str], None] | None,
        told: Callable[[ProgressStep], None],
    ) -> MailSession:
        told("connecting")
        conn = connect_server(server, transcript)  # TCP, or the plugin program
        told("connected")
        try:
            if context is not None and mode is TlsMode.IMPLICIT:
                conn.start_tls(context, server_name)
                check_fingerprint(conn.peer_certificate(), server.tls.fingerprint)
                told("tls")

            def upgrade() -> None:
                if context is None:  # pragma: no cover - guarded by the sessions
                    raise TlsError("TLS was requested without a TLS configuration.")
                conn.start_tls(context, server_name)
                check_fingerprint(conn.peer_certificate(), server.tls.fingerprint)
                told("tls")

            session: MailSession
            if server.protocol is MailProtocol.POP3:
                pop3 = Pop3Session.login(
                    conn, spec, upgrade=upgrade, on_greeting=greeted
                )
                pop3.reconnect = lambda: connect(None, _untold)
                session = pop3
            else:
                session = ImapSession.login(
                    conn, spec, upgrade=upgrade, on_greeting=greeted
                )
            session.make_durable = make_durable or nothing_to_sync
            told("logged_in")
            return session
        except BaseException:
            conn.close()
            raise

    session = connect(on_greeting, on_step or _untold)
    if isinstance(session, ImapSession):
        session.kept_as = key
    return session


def _untold(step: ProgressStep) -> None:
    """No one watches this session's progress."""


def nothing_to_sync() -> None:
    """``make_durable`` of a session without a ledger: it never deletes."""


def progress_note(label: str, size: int) -> str:
    """fetchmail's showdots in one transcript line: a dot per KiB, at most 60."""
    return f"reading message {label} ({size} octets) " + "." * min(
        60, max(1, size // 1024)
    )


def discard_spools(parked: dict[_Key, MessageSpool | str]) -> None:
    """Close spools read ahead of their turn that nobody will ask for now."""
    for value in parked.values():
        if not isinstance(value, str):
            value.close()
    parked.clear()


def _check_line_safe(value: str, what: str) -> None:
    if any(ch in value for ch in "\r\n\0"):
        raise ConfigError(
            f"The {what} contains a line break or NUL character, which no mail "
            "server accepts; nothing was sent."
        )


def valid_uid(uid: str) -> bool:
    """RFC 1939 unique-ids are 1-70 printable ASCII characters; allow some slack."""
    return 0 < len(uid) <= MAX_UID_LENGTH and all("!" <= ch <= "~" for ch in uid)
