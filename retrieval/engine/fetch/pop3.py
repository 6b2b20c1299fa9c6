"""POP3 (RFC 1939, CAPA/PIPELINING RFC 2449, STLS RFC 2595, AUTH RFC 5034).

Shaped like CPython's poplib: ``_response``/``_short``/``_long`` primitives and
one small method per verb, but on :class:`Connection` (bounded lines, deadlines,
verified TLS), streaming each message into its own spool.

=================  =====================================================
command            where
=================  =====================================================
CAPA, STLS         :meth:`Pop3Session.login`
USER/PASS, APOP    :meth:`_user_pass`, :meth:`_apop`
AUTH (SASL)        :class:`_SaslWire` with :mod:`retrieval.engine.wire.sasl`
STAT, UIDL, LIST   :meth:`open_folder` (UIDL n / LIST n for fastuidl)
RETR, TOP          :meth:`fetch`, in windows when the server offers PIPELINING
DELE               :meth:`delete`, pipelined with the next window
RSET, QUIT         :meth:`abort`, :meth:`logout`, ``expunge N`` reconnects
=================  =====================================================

With PIPELINING (RFC 2449) the RETRs of a window, and the DELEs of the messages
delivered before it, go out in one write; the replies are read in order as the
poll asks for each message. Replies read ahead of their turn wait in their own
spools. Without it every command waits for its reply, as fetchmail does.

Like fetchmail, messages are read with ``TOP n 99999999`` where the server has
TOP and ``fetchall`` is off: TOP does not mark a message read on servers that
track that, so a delivery failure leaves it unread. Servers that truncate TOP
(the "Maillennium" proxy, for one) are caught by comparing with the LIST size
and read with RETR from then on.
"""

from __future__ import annotations

import re
from collections import deque
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from retrieval.engine.errors import (
    AuthError,
    ConfigError,
    EngineError,
    MailboxInUse,
    MessageFetchError,
    Pop3Reply,
    ProtocolError,
    ServerError,
    TlsError,
)
from retrieval.engine.fetch import selection
from retrieval.engine.fetch.session import (
    MAX_MESSAGES_PER_FOLDER,
    MAX_UID_LENGTH,
    RFC_UID_LENGTH,
    FolderListing,
    RemoteMessage,
    discard_spools,
    nothing_to_sync,
    progress_note,
    valid_uid,
)
from retrieval.engine.redact import MASK
from retrieval.engine.spec import TlsMode
from retrieval.engine.wire import numbers, sasl
from retrieval.engine.wire.encoding import DotDecoder
from retrieval.engine.wire.spool import MessageSpool, filling

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from retrieval.engine.fetch.session import MailSession
    from retrieval.engine.spec import MailboxSpec
    from retrieval.engine.wire.transport import Connection

MAX_LINE = 2048  # poplib's _MAXLINE, for status and listing lines
# Whole multi-line answers: a real CAPA is well under 1 KB; a UIDL or LIST of
# MAX_MESSAGES_PER_FOLDER messages with 128-character UIDs is under 14 MB.
MAX_CAPA_BYTES = 64 * 1024
MAX_LISTING_BYTES = 32 * 1024 * 1024
BODY_FRAGMENT = 64 * 1024  # body lines may be longer; they are read in pieces
TRANSCRIBED_LINES = 20  # of a multi-line listing; the rest is counted
FOLDER = "INBOX"  # POP3 has one mailbox; the ledger files it under this name
# A pipelined window: this many RETRs, or this many declared bytes, at most.
WINDOW_MESSAGES = 16
WINDOW_BYTES = 4 * 1024 * 1024
TOP_LINES = 99999999  # fetchmail's count: the largest CompuServe accepted
# fastuidl is worth it only with more messages than this (fetchmail: 7), and
# only while few are new: each new one costs a UIDL n and a LIST n.
FASTUIDL_MIN_MESSAGES = 7
FASTUIDL_MAX_NEW = 50


_Params = ParamSpec("_Params")
_Result = TypeVar("_Result")


