"""What the poll loop needs from a mail server, whatever the protocol.

:func:`open_session` connects, applies the TLS policy, logs in and returns a
:class:`MailSession`; POP3 and IMAP each implement it (``pop3.py``, ``imap.py``),
so ``run.py`` holds the delivery rules once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from retrieval.engine.errors import ConfigError, TlsError
from retrieval.engine.spec import Protocol as MailProtocol
from retrieval.engine.spec import TlsMode
from retrieval.engine.tls import check_fingerprint, client_context
from retrieval.engine.transport import Connection

if TYPE_CHECKING:
    from collections.abc import Callable

    from retrieval.engine.ports import Transcript
    from retrieval.engine.spec import MailboxSpec
    from retrieval.engine.spool import MessageSpool

# A server that claims more messages than this gets the first ones handled and
# the rest left for the next poll (catalogue 33: STAT claiming 4 billion).
MAX_MESSAGES_PER_FOLDER = 100_000
MAX_UID_LENGTH = 512


@dataclass(frozen=True)
class RemoteMessage:
    uid: str  # POP3 UIDL or IMAP UID, as text; the ledger's key
    number: int  # POP3 message number or IMAP UID, what commands name
    size: int = -1  # as the server declared it; -1 when unknown


@dataclass
class FolderListing:
    folder: str
    uidvalidity: int | None
    messages: list[RemoteMessage] = field(default_factory=list)
    # The ledger cannot be trusted for this folder (POP3 without UIDL): every
    # message counts as new and nothing is recorded.
    ephemeral_uids: bool = False
    truncated: bool = False  # more messages than MAX_MESSAGES_PER_FOLDER
    notes: list[str] = field(default_factory=list)


class MailSession(Protocol):
    greeting: str
    protocol_label: str  # "POP3", "IMAPS", ... for the trace header
    server_address: str

    def open_folder(self, folder: str, *, read_only: bool) -> FolderListing:
        """Select ``folder`` and list what it holds, oldest first."""
        ...

    def with_sizes(self, messages: list[RemoteMessage]) -> list[RemoteMessage]:
        """The same messages with their declared sizes, for the size limits."""
        ...

    def fetch(self, message: RemoteMessage, spool: MessageSpool) -> None:
        """Stream the message into ``spool``; MessageFetchError if just this fails."""
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

    def abort(self) -> None:
        """Drop the connection without committing anything."""
        ...


def open_session(
    spec: MailboxSpec,
    transcript: Transcript,
    *,
    on_greeting: Callable[[str], None] | None = None,
) -> MailSession:
    """Connect, secure and log in; raises an EngineError subclass on any fault.

    1. Connect to ``via`` or ``host`` with a deadline.
    2. Implicit TLS: handshake before the greeting.
    3. The protocol session reads the greeting, upgrades with STARTTLS when the
       mode asks for it (and ends the poll if it cannot), re-reads capabilities,
       and only then sends credentials.
    """
    # Imported here: each protocol module imports this one for the dataclasses.
    from retrieval.engine.imap import ImapSession
    from retrieval.engine.pop3 import Pop3Session

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
    port = server.effective_port
    mode = server.tls.mode
    context = client_context(server.tls) if mode is not TlsMode.NONE else None
    server_name = server.tls.server_name or server.host
    conn = Connection.open_tcp(
        server.via or server.host, port, timeout=server.timeout, transcript=transcript
    )
    try:
        if context is not None and mode is TlsMode.IMPLICIT:
            conn.start_tls(context, server_name)
            check_fingerprint(conn.peer_certificate(), server.tls.fingerprint)

        def upgrade() -> None:
            if context is None:  # pragma: no cover - guarded by the sessions
                raise TlsError("TLS was requested without a TLS configuration.")
            conn.start_tls(context, server_name)
            check_fingerprint(conn.peer_certificate(), server.tls.fingerprint)

        session: MailSession
        if server.protocol is MailProtocol.POP3:
            session = Pop3Session.login(
                conn, spec, upgrade=upgrade, on_greeting=on_greeting
            )
        else:
            session = ImapSession.login(
                conn, spec, upgrade=upgrade, on_greeting=on_greeting
            )
    except BaseException:
        conn.close()
        raise
    return session


def _check_line_safe(value: str, what: str) -> None:
    if any(ch in value for ch in "\r\n\0"):
        raise ConfigError(
            f"The {what} contains a line break or NUL character, which no mail "
            "server accepts; nothing was sent."
        )


def valid_uid(uid: str) -> bool:
    """RFC 1939 unique-ids are 1-70 printable ASCII characters; allow some slack."""
    return 0 < len(uid) <= MAX_UID_LENGTH and all("!" <= ch <= "~" for ch in uid)
