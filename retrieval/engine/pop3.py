"""POP3 (RFC 1939, CAPA/STLS RFC 2449/2595, AUTH PLAIN RFC 5034) on our transport.

Shaped like CPython's poplib: ``_response``/``_short``/``_long`` primitives and
one small method per verb, but on :class:`Connection` (bounded lines, deadlines,
verified TLS) and streaming RETR into a spool instead of a list of lines.

=========  ==================
command    method
=========  ==================
CAPA       :meth:`capa`
STLS       :meth:`stls`
USER/PASS  :meth:`user_pass`
AUTH PLAIN :meth:`auth_plain`
UIDL       :meth:`uidl`
LIST       :meth:`list_sizes`
RETR       :meth:`retr`
DELE       :meth:`dele`
QUIT       :meth:`quit`
=========  ==================
"""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING, TypeVar

from retrieval.engine.errors import (
    AuthError,
    ConfigError,
    EngineError,
    MailboxBusy,
    MessageFetchError,
    ProtocolError,
    ServerError,
    TlsError,
)
from retrieval.engine.redact import MASK
from retrieval.engine.session import (
    MAX_MESSAGES_PER_FOLDER,
    FolderListing,
    RemoteMessage,
    valid_uid,
)
from retrieval.engine.spec import TlsMode

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from retrieval.engine.spec import MailboxSpec
    from retrieval.engine.spool import MessageSpool
    from retrieval.engine.transport import Connection

MAX_LINE = 2048  # poplib's _MAXLINE, for status and listing lines
BODY_FRAGMENT = 64 * 1024  # body lines may be longer; they are read in pieces
TRANSCRIBED_LINES = 20  # of a multi-line listing; the rest is counted
FOLDER = "INBOX"  # POP3 has one mailbox; the ledger files it under this name