def _step(
    method: Callable[Concatenate[Pop3Session, _Params], _Result],
) -> Callable[Concatenate[Pop3Session, _Params], _Result]:
    """Count a public call as under way until it ends with a whole reply read.

    An error that comes from a complete answer (-ERR, a refused folder) leaves
    the dialogue in step; a broken or silent connection does not.
    """

    def wrapper(
        self: Pop3Session, /, *args: _Params.args, **kwargs: _Params.kwargs
    ) -> _Result:
        self._steps += 1
        try:
            result = method(self, *args, **kwargs)
        except _IN_STEP:
            self._steps -= 1
            raise
        self._steps -= 1
        return result

    return wrapper


_IN_STEP = (
    Pop3Reply,
    MessageFetchError,
    ServerError,
    ConfigError,
    AuthError,
    MailboxInUse,
)


class Pop3Session:
    """One logged-in POP3 connection, implementing ``MailSession``."""

    def __init__(self, conn: Connection, greeting: str, spec: MailboxSpec) -> None:
        self._conn = conn
        self._spec = spec
        self.greeting = greeting
        self.protocol_label = "POP3S" if conn.is_tls else "POP3"
        self.server_address = conn.peer_address()
        self.capabilities: set[str] = set()
        self.notes: list[str] = []
        # Set by open_session: log in again (expunge N); the ledger's sync.
        self.reconnect: Callable[[], MailSession] | None = None
        self.make_durable: Callable[[], None] = nothing_to_sync
        self._deleted: list[str] = []  # DELE answered +OK; provisional until QUIT
        self._dele_queue: list[RemoteMessage] = []  # to go out with the next window
        self._outstanding: deque[tuple[str, RemoteMessage]] = deque()
        self._parked: dict[str, MessageSpool | str] = {}
        self._parked_by_top: set[str] = set()  # read with TOP: still to check
        self._plan: list[RemoteMessage] = []
        self._numbers: dict[str, int] = {}  # uid -> number after a reconnect
        self._deletions = 0  # DELEs since this connection logged in
        self._ephemeral = False
        self._use_top = False
        self._check_top = True  # compare TOP results with LIST sizes
        self._quirks: set[str] = set()
        self._doubles: set[str] = set()  # verbs seen answered with two +OK lines
        self._steps = 0  # public calls under way; > 0 after one failed midway

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self.capabilities

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

    def _long(self, command: str, limit: int) -> Iterator[bytes]:
        """Send ``command`` and yield the lines of its multi-line answer, unstuffed."""
        self._short(command)
        return self._listing(command, limit)

    def _listing(self, command: str, limit: int) -> Iterator[bytes]:
        """The lines of a multi-line answer, at most ``limit`` bytes in all.

        The whole answer shares one time budget: a server sending a line
        every few seconds cannot make it last for ever.
        """
        count = 0
        total = 0
        budget = self._conn.budget()
        while True:
            # A listing of 100k messages would be 100k transcript rows: show
            # the first lines and count the rest.
            line = self._conn.readline(MAX_LINE, record=False, budget=budget)
            total += len(line)
            if total > limit:
                raise ProtocolError(
                    f"The server's answer to {command} is longer than {limit} "
                    "bytes; the connection was closed."
                )
            end = line in (b".\r\n", b".\n")
            if end and count > TRANSCRIBED_LINES:
                self._conn.note(f"({count - TRANSCRIBED_LINES} more lines not shown)")
            if end or count < TRANSCRIBED_LINES:
                self._conn.transcribe(line)
            if end:
                return
            count += 1
            yield line[1:] if line.startswith(b".") else line

    def _read_body(self, kind: str, message: RemoteMessage) -> MessageSpool:
        """A multi-line body after its +OK, into a new spool, undoing dot-stuffing.

        Read in whatever chunks arrive (see :class:`DotDecoder`); the bytes after
        the terminating line are the next pipelined answers and go back to the
        connection. Only the first line is read as a line, for the quirk check.
        """
        spool = MessageSpool(self._spec.max_message_bytes)
        decoder = DotDecoder()
        held = b""
        # The rest of the body may still be on the wire and may never end:
        # filling drops the whole session if the read fails.
        with filling(spool):
            # One budget for the whole message: see transport.Budget.
            budget = self._conn.budget()
            first = self._conn.read_fragment(BODY_FRAGMENT, budget=budget)
            if _second_ok(first):
                # A second status line, or a message that starts with "+OK"?
                # Held back until the size of the rest can tell.
                held, first = first, b""
            body, rest = decoder.feed(first)
            while rest is None:
                spool.write(body)
                body, rest = decoder.feed(self._conn.read_chunk(budget=budget))
            spool.write(body)
            self._conn.unread(rest, budget=budget)
        if not held:
            return spool
        if self._doubled_ok(kind, message, spool.size, len(held)):
            self._quirk(
                "doubled-ok",
                f"The server sent a second +OK line before message "
                f"{message.number}; it was dropped (a known server quirk).",
            )
            return spool
        return _prepend(held, spool, self._spec.max_message_bytes)

    def _doubled_ok(
        self, kind: str, message: RemoteMessage, rest: int, line: int
    ) -> bool:
        """Whether a leading "+OK" line is the server's doubled status line.

        Only when the server has shown it: the message is exactly its declared
        size without the line (and so not with it). Once shown for a verb, the
        line is dropped where the size cannot decide, never where the size
        says it belongs to the message: a message may start with "+OK".
        """
        declared = message.size
        if declared >= 0 and rest == declared:
            self._doubles.add(kind)
            return True
        return kind in self._doubles and declared != rest + line

    def _quirk(self, key: str, text: str) -> None:
        """Tell the transcript (always) and the report (once) about a quirk."""
        self._conn.note(text)
        if key not in self._quirks:
            self._quirks.add(key)
            self.notes.append(text)

    # -- login ------------------------------------------------------------------

    def capa(self) -> set[str]:
        try:
            lines = list(self._long("CAPA", MAX_CAPA_BYTES))
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
        session = cls(conn, greeting, spec)
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
        session._authenticate()
        session._use_top = (
            "TOP" in session.capabilities
            and not spec.fetchall
            and "Maillennium POP3" not in greeting
        )
        return session

    def _authenticate(self) -> None:
        spec = self._spec
        offer = sasl.Offer(
            sasl=frozenset(_sasl_mechanisms(self.capabilities)),
            cleartext=(sasl.USER_PASS,),
            apop="<" in self.greeting and ">" in self.greeting,
        )
        sasl.authenticate(
            spec,
            offer,
            _SaslWire(self),
            native={sasl.USER_PASS: self._user_pass, sasl.APOP: self._apop},
            initial_response=True,
            note=self._conn.note,
        )

    def _user_pass(self, user: str, password: str) -> None:
        try:
            self._short(f"USER {user}")
            self._short(f"PASS {password}", shown=f"PASS {MASK}")
        except Pop3Reply as exc:
            raise _auth_failure(exc.text) from exc

    def _apop(self, user: str, password: str) -> None:
        digest = sasl.apop_digest(self.greeting, password)
        try:
            self._short(f"APOP {user} {digest}", shown=f"APOP {user} {MASK}")
        except Pop3Reply as exc:
            raise _auth_failure(exc.text) from exc

    # -- listing ------------------------------------------------------------------

    @_step
    def open_folder(
        self,
        folder: str,
        *,
        read_only: bool,
        known: Callable[[str], bool] | None = None,
    ) -> FolderListing:
        if folder.upper() != FOLDER:
            raise ConfigError(
                f"POP3 has no folders; the folder {folder!r} cannot be polled."
            )
        listing = FolderListing(folder=FOLDER, uidvalidity=None)
        if known is not None and "UIDL" in self.capabilities:
            found = self._fast_listing(known)
            if found is not None:
                listing.messages, listing.truncated = found, True
                return listing
        sizes, uids = self._full_listing()
        if uids is None:
            if read_only or selection.expires(self._spec):
                # Without UIDL there is no way to tell old from new (invariant 9).
                raise ServerError(
                    "The server does not support UIDL, so 'keep' cannot work: every "
                    "poll would fetch every message again."
                )
            self._ephemeral = listing.ephemeral_uids = True
            listing.notes.append("The server has no UIDL; message numbers are used.")
            uids = {number: f"#{number}" for number in sizes}
        self._fill_listing(listing, sizes, uids)
        return listing

    def _full_listing(self) -> tuple[dict[int, int], dict[int, str] | None]:
        """LIST and UIDL, sent together when the server pipelines."""
        if self.pipelining:
            self._conn.send_lines([("LIST", None), ("UIDL", None)])
            sizes = self._sizes_reply()
            return sizes, self._uids_reply()
        self._conn.send_line("LIST")
        sizes = self._sizes_reply()
        self._conn.send_line("UIDL")
        return sizes, self._uids_reply()

    def _sizes_reply(self) -> dict[int, int]:
        ok, text = self._response()
        if not ok:
            raise ServerError(
                f"The server could not list the messages (it said: {text})."
            )
        return _number_map(self._listing("LIST", MAX_LISTING_BYTES), _size)

    def _uids_reply(self) -> dict[int, str] | None:
        ok, _ = self._response()
        if not ok:
            return None
        return _number_map(self._listing("UIDL", MAX_LISTING_BYTES), _uid)

    def _fill_listing(
        self, listing: FolderListing, sizes: dict[int, int], uids: dict[int, str]
    ) -> None:
        seen: dict[str, int] = {}
        duplicated: set[str] = set()
        long_uids = 0
        for number, uid in sorted(uids.items()):
            if not valid_uid(uid):
                listing.notes.append(
                    f"Message {number} has an unusable UID (over {MAX_UID_LENGTH} "
                    "characters, or characters RFC 1939 does not allow); it is "
                    "left on the server."
                )
                continue
            long_uids += len(uid) > RFC_UID_LENGTH
            if uid in seen:
                duplicated.add(uid)
            seen[uid] = number
        if long_uids:
            listing.notes.append(
                f"{long_uids} UID(s) are longer than the {RFC_UID_LENGTH} characters "
                "RFC 1939 allows; they are used as they are."
            )
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

    def _fast_listing(self, known: Callable[[str], bool]) -> list[RemoteMessage] | None:
        """fetchmail's fastuidl: binary search for the first message not yet
        delivered, assuming older messages come first. None: list everything."""
        try:
            words = self._short("STAT").split()
        except Pop3Reply:
            return None
        count = numbers.wire_number_or_none(words[0], numbers.COUNT) if words else None
        if count is None:
            return None
        if count <= FASTUIDL_MIN_MESSAGES or count > MAX_MESSAGES_PER_FOLDER:
            return None
        low, high = 0, count + 1  # low: known (or 0), high: new (or count + 1)
        while low < high - 1:
            middle = (low + high) // 2
            uid = self._one_uid(middle)
            if uid is None:
                return None
            if known(uid):
                low = middle
            else:
                high = middle
        if count - high + 1 > FASTUIDL_MAX_NEW:
            return None
        self._conn.note(
            f"fastuidl: {high - 1} of {count} messages were delivered before; "
            "only the later ones are listed."
        )
        messages: list[RemoteMessage] = []
        for number in range(high, count + 1):
            uid = self._one_uid(number)
            if uid is None or not valid_uid(uid):
                return None
            try:
                words = self._short(f"LIST {number}").split()
            except Pop3Reply:
                words = []
            found = None
            if len(words) > 1:
                found = numbers.wire_number_or_none(words[1], numbers.SIZE)
            size = -1 if found is None else found
            messages.append(RemoteMessage(uid, number, size))
        return messages

    def _one_uid(self, number: int) -> str | None:
        """``UIDL n``; None when the server will not say."""
        try:
            words = self._short(f"UIDL {number}").split()
        except Pop3Reply:
            return None
        if len(words) != 2 or words[0] != str(number):
            raise ProtocolError(
                f"The server answered UIDL {number} with {' '.join(words)[:80]!r}."
            )
        return words[1]

    def with_sizes(self, messages: list[RemoteMessage]) -> list[RemoteMessage]:
        return messages  # LIST already gave them

    # -- fetching -------------------------------------------------------------------

    def prefetch(self, messages: list[RemoteMessage]) -> None:
        self._plan = list(messages)

    @_step
    def fetch(self, message: RemoteMessage) -> MessageSpool:
        parked = self._parked.pop(message.uid, None)
        if isinstance(parked, str):
            raise MessageFetchError(parked)
        if parked is not None:
            kind = "TOP" if message.uid in self._parked_by_top else "RETR"
            self._parked_by_top.discard(message.uid)
            spool = parked
        else:
            if not self._next_is(message):
                self._drain()
                self._send_window(message)
            self._read_deletes()
            kind, message = self._outstanding.popleft()
            spool = self._message_reply(kind, message)
        if kind == "TOP" and self._check_top and 0 <= spool.size < message.size:
            spool = self._recheck_top(message, spool)
        return spool

    def _next_is(self, message: RemoteMessage) -> bool:
        """True when the next body in flight is this message's."""
        upcoming = (item for kind, item in self._outstanding if kind != "DELE")
        return next(upcoming, None) == message

    def _send_window(self, first: RemoteMessage) -> None:
        """RETR/TOP for ``first`` and, when pipelining, the planned ones after it."""
        window = [first]
        if self.pipelining:
            at = next((i for i, m in enumerate(self._plan) if m.uid == first.uid), None)
            budget = max(first.size, 0)
            limit = WINDOW_MESSAGES
            if self._spec.expunge and not self._ephemeral:
                # The Nth deletion must find nothing in flight, to QUIT at once.
                limit = min(limit, max(1, self._spec.expunge - self._deletions))
            for later in self._plan[at + 1 :] if at is not None else []:
                budget += max(later.size, 0)
                if len(window) >= limit or budget > WINDOW_BYTES:
                    break
                if later.uid not in self._parked:
                    window.append(later)
        lines: list[tuple[str, str | None]] = []
        for dele in self._dele_queue:
            lines.append((f"DELE {self._number(dele)}", None))
            self._outstanding.append(("DELE", dele))
        self._dele_queue = []
        verb = "TOP" if self._use_top else "RETR"
        for message in window:
            suffix = f" {TOP_LINES}" if verb == "TOP" else ""
            lines.append((f"{verb} {self._number(message)}{suffix}", None))
            self._outstanding.append((verb, message))
        self._conn.send_lines(lines)

    def _message_reply(self, kind: str, message: RemoteMessage) -> MessageSpool:
        ok, text = self._response()
        if not ok:
            raise MessageFetchError(
                f"The server could not send message {message.number} (it said: {text})."
            )
        spool = self._read_body(kind, message)
        self._conn.note(f"{kind} {self._number(message)}: {spool.size} octets")
        if self._spec.showdots:
            self._conn.note(progress_note(str(message.number), spool.size))
        return spool

    def _recheck_top(self, message: RemoteMessage, top: MessageSpool) -> MessageSpool:
        """TOP gave less than LIST declared: truncated TOP, or a LIST that lies."""
        self._drain()
        self._conn.send_line(f"RETR {self._number(message)}")
        retr = self._message_reply("RETR", message)
        if retr.size > top.size:
            top.close()
            self._use_top = False
            for uid in self._parked_by_top:  # read ahead with TOP: cut short too
                parked = self._parked.pop(uid, None)
                if isinstance(parked, MessageSpool):
                    parked.close()
            self._parked_by_top.clear()
            self._quirk(
                "top",
                f"The server cut message {message.number} short when sent with TOP "
                f"({top.size} of {retr.size} octets); RETR is used from now on.",
            )
            return retr
        retr.close()
        self._check_top = False
        self._quirk(
            "list-size",
            f"The server's LIST sizes do not match what it sends (message "
            f"{message.number}: {message.size} declared, {top.size} sent); the "
            "declared sizes are only estimates on this server.",
        )
        return top

    def _drain(self) -> None:
        """Read every reply still in flight; message bodies wait in spools."""
        while self._outstanding:
            kind, message = self._outstanding.popleft()
            if kind == "DELE":
                self._dele_reply(message)
                continue
            try:
                self._parked[message.uid] = self._message_reply(kind, message)
            except MessageFetchError as exc:
                self._parked[message.uid] = str(exc)
            else:
                if kind == "TOP":
                    self._parked_by_top.add(message.uid)

    def _read_deletes(self) -> None:
        while self._outstanding and self._outstanding[0][0] == "DELE":
            self._dele_reply(self._outstanding.popleft()[1])

    def _dele_reply(self, message: RemoteMessage) -> None:
        ok, text = self._response()
        if ok:
            self._deleted.append(message.uid)
        else:
            self.notes.append(
                f"The server refused to delete message {message.number} "
                f"(it said: {text}); it stays for the next poll."
            )

    def _number(self, message: RemoteMessage) -> int:
        return self._numbers.get(message.uid, message.number)

    # -- deleting ----------------------------------------------------------------------

    @_step
    def delete(self, message: RemoteMessage) -> list[str]:
        self._deletions += 1
        if self.pipelining:
            self._dele_queue.append(message)  # rides with the next window or QUIT
        else:
            number = self._number(message)
            try:
                self._short(f"DELE {number}")
            except Pop3Reply as exc:
                raise ServerError(
                    f"The server refused to delete message {number} "
                    f"(it said: {exc.text})."
                ) from exc
            self._deleted.append(message.uid)
        if (
            self._spec.expunge
            and self._deletions >= self._spec.expunge
            and not self._outstanding
            and message.uid != (self._plan[-1].uid if self._plan else None)
        ):
            return self._start_over()
        return []

    def _start_over(self) -> list[str]:
        """``expunge N``: QUIT to commit the deletions, then log in again."""
        if self._ephemeral or self.reconnect is None:
            if "expunge" not in self._quirks:
                self._quirk(
                    "expunge",
                    "Without UIDL, messages are renumbered by a new session, so "
                    "'expunge' cannot split this one; deletions happen at the end.",
                )
            return []
        confirmed = self._quit(discard=False)
        fresh = self.reconnect()
        if not isinstance(fresh, Pop3Session):  # pragma: no cover - same protocol
            raise ProtocolError("The server changed protocol on reconnection.")
        self._conn, fresh._conn = fresh._conn, self._conn
        self.capabilities = fresh.capabilities
        self._use_top = self._use_top and fresh._use_top
        self._deletions = 0
        self._deleted = []
        self._renumber()
        return confirmed

    def _renumber(self) -> None:
        """After a new login, message numbers start again from 1: map by UID."""
        _, uids = self._full_listing()
        if uids is None:
            raise ServerError("The server stopped answering UIDL after reconnecting.")
        self._numbers = {uid: number for number, uid in uids.items()}
        missing = [m for m in self._plan if m.uid not in self._numbers]
        for message in missing:
            self._parked.setdefault(
                message.uid,
                f"Message {message.uid} disappeared from the server while it was "
                "being polled.",
            )

    def close_folder(self) -> list[str]:
        return []

    def _quit(self, *, discard: bool = True) -> list[str]:
        """Flush, QUIT and close; the UIDs whose deletion QUIT committed."""
        try:
            self._drain()
            if discard:
                self._discard_parked()
            if self._dele_queue:
                pending, self._dele_queue = self._dele_queue, []
                self._conn.send_lines(
                    [(f"DELE {self._number(m)}", None) for m in pending]
                )
                for message in pending:
                    self._dele_reply(message)
            # QUIT commits the DELEs (RFC 1939 UPDATE state): their records first.
            self.make_durable()
            try:
                self._short("QUIT")
            except Pop3Reply:
                return []
            return list(self._deleted)
        finally:
            self._conn.close()

    @_step
    def logout(self) -> list[str]:
        return self._quit()

    def abort(self) -> None:
        """Undo the DELEs with RSET when the dialogue is still in step, else drop.

        Either way nothing is deleted: RSET unmarks them, and a connection closed
        without QUIT never reaches the UPDATE state (RFC 1939). In step means no
        command of ours was cut short by the fault that ends the poll.
        """
        self._discard_parked()
        try:
            if not self._steps and not self._outstanding and not self._conn.closed:
                self._short("RSET")
                self._short("QUIT")
        except EngineError:
            pass
        finally:
            self._conn.close()

    def _discard_parked(self) -> None:
        discard_spools(self._parked)


