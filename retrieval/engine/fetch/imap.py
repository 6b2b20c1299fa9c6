"""IMAP4rev1/IMAP4rev2 (RFC 3501, 9051) client session: by UID, with BODY.PEEK[].

Commands and where they are sent:

======================================  ========================================
CAPABILITY, STARTTLS                    :meth:`ImapSession.login`
LOGIN, AUTHENTICATE (SASL)              :meth:`_authenticate`, :class:`_SaslWire`
SELECT / EXAMINE                        :meth:`select`
UID SEARCH (ESEARCH RETURN (ALL))       :meth:`uid_search`
UID FETCH (UID RFC822.SIZE)             :meth:`uid_fetch_sizes`
UID FETCH set (UID BODY.PEEK[])         :meth:`fetch`: one command per batch
UID STORE +FLAGS.SILENT (\\Deleted)      :meth:`uid_store_deleted`
UID EXPUNGE (UIDPLUS, rev2) / EXPUNGE   :meth:`expunge`
IDLE / DONE (RFC 2177), NOOP            :meth:`wait_for_news`
LOGOUT                                  :meth:`logout`
======================================  ========================================

Message bodies are asked for in batches (one ``UID FETCH`` of a UID set) and
read one response at a time as the poll asks for each message, each literal
streamed into its own spool; a response that arrives before its turn waits in
its spool. Literals are read only after their announced size has been checked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from retrieval.engine.errors import (
    AuthError,
    ConfigError,
    EngineError,
    MailboxInUse,
    MessageFetchError,
    ParseError,
    ProtocolError,
    ServerError,
    TlsError,
    TransportError,
)
from retrieval.engine.fetch import imap_parse as parse
from retrieval.engine.fetch.session import (
    MAX_MESSAGES_PER_FOLDER,
    FolderListing,
    RemoteMessage,
    discard_spools,
    nothing_to_sync,
    progress_note,
)
from retrieval.engine.redact import MASK
from retrieval.engine.spec import TlsMode
from retrieval.engine.wire import numbers, sasl
from retrieval.engine.wire.numbers import UIDVALIDITY
from retrieval.engine.wire.spool import MessageSpool, filling

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from retrieval.engine.ports import Transcript
    from retrieval.engine.spec import MailboxSpec
    from retrieval.engine.wire.transport import Budget, Connection

# One response line may carry a whole SEARCH result: 100k UIDs fit in 1 MiB.
MAX_LINE = 1024 * 1024
MAX_SMALL_LITERAL = 64 * 1024  # any literal that is not the message body
MAX_RESPONSE_BYTES = 16 * 1024 * 1024  # all untagged data for one command
COMMAND_BATCH = 500  # UIDs per STORE / EXPUNGE command (Dovecot caps lines)
SIZE_BATCH_UNLIMITED = 1000  # fetchsizelimit 0: "no limit", within reason
TRANSCRIBED_LINES = 20  # untagged lines per command; the rest is counted
# A body batch: this many messages, or this many declared bytes, at most.
BODY_BATCH_MESSAGES = 32
BODY_BATCH_BYTES = 8 * 1024 * 1024
# Without IDLE, fetchmail sends NOOP and waits this long for news (imap.c).
NOOP_WAIT = 28.0
STOP_CHECK = 1.0  # seconds between looks at poll()'s stop hook while idle


@dataclass
class Response:
    tag: str
    status: str  # OK, NO, BAD
    text: str
    untagged: list[bytes] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "OK"


@dataclass
class _Batch:
    """One UID FETCH of bodies still being read."""

    tag: str
    uids: set[int]
    pending: set[int]  # not yet received


class ImapSession:
    """One authenticated IMAP connection, implementing ``MailSession``."""

    def __init__(self, conn: Connection, greeting: str, spec: MailboxSpec) -> None:
        self._conn = conn
        self._spec = spec
        self.greeting = greeting
        self.protocol_label = "IMAPS" if conn.is_tls else "IMAP"
        self.server_address = conn.peer_address()
        self.capabilities: frozenset[str] = frozenset()
        # Sent unasked in the tagged OK of the login (RFC 3501 7.1), if at all.
        self._login_capabilities: frozenset[str] | None = None
        self.notes: list[str] = []
        self._tag_number = 0
        self._pending_deletes: list[int] = []
        self.make_durable: Callable[[], None] = nothing_to_sync  # set by open_session
        self._plan: list[RemoteMessage] = []
        self._batch: _Batch | None = None
        self._parked: dict[int, MessageSpool | str] = {}
        self._exists = 0  # messages in the selected folder, as last announced
        self._arrived = False  # EXISTS grew since the folder was listed
        # For a session kept between polls (kept.py): when it logged in, and
        # how many polls it served.
        self.opened_at = time.time()
        self.polls = 1
        # Its account's key in the kept sessions, when it may be kept.
        self.kept_as: str | None = None

    # -- primitives -----------------------------------------------------------

    def _next_tag(self) -> str:
        self._tag_number += 1
        return f"A{self._tag_number:04d}"

    def _read_logical(
        self,
        *,
        want_body: bool = False,
        record: bool = True,
        budget: Budget | None = None,
    ) -> tuple[bytes, MessageSpool | None]:
        """One response with its literals: small ones dropped, BODY[] spooled.

        Returns the response text (literal contents removed) and, when
        ``want_body`` and the response carried ``BODY[]``, a spool holding it.
        All of it is read within ``budget`` (a new one when not given): a
        caller reading several responses for one command passes its own.
        """
        if budget is None:
            budget = self._conn.budget()
        line = self._conn.readline(MAX_LINE, record=record, budget=budget)
        text = bytearray(line)
        spool: MessageSpool | None = None
        try:
            while True:
                try:
                    size = parse.literal_size(line)
                except ParseError as exc:
                    raise ProtocolError(
                        f"The server announced a malformed literal: {exc}."
                    ) from exc
                if size is None:
                    return bytes(text), spool
                if want_body and spool is None and parse.is_body_literal(bytes(text)):
                    spool = self._stream_body(size, budget)
                else:
                    if size > MAX_SMALL_LITERAL:
                        raise ProtocolError(
                            f"The server announced {size} bytes of data where at "
                            f"most {MAX_SMALL_LITERAL} make sense; the connection "
                            "was closed."
                        )
                    for _chunk in self._conn.read_exact(size, budget=budget):
                        pass  # contents of small literals are not needed
                line = self._conn.readline(MAX_LINE, record=record, budget=budget)
                text += line
                if len(text) > MAX_RESPONSE_BYTES:
                    raise ProtocolError("The server sent an overly long response.")
        except BaseException:
            if spool is not None:
                spool.close()
            raise

    def _stream_body(self, size: int, budget: Budget) -> MessageSpool:
        limit = self._spec.max_message_bytes
        if limit and size > limit:
            # Checked before reading a byte: a literal claiming gigabytes is
            # refused without allocating or waiting for it (gh-119511).
            raise ProtocolError(
                f"The server announced a message of {size} bytes, more than the "
                f"limit of {limit}; the connection was closed and nothing deleted."
            )
        spool = MessageSpool(limit)
        # Mid-literal the session cannot continue: filling ends it, deleting nothing.
        with filling(spool):
            for chunk in self._conn.read_exact(size, budget=budget):
                spool.write(chunk)
        self._conn.note(f"FETCH body: {size} octets")
        return spool

    def _read_until(self, tag: str) -> Response:
        """Collect untagged responses until the tagged one for ``tag``."""
        untagged: list[bytes] = []
        total = 0
        # The whole answer to one command shares one budget (transport.Budget).
        budget = self._conn.budget()
        while True:
            # Size listings have a line per message: transcribe the first ones.
            record = len(untagged) < TRANSCRIBED_LINES
            text, _ = self._read_logical(record=record, budget=budget)
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
                return Response(tagged.tag, tagged.status, tagged.text, untagged)
            if text.startswith(b"+"):
                raise ProtocolError("The server asked for data we did not offer.")
            if not text.startswith(b"* "):
                raise ProtocolError(f"The server sent a malformed line: {text[:80]!r}")
            total += len(text)
            if total > MAX_RESPONSE_BYTES:
                raise ProtocolError("The server sent an overly long response.")
            self._track(text)
            untagged.append(text)

    def _track(self, text: bytes) -> tuple[int, str] | None:
        """Keep the folder's message count current from EXISTS and EXPUNGE;
        returns the line's number and word (``* 4 FETCH``), if it has them."""
        numbered = parse.untagged_number(text)
        if numbered is None:
            return None
        if numbered[1] == "EXISTS":
            self._arrived = self._arrived or numbered[0] > self._exists
            self._exists = numbered[0]
        elif numbered[1] == "EXPUNGE" and self._exists:
            self._exists -= 1
        return numbered

    def _command(self, *parts: str | bytes, shown: str | None = None) -> Response:
        """Send ``TAG parts...`` and read its response.

        ``str`` parts are command text; ``bytes`` parts are literals, sent with
        the synchronizing literal dance (wait for "+" before each one). Keeping
        them apart, rather than marking literals in the text, means no value
        (a password holding ``{}``, say) can be taken for a literal's place.
        """
        self._finish_batch()
        tag = self._next_tag()
        plain = "".join(p if isinstance(p, str) else "{literal}" for p in parts)
        label = f"{tag} {shown if shown is not None else plain}"
        head = f"{tag} ".encode()
        for part in parts:
            if isinstance(part, str):
                head += part.encode()
                continue
            self._conn.send_line(head + b"{%d}" % len(part), shown=label)
            label = "(literal)"
            refused = self._await_continuation(tag)
            if refused is not None and refused.ok:
                # Success for a command whose data never left us: an APPEND
                # "accepted" this way holds nothing.
                raise ProtocolError(
                    f"The server answered {refused.text!r} before it was sent "
                    "the data of the command."
                )
            if refused is not None:
                return refused
            self._conn.send_raw(part)
            head = b""
        self._conn.send_line(head, shown=label)
        return self._read_until(tag)

    def _pipelined(self, *commands: str) -> list[Response]:
        """Send plain commands in one write and read their responses in order.

        Only for commands whose untagged lines cannot be mistaken for another's
        (results that carry their tag, or none): each untagged line is kept
        with the response being read when it arrives.
        """
        self._finish_batch()
        tags = [self._next_tag() for _ in commands]
        self._conn.send_lines(
            [
                (f"{tag} {command}", None)
                for tag, command in zip(tags, commands, strict=True)
            ]
        )
        return [self._read_until(tag) for tag in tags]

    def _await_continuation(self, tag: str) -> Response | None:
        """None once the server asks for the literal; its answer when it refuses
        the command before (a login, or an APPEND over quota)."""
        budget = self._conn.budget()
        while True:
            text, _ = self._read_logical(budget=budget)
            _bounded(budget)
            if text.startswith(b"+"):
                return None
            tagged = parse.parse_tagged(text)
            if tagged is not None and tagged.tag == tag:
                return Response(tagged.tag, tagged.status, tagged.text)
            if not text.startswith(b"* "):
                raise ProtocolError(f"The server sent a malformed line: {text[:80]!r}")
            self._track(text)

    def _argument(self, value: str) -> str | bytes:
        """``value`` quoted (str), or as a literal (bytes) when it is not ASCII."""
        quoted = parse.quoted(value)
        if quoted is not None:
            return quoted.decode("ascii")
        if any(ch in value for ch in "\r\n\0"):
            raise ConfigError("A value sent to the server contains a line break.")
        return value.encode()

    # -- login -------------------------------------------------------------------

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
        user_arg = self._argument(user)
        shown_user = user_arg if isinstance(user_arg, str) else "{literal}"
        response = self._command(
            "LOGIN ",
            user_arg,
            " ",
            self._argument(password),
            shown=f"LOGIN {shown_user} {MASK}",
        )
        if not response.ok:
            raise _refusal(response.status, response.text)
        self._login_capabilities = _announced(response.text)

    @classmethod
    def login(
        cls,
        conn: Connection,
        spec: MailboxSpec,
        *,
        upgrade: Callable[[], None],
        on_greeting: Callable[[str], None] | None = None,
    ) -> ImapSession:
        """Greeting, CAPABILITY, STARTTLS if required, CAPABILITY again, login,
        CAPABILITY; the first and the last only when the greeting and the
        login's OK did not announce them.

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
        # RFC 3501 7.1: capabilities a server sends unasked, in its greeting and
        # in the tagged OK of the login, make a CAPABILITY command unnecessary;
        # using them spares two round trips of every poll (Dovecot sends both).
        # Not before STARTTLS: what comes in cleartext then is read again over
        # TLS by the command, as before.
        announced = None if must_upgrade else _announced(greeting)
        session.capabilities = announced or session.capability()
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
            session._authenticate()
            session.capabilities = session._login_capabilities or session.capability()
        return session

    def _authenticate(self) -> None:
        spec = self._spec
        disabled = "LOGINDISABLED" in self.capabilities
        offer = sasl.Offer(
            sasl=frozenset(
                cap[5:] for cap in self.capabilities if cap.startswith("AUTH=")
            ),
            cleartext=() if disabled else (sasl.IMAP_LOGIN,),
            logindisabled=disabled,
        )
        sasl.authenticate(
            spec,
            offer,
            _SaslWire(self),
            native={sasl.IMAP_LOGIN: self.login_command},
            initial_response="SASL-IR" in self.capabilities,
            note=self._conn.note,
        )

    # -- delivery into this mailbox (retrieval.engine.append) ------------------------

    def append(
        self, folder: str, message: bytes, *, flags: Sequence[str], date: str | None
    ) -> Response:
        """APPEND ``message`` to ``folder``: the tagged answer, OK or not.

        ``date`` is an IMAP date-time ("04-Dec-2026 15:56:13 +0000") or None for
        the server's clock; ``flags`` are sent as given (checked by the caller).
        """
        parts: list[str | bytes] = [
            "APPEND ",
            self._argument(parse.encode_mailbox(folder)),
        ]
        if flags:
            parts.append(f" ({' '.join(flags)})")
        if date is not None:
            parts.append(f' "{date}"')
        parts += [" ", message]
        return self._command(*parts)

    def create(self, folder: str) -> Response:
        return self._command("CREATE ", self._argument(parse.encode_mailbox(folder)))

    # -- listing -------------------------------------------------------------------

    def select(self, folder: str, *, read_only: bool) -> tuple[int | None, int]:
        """SELECT (or EXAMINE when nothing may change); returns UIDVALIDITY, EXISTS."""
        verb = "EXAMINE" if read_only else "SELECT"
        name = self._argument(parse.encode_mailbox(folder))
        self._exists = 0
        response = self._command(f"{verb} ", name)
        if not response.ok:
            raise ServerError(
                f"The folder {folder!r} could not be opened "
                f"(the server said: {response.text})."
            )
        if not read_only and "[READ-ONLY]" in response.text.upper():
            # fetchmail: a folder we may not change is locked by someone else.
            raise MailboxInUse(
                f"The folder {folder!r} is read-only on the server right now "
                "(another session may hold it); nothing was fetched."
            )
        self._arrived = False  # what EXISTS says now is listed next
        uidvalidity: int | None = None
        for line in response.untagged:
            status = parse.untagged_status(line)
            if status is not None:
                code = parse.response_code(status[1])
                if code and code[0] == "UIDVALIDITY":
                    # Refused here, before anything is delivered: a value the
                    # ledger cannot hold would make every poll deliver again.
                    uidvalidity = numbers.wire_number(code[1].strip(), UIDVALIDITY)
        return uidvalidity, self._exists

    def uid_search(self, criteria: str) -> list[int]:
        """UIDs matching ``criteria``; ESEARCH's compact form where offered."""
        return self.uid_searches(criteria)[0]

    def uid_searches(self, *criteria: str) -> list[list[int]]:
        """UIDs matching each of ``criteria``. With ESEARCH (RFC 4731) every
        result names its command's tag, so the searches go out in one write;
        without it, one after the other: a bare SEARCH result names none."""
        if not {"ESEARCH", "IMAP4REV2"} & self.capabilities:
            return [
                self._search_result(self._command(f"UID SEARCH {c}")) for c in criteria
            ]
        responses = self._pipelined(*(f"UID SEARCH RETURN (ALL) {c}" for c in criteria))
        # A server working on both at once may send one's result while the
        # other's is read: a result naming its tag counts wherever it came.
        return [
            self._search_result(
                response,
                [
                    line
                    for other in responses
                    if other is not response
                    for line in other.untagged
                ],
            )
            for response in responses
        ]

    @staticmethod
    def _search_result(response: Response, others: Sequence[bytes] = ()) -> list[int]:
        """The UIDs of ``response``'s SEARCH or ESEARCH result: among its own
        untagged lines, or an ESEARCH result naming its tag among ``others``
        (the lines that came with other commands of the same write)."""
        if not response.ok:
            raise ServerError(
                f"The server could not list the folder (it said: {response.text})."
            )
        uids: list[int] = []
        for line, own in [
            *((line, True) for line in response.untagged),
            *((line, False) for line in others),
        ]:
            try:
                found = parse.search_results(line) if own else None
                if found is None:
                    extended_result = parse.esearch_all(
                        line, limit=MAX_MESSAGES_PER_FOLDER + 1
                    )
                    if extended_result is not None:
                        tag = extended_result[0]
                        if tag != response.tag and (tag or not own):
                            continue  # another command's result
                        found = extended_result[1]
            except ParseError as exc:
                raise ProtocolError(
                    f"The server sent a bad SEARCH result: {exc}."
                ) from exc
            if found is not None:
                uids.extend(found)
        return sorted(set(uids))

    def uid_fetch_sizes(self, uids: list[int]) -> dict[int, int]:
        sizes: dict[int, int] = {}
        step = self._spec.fetchsizelimit or SIZE_BATCH_UNLIMITED
        for batch in _batches(uids, step):
            response = self._command(
                f"UID FETCH {parse.sequence_set(batch)} (UID RFC822.SIZE)"
            )
            if not response.ok:
                raise ServerError(
                    f"The server could not report message sizes "
                    f"(it said: {response.text})."
                )
            for line in response.untagged:
                attributes = parse.fetch_attributes(line)
                uid = parse.fetch_uid(line, attributes)
                size = parse.fetch_size(line, attributes)
                if uid is not None and size is not None:
                    sizes[uid] = size
        return sizes

    def open_folder(
        self,
        folder: str,
        *,
        read_only: bool,
        known: Callable[[str], bool] | None = None,
    ) -> FolderListing:
        uidvalidity, exists = self.select(folder, read_only=read_only)
        listing = FolderListing(folder=folder, uidvalidity=uidvalidity)
        if uidvalidity is None:
            listing.notes.append(f"The folder {folder!r} reports no UIDVALIDITY.")
        if exists == 0:
            return listing
        # Messages another client flagged \Deleted are on their way out; like
        # fetchmail, leave them alone rather than deliver mail someone deleted.
        # Seen (read) messages are "old" unless fetchall (fetchmail's rule).
        if self._spec.fetchall:
            uids = self.uid_search("NOT DELETED")
            unseen = set(uids)
        else:
            uids, unseen_uids = self.uid_searches("NOT DELETED", "UNSEEN NOT DELETED")
            unseen = set(unseen_uids)
        if len(uids) > MAX_MESSAGES_PER_FOLDER:
            listing.notes.append(
                f"Only the first {MAX_MESSAGES_PER_FOLDER} messages are handled."
            )
            listing.truncated = True
            uids = uids[:MAX_MESSAGES_PER_FOLDER]
        listing.messages = [
            RemoteMessage(str(uid), uid, seen=uid not in unseen) for uid in uids
        ]
        return listing

    def with_sizes(self, messages: list[RemoteMessage]) -> list[RemoteMessage]:
        if not messages:
            return []
        sizes = self.uid_fetch_sizes([message.number for message in messages])
        return [
            RemoteMessage(m.uid, m.number, sizes.get(m.number, -1), m.seen)
            for m in messages
        ]

    # -- fetching ---------------------------------------------------------------------

    def prefetch(self, messages: list[RemoteMessage]) -> None:
        self._plan = list(messages)

    def fetch(self, message: RemoteMessage) -> MessageSpool:
        uid = message.number
        batch = self._batch
        if uid not in self._parked and (batch is None or uid not in batch.pending):
            self._finish_batch()
            self._start_batch(message)
        # Timed from here: delivering the previous message is not the server's.
        budget = self._conn.budget()
        noise = 0
        while uid not in self._parked:
            noise += self._read_batch_response(budget)
            if noise > MAX_RESPONSE_BYTES:
                raise ProtocolError("The server sent an overly long response.")
        if self._batch is not None and not self._batch.pending:
            self._finish_batch()  # its completion is next: free the line now
        parked = self._parked.pop(uid)
        if isinstance(parked, str):
            raise MessageFetchError(parked)
        if self._spec.showdots:
            self._conn.note(progress_note(f"UID {uid}", parked.size))
        return parked

    def _start_batch(self, first: RemoteMessage) -> None:
        """One UID FETCH for ``first`` and the planned messages after it."""
        uids = [first.number]
        at = next((i for i, m in enumerate(self._plan) if m.uid == first.uid), None)
        budget = max(first.size, 0)
        limit = BODY_BATCH_MESSAGES
        if self._spec.expunge:
            # ``expunge N`` must find the line free at the Nth delete.
            limit = min(limit, max(1, self._spec.expunge - len(self._pending_deletes)))
        for later in self._plan[at + 1 :] if at is not None else []:
            budget += max(later.size, 0)
            if len(uids) >= limit or budget > BODY_BATCH_BYTES:
                break
            if later.number not in self._parked:
                uids.append(later.number)
        tag = self._next_tag()
        self._conn.send_line(
            f"{tag} UID FETCH {parse.sequence_set(uids)} (UID BODY.PEEK[])"
        )
        self._batch = _Batch(tag, set(uids), set(uids))

    def _read_batch_response(self, budget: Budget) -> int:
        """Read one response of the batch under way; park what it carries.

        Returns the size of a response that carried no body, so that the
        caller can bound how much else a server sends while we wait for one.
        """
        batch = self._batch
        if batch is None:  # pragma: no cover - fetch() starts one first
            raise ProtocolError("No fetch is under way.")
        text, spool = self._read_logical(want_body=True, budget=budget)
        tagged = parse.parse_tagged(text)
        if tagged is not None:
            if tagged.tag != batch.tag:
                raise ProtocolError(
                    f"The server answered tag {tagged.tag} while we waited for "
                    f"{batch.tag}."
                )
            self._batch = None
            for uid in batch.pending:
                # Expunged by another client between SEARCH and FETCH (catalogue 6).
                self._parked[uid] = (
                    f"Message UID {uid} is no longer on the server."
                    if tagged.status == "OK"
                    else f"The server could not send message UID {uid} "
                    f"(it said: {tagged.text})."
                )
            return 0
        if not text.startswith(b"* "):
            if spool is not None:
                spool.close()
            raise ProtocolError(f"The server sent a malformed line: {text[:80]!r}")
        numbered = self._track(text)
        attributes = (
            parse.fetch_attributes(text)
            if numbered is not None and numbered[1] == "FETCH"
            else {}
        )
        if b"BODY[]" not in attributes:
            if spool is not None:  # pragma: no cover - BODY[] implies FETCH
                spool.close()
            return len(text)  # EXISTS, FLAGS updates...: not for our batch
        self._park_fetch(batch, text, spool, attributes)
        return 0

    def _park_fetch(
        self,
        batch: _Batch,
        text: bytes,
        spool: MessageSpool | None,
        attributes: dict[bytes, parse.Token],
    ) -> None:
        uid = parse.fetch_uid(text, attributes)
        if uid is None and len(batch.uids) == 1:
            uid = next(iter(batch.uids))
        if uid is None or uid not in batch.uids:
            if spool is not None:
                spool.close()
            raise ProtocolError(
                f"The server sent message UID {uid} when asked for UID(s) "
                f"{parse.sequence_set(sorted(batch.uids))}."
            )
        if uid not in batch.pending:
            if spool is not None:
                spool.close()
            return  # sent twice: the first copy counts
        batch.pending.discard(uid)
        if spool is None:
            inline = parse.quoted_body(text)
            if inline is not None:
                spool = MessageSpool(self._spec.max_message_bytes)
                spool.write(inline)
        if spool is not None:
            self._parked[uid] = spool
        elif parse.has_nil_body(text):
            self._parked[uid] = f"The server has no content for message UID {uid}."
        else:
            self._parked[uid] = f"The server sent no body for message UID {uid}."

    def _finish_batch(self) -> None:
        """Read the rest of a batch under way; its bodies wait in their spools."""
        budget = self._conn.budget()
        noise = 0
        while self._batch is not None:
            noise += self._read_batch_response(budget)
            if noise > MAX_RESPONSE_BYTES:
                raise ProtocolError("The server sent an overly long response.")

    def _discard_parked(self) -> None:
        discard_spools(self._parked)

    # -- deleting -------------------------------------------------------------------------

    def uid_store_deleted(self, uids: list[int]) -> None:
        for batch in _batches(uids, COMMAND_BATCH):
            self._check_store(
                self._command(
                    f"UID STORE {parse.sequence_set(batch)} +FLAGS.SILENT (\\Deleted)"
                )
            )

    @staticmethod
    def _check_store(response: Response) -> None:
        if not response.ok:
            raise ServerError(
                "The server refused to mark messages for deletion "
                f"(it said: {response.text})."
            )

    def expunge(self, uids: list[int]) -> bool:
        """Remove ``uids``; UID EXPUNGE spares other clients' \\Deleted messages."""
        if not self._uid_expunge:
            return self._command("EXPUNGE").ok
        return all(
            self._command(f"UID EXPUNGE {parse.sequence_set(batch)}").ok
            for batch in _batches(uids, COMMAND_BATCH)
        )

    @property
    def _uid_expunge(self) -> bool:
        return bool({"UIDPLUS", "IMAP4REV2"} & self.capabilities)

    def _store_and_expunge(self, uids: list[int], *, leave: bool) -> bool:
        """With UID EXPUNGE: flag and remove ``uids`` a batch at a time, each
        pair in one write (and UNSELECT after the last with ``leave``).

        Safe to send together: UID EXPUNGE removes only the given UIDs that
        are flagged, so after a STORE the server refused it removes nothing
        of ours that was not deleted by someone already. Returns whether every
        EXPUNGE succeeded.
        """
        expunged = True
        batches = _batches(uids, COMMAND_BATCH)
        for n, batch in enumerate(batches, start=1):
            uid_set = parse.sequence_set(batch)
            commands = [
                f"UID STORE {uid_set} +FLAGS.SILENT (\\Deleted)",
                f"UID EXPUNGE {uid_set}",
            ]
            if leave and n == len(batches):
                commands.append("UNSELECT")
            store, expunge, *left = self._pipelined(*commands)
            self._check_store(store)
            expunged = expunged and expunge.ok
            for response in left:
                self._check_unselect(response)
        return expunged

    def delete(self, message: RemoteMessage) -> list[str]:
        # Flags are set in batches when the deletes are committed: one command
        # per batch instead of one per message. Each UID is in the ledger by
        # now, so a session lost before the flush only delays the delete.
        self._pending_deletes.append(message.number)
        if (
            self._spec.expunge
            and len(self._pending_deletes) >= self._spec.expunge
            and self._batch is None  # no EXPUNGE while a FETCH is under way
        ):
            return self._flush_deletes()
        return []

    def _flush_deletes(self, *, leave: bool = False) -> list[str]:
        """Flag and expunge the pending deletes; ``leave``: UNSELECT too, in
        the same write where the server offers UID EXPUNGE and UNSELECT."""
        if not self._pending_deletes:
            if leave:
                self.unselect()
            return []
        pending, self._pending_deletes = self._pending_deletes, []
        # Once flagged, any EXPUNGE (ours, CLOSE, another client's) removes
        # them: their records must be durable before the flags go out.
        self.make_durable()
        if self._uid_expunge:
            expunged = self._store_and_expunge(
                pending, leave=leave and "UNSELECT" in self.capabilities
            )
        else:
            self.uid_store_deleted(pending)
            expunged = self.expunge(pending)
            if leave:
                self.unselect()
        if expunged:
            return [str(uid) for uid in pending]
        self._conn.note("EXPUNGE refused; the messages stay flagged for next time")
        return []

    def close_folder(self) -> list[str]:
        self._finish_batch()
        self._discard_parked()
        return self._flush_deletes()

    def close_and_leave(self) -> list[str]:
        """close_folder, then leave the folder as :meth:`unselect` does (the
        session is kept between polls), in as few round trips as the server
        allows."""
        self._finish_batch()
        self._discard_parked()
        return self._flush_deletes(leave=True)

    def logout(self) -> list[str]:
        try:
            self._finish_batch()
            self._discard_parked()
            response = self._command("LOGOUT")
            if not response.ok:
                self._conn.note(f"LOGOUT answered {response.status}")
        except EngineError:
            pass  # the session's work is done; a rude goodbye changes nothing
        finally:
            self._conn.close()
        return []

    def abort(self) -> None:
        self._discard_parked()
        self._conn.close()

    # -- kept between polls (kept.py) ------------------------------------------------------

    def unselect(self) -> None:
        """Leave the folder before the session idles between polls, where the
        server allows it without expunging (RFC 3691): a session that holds a
        folder selected can make another client's SELECT read-only on some
        servers. CLOSE would expunge other clients' deleted messages too."""
        if "UNSELECT" in self.capabilities:
            self._check_unselect(self._command("UNSELECT"))

    @staticmethod
    def _check_unselect(response: Response) -> None:
        if not response.ok:
            raise ProtocolError(f"UNSELECT was refused: {response.text}")

    def noop(self) -> bool:
        """Is the session still there? (NOOP answered OK)"""
        return self._command("NOOP").ok

    def quiet(self) -> bool:
        """Nothing came from the server since the last response (no BYE, no
        hang-up, no news); TransportError when it closed the connection."""
        return not self._conn.wait_for_data(0)

    def note(self, text: str) -> None:
        self._conn.note(text)

    def rebind(self, transcript: Transcript) -> None:
        """The next poll's transcript, notes and group commit."""
        self._conn.rebind(transcript)
        self.notes = []
        self.make_durable = nothing_to_sync

    # -- waiting for new mail --------------------------------------------------------------

    def wait_for_news(self, seconds: float, stop: Callable[[], bool]) -> bool:
        """Wait in IDLE (or with NOOP) up to ``seconds``; True when mail arrived.

        Mail announced since the folder was listed (during the EXPUNGE before
        this wait, say) counts too. Returns early, without news, once ``stop()``
        is true. The caller has committed its deletes: nothing is in flight.
        """
        if self._arrived:
            return True
        if "IDLE" not in self.capabilities:
            return self._noop_wait(seconds, stop)
        tag = self._next_tag()
        self._conn.send_line(f"{tag} IDLE")
        budget = self._conn.budget()
        while not (text := self._read_logical(budget=budget)[0]).startswith(b"+"):
            _bounded(budget)
            tagged = parse.parse_tagged(text)
            if tagged is not None and tagged.tag == tag:
                raise ServerError(f"The server refused IDLE (it said: {tagged.text}).")
            if not text.startswith(b"* "):
                raise ProtocolError(f"The server sent a malformed line: {text[:80]!r}")
            self._track(text)
        deadline = time.monotonic() + seconds
        while not self._arrived and not stop():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self._conn.wait_for_data(min(STOP_CHECK, remaining)):
                self._idle_line(tag)
        self._conn.send_line("DONE")
        response = self._read_until(tag)
        if not response.ok:
            raise ServerError(f"The server ended IDLE with: {response.text}")
        return self._arrived

    def _idle_line(self, tag: str) -> None:
        text, _ = self._read_logical()
        if text[:5].upper() == b"* BYE":
            raise TransportError(
                f"The server ended the idle session: {text[5:].strip()[:200]!r}"
            )
        if parse.parse_tagged(text) is not None:
            raise ProtocolError(f"The server ended IDLE ({tag}) on its own.")
        self._track(text)

    def _noop_wait(self, seconds: float, stop: Callable[[], bool]) -> bool:
        """No IDLE: NOOP, then listen for unsolicited news, like fetchmail."""
        if not self._command("NOOP").ok:
            raise ServerError("The server refused NOOP while waiting for mail.")
        deadline = time.monotonic() + min(seconds, NOOP_WAIT)
        while not self._arrived and not stop():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self._conn.wait_for_data(min(STOP_CHECK, remaining)):
                text, _ = self._read_logical()
                if not text.startswith(b"* "):
                    raise ProtocolError(f"Unexpected line while idle: {text[:80]!r}")
                self._track(text)
        return self._arrived