class Pop3Reply(EngineError):
    """A -ERR answer; the caller decides what it means."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class Pop3Session:
    """One logged-in POP3 connection, implementing ``MailSession``."""

    def __init__(self, conn: Connection, greeting: str) -> None:
        self._conn = conn
        self.greeting = greeting
        self.protocol_label = "POP3S" if conn.is_tls else "POP3"
        self.server_address = conn.peer_address()
        self.capabilities: set[str] = set()
        self._deleted: list[str] = []  # provisional until QUIT's +OK

    # -- primitives -----------------------------------------------------------

    def _response(self) -> tuple[bool, str]:
        line = self._conn.readline(MAX_LINE)
        text = line.rstrip(b"\r\n").decode("utf-8", "replace")
        if line.startswith(b"+OK"):
            return True, text[3:].strip()
        if line.startswith(b"-ERR"):
            return False, text[4:].strip()
        raise ProtocolError(
            f"The POP3 server answered something that is neither +OK nor -ERR: {text!r}"
        )

    def _short(self, command: str, *, shown: str | None = None) -> str:
        self._conn.send_line(command, shown=shown)
        ok, text = self._response()
        if not ok:
            raise Pop3Reply(text)
        return text

    def _long(self, command: str) -> Iterator[bytes]:
        """Send ``command`` and yield the lines of its multi-line answer, unstuffed."""
        self._short(command)
        count = 0
        while True:
            # A listing of 100k messages would be 100k transcript rows: show
            # the first lines and count the rest.
            line = self._conn.readline(MAX_LINE, record=False)
            end = line in (b".\r\n", b".\n")
            if end and count > TRANSCRIBED_LINES:
                self._conn.note(f"({count - TRANSCRIBED_LINES} more lines not shown)")
            if end or count < TRANSCRIBED_LINES:
                self._conn.transcribe(line)
            if end:
                return
            count += 1
            yield line[1:] if line.startswith(b".") else line

    # -- verbs -----------------------------------------------------------------

    def capa(self) -> set[str]:
        try:
            lines = list(self._long("CAPA"))
        except Pop3Reply:
            return set()  # an RFC 1939-only server: no capabilities to rely on
        return {line.strip().decode("ascii", "replace").upper() for line in lines}

    def stls(self, upgrade: Callable[[], None]) -> None:
        try:
            self._short("STLS")
        except Pop3Reply as exc:
            raise TlsError(
                f"The server refused STARTTLS (it said: {exc.text}); nothing was sent."
            ) from exc
        upgrade()

    def user_pass(self, user: str, password: str) -> None:
        try:
            self._short(f"USER {user}")
            self._short(f"PASS {password}", shown=f"PASS {MASK}")
        except Pop3Reply as exc:
            raise _auth_failure(exc.text) from exc

    def auth_plain(self, user: str, password: str) -> None:
        blob = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        try:
            self._short(f"AUTH PLAIN {blob}", shown=f"AUTH PLAIN {MASK}")
        except Pop3Reply as exc:
            raise _auth_failure(exc.text) from exc

    def uidl(self) -> dict[int, str] | None:
        """Message number -> unique id; None when the server has no UIDL."""
        try:
            lines = self._long("UIDL")
            return _number_map(lines, str)
        except Pop3Reply:
            return None

    def list_sizes(self) -> dict[int, int]:
        try:
            return _number_map(self._long("LIST"), int)
        except Pop3Reply as exc:
            raise ServerError(
                f"The server could not list the messages (it said: {exc.text})."
            ) from exc

    def retr(self, number: int, spool: MessageSpool) -> None:
        """Stream message ``number`` into ``spool``, undoing dot-stuffing."""
        try:
            self._short(f"RETR {number}")
        except Pop3Reply as exc:
            raise MessageFetchError(
                f"The server could not send message {number} (it said: {exc.text})."
            ) from exc
        at_line_start = True
        while True:
            piece = self._conn.read_fragment(BODY_FRAGMENT)
            if at_line_start and piece.startswith(b"."):
                if piece in (b".\r\n", b".\n"):
                    break
                piece = piece[1:]
            at_line_start = piece.endswith(b"\n")
            try:
                spool.write(piece)
            except MessageFetchError as exc:
                # The rest of the body is still on the wire and may never end:
                # the only safe way out is to drop the whole session.
                raise ProtocolError(str(exc)) from exc
        self._conn.note(f"RETR {number}: {spool.size} octets")

    def dele(self, number: int) -> None:
        try:
            self._short(f"DELE {number}")
        except Pop3Reply as exc:
            raise ServerError(
                f"The server refused to delete message {number} (it said: {exc.text})."
            ) from exc

    def quit(self) -> bool:
        try:
            self._short("QUIT")
        except Pop3Reply:
            return False
        return True

    # -- MailSession -------------------------------------------------------------

    @classmethod
    def login(
        cls,
        conn: Connection,
        spec: MailboxSpec,
        *,
        upgrade: Callable[[], None],
        on_greeting: Callable[[str], None] | None = None,
    ) -> Pop3Session:
        """Greeting, CAPA, STLS if required, CAPA again, then credentials."""
        line = conn.readline(MAX_LINE)
        greeting = line.rstrip(b"\r\n").decode("utf-8", "replace")
        if on_greeting is not None:
            on_greeting(greeting)
        if not line.startswith(b"+OK"):
            if line.startswith(b"-ERR"):
                raise _busy_or(greeting, ServerError)
            raise ProtocolError(f"The server's greeting is not POP3: {greeting!r}")
        session = cls(conn, greeting)
        session.capabilities = session.capa()
        if spec.server.tls.mode is TlsMode.STARTTLS and not conn.is_tls:
            if "STLS" not in session.capabilities:
                raise TlsError(
                    "The server does not offer STARTTLS, which this mailbox "
                    "requires; nothing was sent."
                )
            session.stls(upgrade)
            session.protocol_label = "POP3"  # upgraded, but fetchmail says POP3
            # RFC 2595: forget what was said before the upgrade.
            session.capabilities = session.capa()
        session._authenticate(spec)
        return session

    def _authenticate(self, spec: MailboxSpec) -> None:
        password = spec.password.reveal() if spec.password else ""
        method = spec.server.auth.lower()
        sasl = _sasl_mechanisms(self.capabilities)
        if method == "plain" or (
            method == "any"
            and "PLAIN" in sasl
            and self.capabilities
            and "USER" not in self.capabilities
        ):
            if method == "plain" and self.capabilities and "PLAIN" not in sasl:
                raise AuthError(
                    "The server does not offer AUTH PLAIN, which this mailbox "
                    "requires; no password was sent."
                )
            self.auth_plain(spec.username, password)
        elif method in ("any", "password", "user"):
            self.user_pass(spec.username, password)
        else:
            raise ConfigError(
                f"The authentication method {spec.server.auth!r} is not supported "
                "for POP3 yet; no password was sent."
            )

    def open_folder(self, folder: str, *, read_only: bool) -> FolderListing:
        listing = FolderListing(folder=FOLDER, uidvalidity=None)
        sizes = self.list_sizes()
        uids = self.uidl()
        if uids is None:
            if read_only:
                # Without UIDL there is no way to tell old from new (invariant 9).
                raise ServerError(
                    "The server does not support UIDL, so 'keep' cannot work: every "
                    "poll would fetch every message again."
                )
            listing.ephemeral_uids = True
            listing.notes.append("The server has no UIDL; message numbers are used.")
            uids = {number: f"#{number}" for number in sizes}
        seen: dict[str, int] = {}
        duplicated: set[str] = set()
        for number, uid in sorted(uids.items()):
            if not valid_uid(uid):
                listing.notes.append(f"Message {number} has an unusable UID; skipped.")
                continue
            if uid in seen:
                duplicated.add(uid)
            seen[uid] = number
        for uid in sorted(duplicated):
            # Two messages with one UID: touching either could delete the wrong one.
            listing.notes.append(f"UID {uid!r} is used twice; those are left alone.")
        for uid, number in seen.items():
            if uid in duplicated:
                continue
            if len(listing.messages) >= MAX_MESSAGES_PER_FOLDER:
                listing.notes.append(
                    f"Only the first {MAX_MESSAGES_PER_FOLDER} messages are handled."
                )
                listing.truncated = True
                break
            listing.messages.append(RemoteMessage(uid, number, sizes.get(number, -1)))
        listing.messages.sort(key=lambda message: message.number)
        return listing

    def with_sizes(self, messages: list[RemoteMessage]) -> list[RemoteMessage]:
        return messages  # LIST already gave them

    def fetch(self, message: RemoteMessage, spool: MessageSpool) -> None:
        self.retr(message.number, spool)

    def delete(self, message: RemoteMessage) -> list[str]:
        self.dele(message.number)
        self._deleted.append(message.uid)
        return []  # POP3 removes nothing before QUIT (invariant 7)

    def close_folder(self) -> list[str]:
        return []

    def logout(self) -> list[str]:
        try:
            confirmed = self.quit()
        finally:
            self._conn.close()
        return list(self._deleted) if confirmed else []

    def abort(self) -> None:
        # No QUIT: the server rolls back every DELE of this session.
        self._conn.close()


_Value = TypeVar("_Value", str, int)
_NUMBERED = re.compile(rb"^\s*(\d{1,10})\s+(\S+)\s*$")


def _number_map(
    lines: Iterator[bytes], convert: Callable[[str], _Value]
) -> dict[int, _Value]:
    """Parse "N value" lines (UIDL, LIST); always drains the answer to its end."""
    result: dict[int, _Value] = {}
    for line in lines:
        match = _NUMBERED.match(line)
        if match is None:
            raise ProtocolError(f"The server sent a malformed listing line: {line!r}")
        if len(result) > MAX_MESSAGES_PER_FOLDER:
            continue  # keep reading to the final dot, store no more
        try:
            result[int(match.group(1))] = convert(match.group(2).decode("ascii"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProtocolError(
                f"The server sent a malformed listing line: {line!r}"
            ) from exc
    return result


def _sasl_mechanisms(capabilities: set[str]) -> set[str]:
    for capability in capabilities:
        if capability.startswith("SASL "):
            return set(capability.split()[1:])
    return set()


def _auth_failure(text: str) -> EngineError:
    return _busy_or(text, AuthError, prefix="Wrong user name or password")


def _busy_or(
    text: str, error: type[EngineError], *, prefix: str = "The server refused"
) -> EngineError:
    upper = text.upper()
    if "[IN-USE]" in upper or "LOCKED" in upper or "UNABLE TO LOCK" in upper:
        return MailboxBusy(
            f"The mailbox is in use by another session (the server said: {text})."
        )
    if upper.startswith("[SYS/TEMP]"):
        return ServerError(f"The server has a temporary problem (it said: {text}).")
    return error(f"{prefix} (the server said: {text}).")