class _SaslWire(sasl.CommandSaslWire):
    """POP3 AUTH (RFC 5034) for :func:`retrieval.engine.wire.sasl.exchange`."""

    def __init__(self, session: Pop3Session) -> None:
        self._session = session
        self._conn = session._conn

    def read(self) -> sasl.Reply:
        line = self._conn.readline(MAX_LINE)
        text = line.rstrip(b"\r\n").decode("utf-8", "replace")
        if line.startswith((b"+ ", b"+\r", b"+\n")):
            return sasl.Reply("continue", text[1:].strip())
        if line.startswith(b"+OK"):
            return sasl.Reply("ok", text[3:].strip())
        if line.startswith(b"-ERR"):
            return sasl.Reply("fail", text[4:].strip())
        raise ProtocolError(f"The server answered AUTH with {text[:80]!r}.")

    def refusal(self, text: str) -> EngineError:
        return _auth_failure(text)


def _prepend(line: bytes, spool: MessageSpool, limit: int) -> MessageSpool:
    """``line`` then what ``spool`` holds, in a new spool (the old one is closed)."""
    whole = MessageSpool(limit)
    try:
        with spool:
            whole.write(line)
            for chunk in spool.chunks():
                whole.write(chunk)
    except BaseException:
        whole.close()
        raise
    return whole


