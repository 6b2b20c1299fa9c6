"""IMAP4rev1 (RFC 3501) client session: by UID, with BODY.PEEK[], on our transport.

Commands and their methods:

=====================================  =========================
CAPABILITY                             :meth:`capability`
STARTTLS                               :meth:`starttls`
LOGIN / AUTHENTICATE PLAIN             :meth:`login_command`, :meth:`authenticate_plain`
SELECT / EXAMINE                       :meth:`select`
UID SEARCH NOT DELETED                 :meth:`uid_search`
UID FETCH (RFC822.SIZE)                :meth:`uid_fetch_sizes`
UID FETCH BODY.PEEK[]                  :meth:`uid_fetch_body`
UID STORE +FLAGS.SILENT (\\Deleted)     :meth:`uid_store_deleted`
UID EXPUNGE (UIDPLUS) / EXPUNGE        :meth:`expunge`
LOGOUT                                 :meth:`logout_command`
=====================================  =========================

Literals are read only after their announced size has been checked, small ones
into memory and the message body straight into the spool, in chunks.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from retrieval.engine import imap_parse as parse
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
)
from retrieval.engine.spec import TlsMode

if TYPE_CHECKING:
    from collections.abc import Callable

    from retrieval.engine.spec import MailboxSpec
    from retrieval.engine.spool import MessageSpool
    from retrieval.engine.transport import Connection

# One response line may carry a whole SEARCH result: 100k UIDs fit in 1 MiB.
MAX_LINE = 1024 * 1024
MAX_SMALL_LITERAL = 64 * 1024  # any literal that is not the message body
MAX_RESPONSE_BYTES = 16 * 1024 * 1024  # all untagged data for one command
SIZE_BATCH = 500
TRANSCRIBED_LINES = 20  # untagged lines per command; the rest is counted  # UIDs per UID FETCH (RFC822.SIZE) command


@dataclass
class Response:
    tag: str
    status: str  # OK, NO, BAD
    text: str
    untagged: list[bytes] = field(default_factory=list)
    body_streamed: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "OK"


class ImapSession:
    """One authenticated IMAP connection, implementing ``MailSession``."""

    def __init__(self, conn: Connection, greeting: str, spec: MailboxSpec) -> None:
        self._conn = conn
        self._spec = spec
        self.greeting = greeting
        self.protocol_label = "IMAPS" if conn.is_tls else "IMAP"
        self.server_address = conn.peer_address()
        self.capabilities: frozenset[str] = frozenset()
        self._tag_number = 0
        self._pending_deletes: list[int] = []

    # -- primitives -----------------------------------------------------------

    def _next_tag(self) -> str:
        self._tag_number += 1
        return f"A{self._tag_number:04d}"

    def _read_logical(
        self, body: MessageSpool | None, *, record: bool = True
    ) -> tuple[bytes, bool]:
        """One response with its literals: small ones dropped, BODY[] to ``body``.

        Returns the response text (literal contents removed) and whether the
        message body went into the spool.
        """
        line = self._conn.readline(MAX_LINE, record=record)
        text = bytearray(line)
        streamed = False
        while True:
            try:
                size = parse.literal_size(line)
            except parse.ParseError as exc:
                raise ProtocolError(
                    f"The server announced a malformed literal: {exc}."
                ) from exc
            if size is None:
                return bytes(text), streamed
            if body is not None and not streamed and parse.is_body_literal(line):
                self._stream_body(size, body)
                streamed = True
            else:
                if size > MAX_SMALL_LITERAL:
                    raise ProtocolError(
                        f"The server announced {size} bytes of data where at most "
                        f"{MAX_SMALL_LITERAL} make sense; the connection was closed."
                    )
                for _chunk in self._conn.read_exact(size):
                    pass  # contents of small literals are not needed
            line = self._conn.readline(MAX_LINE, record=record)
            text += line
            if len(text) > MAX_RESPONSE_BYTES:
                raise ProtocolError("The server sent an overly long response.")

    def _stream_body(self, size: int, body: MessageSpool) -> None:
        limit = self._spec.max_message_bytes
        if limit and size > limit:
            # Checked before reading a byte: a literal claiming gigabytes is
            # refused without allocating or waiting for it (gh-119511).
            raise ProtocolError(
                f"The server announced a message of {size} bytes, more than the "
                f"limit of {limit}; the connection was closed and nothing deleted."
            )
        try:
            for chunk in self._conn.read_exact(size):
                body.write(chunk)
        except MessageFetchError as exc:
            # Mid-literal the session cannot continue: end it, delete nothing.
            raise ProtocolError(str(exc)) from exc
        self._conn.note(f"FETCH body: {size} octets")

    def _read_until(self, tag: str, *, body: MessageSpool | None = None) -> Response:
        """Collect untagged responses until the tagged one for ``tag``."""
        untagged: list[bytes] = []
        total = 0
        streamed = False
        while True:
            # Size listings have a line per message: transcribe the first ones.
            record = len(untagged) < TRANSCRIBED_LINES
            text, got_body = self._read_logical(
                None if streamed else body, record=record
            )
            streamed = streamed or got_body
            tagged = parse.parse_tagged(text)
            if not record and (tagged is not None or not text.startswith(b"* ")):
                hidden = len(untagged) - TRANSCRIBED_LINES
                self._conn.note(f"({hidden} more lines not shown)")
                self._conn.transcribe(text)
            if tagged is not None:
                if tagged.tag != tag:
                    raise ProtocolError(
                        f"The server answered tag {tagged.tag} while we waited for "
                        f"{tag}."
                    )
                return Response(
                    tagged.tag, tagged.status, tagged.text, untagged, streamed
                )
            if text.startswith(b"+"):
                raise ProtocolError("The server asked for data we did not offer.")
            if not text.startswith(b"* "):
                raise ProtocolError(f"The server sent a malformed line: {text[:80]!r}")
            total += len(text)
            if total > MAX_RESPONSE_BYTES:
                raise ProtocolError("The server sent an overly long response.")
            untagged.append(text)

    def _command(
        self,
        command: str,
        *,
        shown: str | None = None,
        literals: tuple[bytes, ...] = (),
        body: MessageSpool | None = None,
    ) -> Response:
        """Send ``TAG command`` and read its response.

        ``command`` may contain ``{}`` placeholders for ``literals``, sent with
        the synchronizing literal dance (wait for "+" before each one).
        """
        tag = self._next_tag()
        pieces = command.split("{}")
        if len(pieces) != len(literals) + 1:
            raise ValueError("placeholder count does not match literals")
        label = f"{tag} {shown if shown is not None else command}"
        head = f"{tag} {pieces[0]}".encode()
        for literal, after in zip(literals, pieces[1:], strict=True):
            self._conn.send_line(head + b"{%d}" % len(literal), shown=label)
            label = "(literal)"
            self._await_continuation(tag)
            self._conn.send_raw(literal)
            head = after.encode()
        self._conn.send_line(head, shown=label if not literals else "(literal)")
        return self._read_until(tag, body=body)

    def _await_continuation(self, tag: str) -> None:
        while True:
            text, _ = self._read_logical(None)
            if text.startswith(b"+"):
                return
            tagged = parse.parse_tagged(text)
            if tagged is not None and tagged.tag == tag:
                raise _refusal(tagged.status, tagged.text)
            if not text.startswith(b"* "):
                raise ProtocolError(f"The server sent a malformed line: {text[:80]!r}")

    def _argument(self, value: str) -> tuple[str, tuple[bytes, ...]]:
        """Quote ``value``, or return a literal placeholder for non-ASCII values."""
        quoted = parse.quoted(value)
        if quoted is not None:
            return quoted.decode("ascii"), ()
        if any(ch in value for ch in "\r\n\0"):
            raise ConfigError("A value sent to the server contains a line break.")
        return "{}", (value.encode(),)

    # -- verbs -----------------------------------------------------------------

    def capability(self) -> frozenset[str]:
        response = self._command("CAPABILITY")
        if not response.ok:
            raise ProtocolError(
                f"The server refused CAPABILITY (it said: {response.text})."
            )
        found: set[str] = set()
        for line in response.untagged:
            caps = parse.capabilities(line)
            if caps:
                found |= caps
        return frozenset(found)

    def starttls(self, upgrade: Callable[[], None]) -> None:
        response = self._command("STARTTLS")
        if not response.ok:
            raise TlsError(
                f"The server refused STARTTLS (it said: {response.text}); "
                "nothing was sent."
            )
        upgrade()

    def login_command(self, user: str, password: str) -> None:
        user_arg, user_literals = self._argument(user)
        pass_arg, pass_literals = self._argument(password)
        response = self._command(
            f"LOGIN {user_arg} {pass_arg}",
            shown=f"LOGIN {user_arg if not user_literals else '{literal}'} {MASK}",
            literals=user_literals + pass_literals,
        )
        if not response.ok:
            raise _refusal(response.status, response.text)

    def authenticate_plain(self, user: str, password: str) -> None:
        blob = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        tag = self._next_tag()
        if "SASL-IR" in self.capabilities:
            self._conn.send_line(
                f"{tag} AUTHENTICATE PLAIN {blob}",
                shown=f"{tag} AUTHENTICATE PLAIN {MASK}",
            )
        else:
            self._conn.send_line(f"{tag} AUTHENTICATE PLAIN")
            self._await_continuation(tag)
            self._conn.send_line(blob, shown=MASK)
        cancelled = False
        while True:
            text, _ = self._read_logical(None)
            if text.startswith(b"+"):
                # PLAIN is one step; a second challenge is a broken or hostile
                # server (CVE-2012-3482 class): cancel instead of answering.
                self._conn.send_line("*")
                cancelled = True
                continue
            tagged = parse.parse_tagged(text)
            if tagged is not None and tagged.tag == tag:
                if cancelled:
                    raise AuthError(
                        "The server sent an unexpected authentication challenge; "
                        "the login was cancelled."
                    )
                if tagged.status != "OK":
                    raise _refusal(tagged.status, tagged.text)
                return
            if not text.startswith(b"* "):
                raise ProtocolError(f"The server sent a malformed line: {text[:80]!r}")

    def select(self, folder: str, *, read_only: bool) -> tuple[int | None, int]:
        """SELECT (or EXAMINE when nothing may change); returns UIDVALIDITY, EXISTS."""
        verb = "EXAMINE" if read_only else "SELECT"
        name, literals = self._argument(parse.encode_mailbox(folder))
        response = self._command(f"{verb} {name}", literals=literals)
        if not response.ok:
            raise ServerError(
                f"The folder {folder!r} could not be opened "
                f"(the server said: {response.text})."
            )
        uidvalidity: int | None = None
        exists = 0
        for line in response.untagged:
            status = parse.untagged_status(line)
            if status is not None:
                code = parse.response_code(status[1])
                if code and code[0] == "UIDVALIDITY" and code[1].strip().isdigit():
                    uidvalidity = int(code[1].strip())
                continue
            numbered = parse.untagged_number(line)
            if numbered is not None and numbered[1] == "EXISTS":
                exists = numbered[0]
        return uidvalidity, exists

    def uid_search(self) -> list[int]:
        # Messages another client flagged \Deleted are on their way out; like
        # fetchmail, leave them alone rather than deliver mail someone deleted.
        response = self._command("UID SEARCH NOT DELETED")
        if not response.ok:
            raise ServerError(
                f"The server could not list the folder (it said: {response.text})."
            )
        uids: list[int] = []
        for line in response.untagged:
            try:
                found = parse.search_results(line)
            except parse.ParseError as exc:
                raise ProtocolError(
                    f"The server sent a bad SEARCH result: {exc}."
                ) from exc
            if found is not None:
                uids.extend(found)
        return uids

    def uid_fetch_sizes(self, uids: list[int]) -> dict[int, int]:
        sizes: dict[int, int] = {}
        for start in range(0, len(uids), SIZE_BATCH):
            batch = uids[start : start + SIZE_BATCH]
            response = self._command(
                f"UID FETCH {parse.sequence_set(batch)} (UID RFC822.SIZE)"
            )
            if not response.ok:
                raise ServerError(
                    f"The server could not report message sizes "
                    f"(it said: {response.text})."
                )
            for line in response.untagged:
                uid, size = parse.fetch_uid(line), parse.fetch_size(line)
                if uid is not None and size is not None:
                    sizes[uid] = size
        return sizes

    def uid_fetch_body(self, uid: int, spool: MessageSpool) -> None:
        response = self._command(f"UID FETCH {uid} BODY.PEEK[]", body=spool)
        if not response.ok:
            raise MessageFetchError(
                f"The server could not send message UID {uid} "
                f"(it said: {response.text})."
            )
        ours = [
            line
            for line in response.untagged
            if (parse.untagged_number(line) or (0, ""))[1] == "FETCH"
            and b"BODY[]" in line.upper()
        ]
        for line in ours:
            found = parse.fetch_uid(line)
            if found is not None and found != uid:
                raise ProtocolError(
                    f"The server sent message UID {found} when asked for UID {uid}."
                )
        if response.body_streamed:
            return
        for line in ours:
            inline = parse.quoted_body(line)
            if inline is not None:
                spool.write(inline)
                return
        if any(parse.has_nil_body(line) for line in ours):
            raise MessageFetchError(f"The server has no content for message UID {uid}.")
        # Expunged by another client between SEARCH and FETCH (catalogue 6).
        raise MessageFetchError(f"Message UID {uid} is no longer on the server.")

    def uid_store_deleted(self, uids: list[int]) -> None:
        for batch in _batches(uids):
            response = self._command(
                f"UID STORE {parse.sequence_set(batch)} +FLAGS.SILENT (\\Deleted)"
            )
            if not response.ok:
                raise ServerError(
                    "The server refused to mark messages for deletion "
                    f"(it said: {response.text})."
                )

    def expunge(self, uids: list[int]) -> bool:
        """Remove ``uids``; UID EXPUNGE spares other clients' \\Deleted messages."""
        if "UIDPLUS" not in self.capabilities:
            return self._command("EXPUNGE").ok
        return all(
            self._command(f"UID EXPUNGE {parse.sequence_set(batch)}").ok
            for batch in _batches(uids)
        )

    def logout_command(self) -> None:
        response = self._command("LOGOUT")
        if not response.ok:
            self._conn.note(f"LOGOUT answered {response.status}")

    # -- MailSession -------------------------------------------------------------

    @classmethod
    def login(
        cls,
        conn: Connection,
        spec: MailboxSpec,
        *,
        upgrade: Callable[[], None],
        on_greeting: Callable[[str], None] | None = None,
    ) -> ImapSession:
        """Greeting, CAPABILITY, STARTTLS if required, CAPABILITY again, login.

        A PREAUTH greeting on a cleartext connection that must be upgraded ends
        the poll: STARTTLS is not allowed in the authenticated state, and going
        on in cleartext is what CVE-2021-39272 is about.
        """
        line = conn.readline(MAX_LINE)
        greeting = line.rstrip(b"\r\n").decode("utf-8", "replace")
        if on_greeting is not None:
            on_greeting(greeting)
        status = parse.untagged_status(line)
        if status is None or status[0] not in ("OK", "PREAUTH", "BYE"):
            raise ProtocolError(f"The server's greeting is not IMAP: {greeting!r}")
        if status[0] == "BYE":
            raise ServerError(f"The server refused the session: {greeting[6:]}")
        preauth = status[0] == "PREAUTH"
        must_upgrade = spec.server.tls.mode is TlsMode.STARTTLS and not conn.is_tls
        if preauth and must_upgrade:
            raise TlsError(
                "The server logged in before TLS (PREAUTH) although this mailbox "
                "requires STARTTLS; the connection was closed and nothing was sent."
            )
        session = cls(conn, greeting, spec)
        session.capabilities = session.capability()
        if must_upgrade:
            if "STARTTLS" not in session.capabilities:
                raise TlsError(
                    "The server does not offer STARTTLS, which this mailbox "
                    "requires; nothing was sent."
                )
            session.starttls(upgrade)
            # RFC 2595: capabilities from before the upgrade are void.
            session.capabilities = session.capability()
        if not preauth:
            session._authenticate(spec)
            session.capabilities = session.capability()
        return session

    def _authenticate(self, spec: MailboxSpec) -> None:
        password = spec.password.reveal() if spec.password else ""
        method = spec.server.auth.lower()
        plain_offered = "AUTH=PLAIN" in self.capabilities
        if method == "plain" or (method == "any" and plain_offered):
            if not plain_offered:
                raise AuthError(
                    "The server does not offer AUTHENTICATE PLAIN, which this "
                    "mailbox requires; no password was sent."
                )
            self.authenticate_plain(spec.username, password)
        elif method in ("any", "password"):
            if "LOGINDISABLED" in self.capabilities:
                raise AuthError(
                    "The server does not accept a password on this connection "
                    "(LOGINDISABLED); no password was sent."
                )
            self.login_command(spec.username, password)
        else:
            raise ConfigError(
                f"The authentication method {spec.server.auth!r} is not supported "
                "for IMAP yet; no password was sent."
            )

    def open_folder(self, folder: str, *, read_only: bool) -> FolderListing:
        uidvalidity, exists = self.select(folder, read_only=read_only)
        listing = FolderListing(folder=folder, uidvalidity=uidvalidity)
        if uidvalidity is None:
            listing.notes.append(f"The folder {folder!r} reports no UIDVALIDITY.")
        if exists == 0:
            return listing
        uids = sorted(set(self.uid_search()))
        if len(uids) > MAX_MESSAGES_PER_FOLDER:
            listing.notes.append(
                f"Only the first {MAX_MESSAGES_PER_FOLDER} messages are handled."
            )
            listing.truncated = True
            uids = uids[:MAX_MESSAGES_PER_FOLDER]
        listing.messages = [RemoteMessage(str(uid), uid) for uid in uids]
        return listing

    def with_sizes(self, messages: list[RemoteMessage]) -> list[RemoteMessage]:
        if not messages:
            return []
        sizes = self.uid_fetch_sizes([message.number for message in messages])
        return [
            RemoteMessage(m.uid, m.number, sizes.get(m.number, -1)) for m in messages
        ]

    def fetch(self, message: RemoteMessage, spool: MessageSpool) -> None:
        self.uid_fetch_body(message.number, spool)

    def delete(self, message: RemoteMessage) -> list[str]:
        # Flags are set in batches when the deletes are committed: one command
        # per batch instead of one per message. Each UID is in the ledger by
        # now, so a session lost before the flush only delays the delete.
        self._pending_deletes.append(message.number)
        if self._spec.expunge and len(self._pending_deletes) >= self._spec.expunge:
            return self._flush_deletes()
        return []

    def _flush_deletes(self) -> list[str]:
        if not self._pending_deletes:
            return []
        pending, self._pending_deletes = self._pending_deletes, []
        self.uid_store_deleted(pending)
        if self.expunge(pending):
            return [str(uid) for uid in pending]
        self._conn.note("EXPUNGE refused; the messages stay flagged for next time")
        return []

    def close_folder(self) -> list[str]:
        return self._flush_deletes()

    def logout(self) -> list[str]:
        try:
            self.logout_command()
        except EngineError:
            pass  # the session's work is done; a rude goodbye changes nothing
        finally:
            self._conn.close()
        return []

    def abort(self) -> None:
        self._conn.close()


def _batches(uids: list[int]) -> list[list[int]]:
    """Bounded command lines: servers cap them (Dovecot at 64 KiB)."""
    return [uids[i : i + SIZE_BATCH] for i in range(0, len(uids), SIZE_BATCH)]


def _refusal(status: str, text: str) -> EngineError:
    """NO/BAD to a login: wrong credentials, unless the server says it is busy."""
    code = parse.response_code(text.encode())
    name = code[0] if code else ""
    if name in ("INUSE", "UNAVAILABLE"):
        return MailboxBusy(f"The mailbox is busy (the server said: {text}).")
    if status == "BAD":
        return ProtocolError(f"The server rejected the login command: {text}.")
    return AuthError(f"Wrong user name or password (the server said: {text}).")