class _SaslWire(sasl.CommandSaslWire):
    """IMAP AUTHENTICATE (RFC 3501 6.2.2, SASL-IR RFC 4959) for sasl.exchange."""

    def __init__(self, session: ImapSession) -> None:
        self._session = session
        self._conn = session._conn
        self._tag = ""
        self._status = "NO"

    def _command(self, name: str) -> str:
        self._tag = self._session._next_tag()
        return f"{self._tag} AUTHENTICATE {name}"

    def read(self) -> sasl.Reply:
        budget = self._conn.budget()
        while True:
            text, _ = self._session._read_logical(budget=budget)
            _bounded(budget)
            if text.startswith(b"+"):
                return sasl.Reply(
                    "continue", text[1:].strip().decode("ascii", "replace")
                )
            tagged = parse.parse_tagged(text)
            if tagged is not None and tagged.tag == self._tag:
                self._status = tagged.status
                if tagged.status == "OK":
                    self._session._login_capabilities = _announced(tagged.text)
                return sasl.Reply(
                    "ok" if tagged.status == "OK" else "fail", tagged.text
                )
            if not text.startswith(b"* "):
                raise ProtocolError(f"The server sent a malformed line: {text[:80]!r}")

    def refusal(self, text: str) -> EngineError:
        return _refusal(self._status, text)


def _announced(text: str) -> frozenset[str] | None:
    """The capabilities of a ``[CAPABILITY ...]`` response code in ``text``
    (a greeting, a tagged OK); None when there is none, or it is empty."""
    if "[CAPABILITY " not in text.upper():
        return None
    return parse.capabilities(text.encode("utf-8", "replace")) or None


def _bounded(budget: Budget) -> None:
    """Untagged data while we wait for one answer is bounded like a response."""
    if budget.received > MAX_RESPONSE_BYTES:
        raise ProtocolError("The server sent an overly long response.")


def _batches(uids: list[int], size: int) -> list[list[int]]:
    """Bounded command lines: servers cap them (Dovecot at 64 KiB)."""
    return [uids[i : i + size] for i in range(0, len(uids), size)]


def _refusal(status: str, text: str) -> EngineError:
    """NO/BAD to a login: wrong credentials, unless the server says it is busy."""
    code = parse.response_code(text.encode())
    name = code[0] if code else ""
    if name in ("INUSE", "UNAVAILABLE"):
        return MailboxInUse(f"The mailbox is busy (the server said: {text}).")
    if status == "BAD":
        return ProtocolError(f"The server rejected the login command: {text}.")
    return AuthError(f"Wrong user name or password (the server said: {text}).")