def _second_ok(piece: bytes) -> bool:
    """A "+OK ..." line where a message must start: not a header field."""
    if not piece.startswith(b"+OK") or not piece.endswith(b"\n"):
        return False
    name, colon, _ = piece.partition(b":")
    return not colon or b" " in name


_Value = TypeVar("_Value", str, int)
_NUMBERED = re.compile(rb"^[ \t]*([0-9]+)[ \t]+(\S+)\s*$")


def _size(text: bytes) -> int | None:
    return numbers.wire_number_or_none(text, numbers.SIZE)


def _uid(text: bytes) -> str | None:
    return text.decode("ascii") if text.isascii() else None


def _number_map(
    lines: Iterator[bytes], convert: Callable[[bytes], _Value | None]
) -> dict[int, _Value]:
    """Parse "N value" lines (UIDL, LIST); always drains the answer to its end."""
    result: dict[int, _Value] = {}
    error: ProtocolError | None = None
    for line in lines:
        match = _NUMBERED.match(line)
        if match is None:
            error = error or ProtocolError(
                f"The server sent a malformed listing line: {line[:100]!r}"
            )
            continue
        if len(result) > MAX_MESSAGES_PER_FOLDER:
            continue  # keep reading to the final dot, store no more
        number = numbers.wire_number_or_none(match.group(1), numbers.MESSAGE_NUMBER)
        value = convert(match.group(2))
        if number is None or value is None:
            error = error or ProtocolError(
                f"The server sent a malformed listing line: {line[:100]!r}"
            )
            continue
        result[number] = value
    if error is not None:
        raise error
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
    if (
        "[IN-USE]" in upper
        or "[LOGIN-DELAY]" in upper
        or "LOCKED" in upper
        or "UNABLE TO LOCK" in upper
    ):
        return MailboxInUse(
            f"The mailbox is in use by another session (the server said: {text})."
        )
    if upper.startswith("[SYS/TEMP]"):
        return ServerError(f"The server has a temporary problem (it said: {text}).")
    return error(f"{prefix} (the server said: {text}).")
