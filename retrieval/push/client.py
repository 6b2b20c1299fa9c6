"""An asyncio IMAP client that only waits: log in, EXAMINE one folder, IDLE.

It never fetches or changes anything: on new mail (``* n EXISTS`` growing, or
``* n RECENT`` above 0 that does not follow such an EXISTS) it awaits
``on_new_mail`` once and goes on waiting; the poll
that the supervisor queues does the work through the engine. It keeps the
engine's promises: TLS from :func:`retrieval.engine.wire.tls.client_context`
(verified unless the mailbox says otherwise, pinned fingerprints checked), a
configured STARTTLS that fails ends the session before any credential, only
public addresses for ``public_only`` specs (checked on the very addresses
connected to), a deadline on every wait and a bound on every line.

Only password logins (AUTHENTICATE PLAIN or LOGIN, or the LOGIN command) and
OAuth2 tokens (AUTHENTICATE XOAUTH2 or OAUTHBEARER) are done here; a mailbox
configured for another mechanism raises
:class:`IdleUnavailable` (never a weaker mechanism), as does a server that does
not offer IDLE: such mailboxes keep their scheduled polls.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import base64
import contextlib
import itertools
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from retrieval.engine.errors import EngineError
from retrieval.engine.fetch import imap_parse
from retrieval.engine.spec import MailProtocol, TlsMode
from retrieval.engine.wire import sasl
from retrieval.engine.wire import tls as engine_tls
from retrieval.engine.wire.netaddrs import is_public_address
from retrieval.engine.wire.transport import NOT_PUBLIC

if TYPE_CHECKING:
    from retrieval.engine.spec import MailboxSpec

MAX_LINE = 64 * 1024  # bytes in one response line
MAX_LITERAL = 1024 * 1024  # bytes of a literal in an untagged response (skipped)
MAX_LITERALS = 16  # literals in one response
REISSUE = 29 * 60.0  # seconds: RFC 2177 asks clients to re-issue IDLE within 29 min
PASSWORD_AUTH = {"any", "password", "plain", "login"}
TOKEN_AUTH = {"xoauth2": "XOAUTH2", "oauthbearer": "OAUTHBEARER"}


# asyncio gives every TLS connection a read buffer of SSLProtocol.max_size (256
# KiB), filled with zeros at once: 256 MB for 1,000 IDLE sessions that each
# receive a few hundred bytes a minute. A TLS record carries at most 16 KiB, so a
# buffer that size still takes a whole record per read; the messages themselves
# are fetched by the workers' polls, not over these sessions.
TLS_READ_BUFFER = 16 * 1024


def use_small_tls_buffers() -> None:
    """For the IDLE process: TLS read buffers of TLS_READ_BUFFER bytes."""
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


class IdleUnavailable(Exception):
    """This mailbox cannot be held in IDLE (no IDLE, or a login this client does
    not do, or a refused destination); its schedule stays. Retrying is useless
    until the mailbox changes."""


class IdleDropped(Exception):
    """The connection failed or the server ended it; reconnect after a pause."""


NewMail = Callable[[], Awaitable[None]]
Idling = Callable[[str], None]  # "idling" while IDLE is held, then "connecting"


class _Session:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.tags = (f"P{n}" for n in itertools.count(1))
        self.caps: frozenset[str] = frozenset()

    async def line(self, timeout: float | None = None) -> bytes:
        """One response, its literals (never expected while waiting) skipped:
        at most MAX_LITERALS of MAX_LITERAL bytes, the text parts MAX_LINE."""
        raw = await self._read_line(timeout or self.timeout)
        for _ in range(MAX_LITERALS + 1):
            try:
                size = imap_parse.literal_size(raw)
            except EngineError as exc:
                raise IdleDropped(str(exc)) from exc
            if size is None:
                break
            if size > MAX_LITERAL:
                raise IdleDropped(f"a literal of {size} bytes")
            try:
                await asyncio.wait_for(self.reader.readexactly(size), self.timeout)
            except asyncio.IncompleteReadError as exc:
                raise IdleDropped("the server closed the connection") from exc
            rest = await self._read_line(self.timeout)
            if len(raw) + len(rest) > MAX_LINE:
                raise IdleDropped(f"a response longer than {MAX_LINE} bytes")
            raw = raw + rest
        else:
            raise IdleDropped(f"a response with more than {MAX_LITERALS} literals")
        if raw.startswith(b"* BYE"):
            raise IdleDropped("the server said BYE")
        return raw

    async def _read_line(self, timeout: float) -> bytes:
        try:
            return await asyncio.wait_for(self.reader.readuntil(b"\n"), timeout)
        except asyncio.IncompleteReadError as exc:
            raise IdleDropped("the server closed the connection") from exc
        except asyncio.LimitOverrunError as exc:
            raise IdleDropped(f"a response line longer than {MAX_LINE} bytes") from exc

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), self.timeout)

    async def command(
        self, text: bytes, *, untagged: Callable[[bytes], None] | None = None
    ) -> imap_parse.Tagged:
        tag = next(self.tags)
        await self.send(tag.encode() + b" " + text + b"\r\n")
        return await self.result(tag, untagged=untagged)

    async def result(
        self,
        tag: str,
        *,
        untagged: Callable[[bytes], None] | None = None,
        answer: Callable[[], Awaitable[None]] | None = None,
    ) -> imap_parse.Tagged:
        """Read up to the tagged reply to ``tag``; a continuation request is
        ``answer``ed (AUTHENTICATE's challenges), unexpected without one."""
        while True:
            raw = await self.line()
            self._note_caps(raw)
            tagged = imap_parse.parse_tagged(raw.rstrip(b"\r\n"))
            if tagged is not None and tagged.tag == tag:
                return tagged
            if raw.startswith(b"+"):
                if answer is None:
                    raise IdleDropped("an unexpected continuation request")
                await answer()
            elif untagged is not None:
                untagged(raw)

    def _note_caps(self, raw: bytes) -> None:
        caps = imap_parse.capabilities(raw)
        if caps is not None:
            self.caps = caps

    async def capability(self) -> None:
        reply = await self.command(b"CAPABILITY")
        if reply.status != "OK":
            raise IdleDropped("CAPABILITY was refused")


async def _open(spec: MailboxSpec) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    server = spec.server
    host = server.via or server.host
    port = server.effective_port
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), server.timeout
        )
    except (OSError, UnicodeError) as exc:
        raise IdleDropped(f"{host} does not resolve: {exc}") from exc
    addresses = [info[4][0] for info in infos]
    if server.public_only and not all(is_public_address(a) for a in addresses):
        raise IdleUnavailable(NOT_PUBLIC)
    context = _context(spec) if server.tls.mode is TlsMode.IMPLICIT else None
    last: Exception | None = None
    for address in addresses:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    address,
                    port,
                    ssl=context,
                    server_hostname=_server_name(spec) if context else None,
                    limit=MAX_LINE,
                ),
                server.timeout,
            )
        except (OSError, TimeoutError) as exc:
            last = exc
            continue
        if context is not None:
            _check_pin(spec, writer)
        return reader, writer
    raise IdleDropped(f"cannot connect to {host} port {port}: {last}")


def _context(spec: MailboxSpec) -> ssl.SSLContext:
    try:
        return engine_tls.client_context(spec.server.tls)
    except EngineError as exc:
        raise IdleUnavailable(str(exc)) from exc


def _server_name(spec: MailboxSpec) -> str:
    return spec.server.tls.server_name or spec.server.host


def _check_pin(spec: MailboxSpec, writer: asyncio.StreamWriter) -> None:
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    try:
        engine_tls.check_fingerprint(der, spec.server.tls.fingerprint)
    except EngineError as exc:
        raise IdleDropped(str(exc)) from exc


async def _starttls(spec: MailboxSpec, s: _Session) -> None:
    if "STARTTLS" not in s.caps:
        raise IdleDropped("STARTTLS is configured but the server does not offer it")
    reply = await s.command(b"STARTTLS")
    if reply.status != "OK":
        raise IdleDropped("the server refused STARTTLS")
    try:
        await asyncio.wait_for(
            s.writer.start_tls(_context(spec), server_hostname=_server_name(spec)),
            spec.server.timeout,
        )
    except ssl.SSLError as exc:
        raise IdleDropped(engine_tls.describe_ssl_error(exc)) from exc
    _check_pin(spec, s.writer)
    s.caps = frozenset()
    await s.capability()


async def _login(spec: MailboxSpec, s: _Session) -> None:
    auth = spec.server.auth.lower()
    if auth not in PASSWORD_AUTH and auth not in TOKEN_AUTH:
        raise IdleUnavailable(
            "the IDLE process logs in with a password or an OAuth2 token only, "
            f"not {auth.upper()}"
        )
    user = spec.username
    password = spec.password.reveal() if spec.password else ""
    if auth in TOKEN_AUTH:
        # The token (services.oauth refreshed it when the spec was built) in
        # the engine's own initial response; never a password method instead.
        name = TOKEN_AUTH[auth]
        if f"AUTH={name}" not in s.caps:
            raise IdleUnavailable(f"the server offers no {name} login")
        mech = sasl.mechanism(
            name, user, password, host=spec.server.host, port=spec.server.effective_port
        )
        reply = await _authenticate(
            s, name.encode(), [base64.b64encode(mech.initial())]
        )
    elif auth in ("any", "password", "plain") and "AUTH=PLAIN" in s.caps:
        blob = base64.b64encode(f"\0{user}\0{password}".encode())
        reply = await _authenticate(s, b"PLAIN", [blob])
    elif auth in ("any", "password", "login") and "AUTH=LOGIN" in s.caps:
        answers = [base64.b64encode(user.encode()), base64.b64encode(password.encode())]
        reply = await _authenticate(s, b"LOGIN", answers)
    elif auth in ("any", "password", "login") and "LOGINDISABLED" not in s.caps:
        quoted_user, quoted_password = (
            imap_parse.quoted(user),
            imap_parse.quoted(password),
        )
        if quoted_user is None or quoted_password is None:
            raise IdleUnavailable("the user name or password cannot be sent by LOGIN")
        reply = await s.command(b"LOGIN " + quoted_user + b" " + quoted_password)
    else:
        raise IdleUnavailable(f"the server offers no {auth} password login")
    if reply.status != "OK":
        # A wrong password: the scheduled poll reports it; retrying here soon
        # would only lock the account.
        raise IdleUnavailable("the server refused the login")
    if imap_parse.capabilities(f"* {reply.text}".encode()) is None:
        await s.capability()


async def _authenticate(
    s: _Session, mechanism: bytes, answers: list[bytes]
) -> imap_parse.Tagged:
    tag = next(s.tags)
    await s.send(tag.encode() + b" AUTHENTICATE " + mechanism + b"\r\n")

    async def answer() -> None:
        # An answer per challenge; "*" cancels when we have none left.
        await s.send((answers.pop(0) if answers else b"*") + b"\r\n")

    return await s.result(tag, answer=answer)


@dataclass
class FolderCount:
    """What the folder held when last seen, kept by the caller across reconnects."""

    exists: int | None = None  # None: never seen
    # The last response was an EXISTS that grew: the RECENT a server sends right
    # after it (Dovecot does) is the same news, not a second message to poll for.
    announced: bool = False

    def news(self, raw: bytes) -> bool:
        """Whether this untagged response tells of new mail; keeps the count."""
        number = imap_parse.untagged_number(raw.rstrip(b"\r\n"))
        announced, self.announced = self.announced, False
        if number is None:
            return False
        count, word = number
        before = self.exists or 0
        if word == "EXISTS":
            self.exists = count
            self.announced = count > before
            return self.announced
        if word == "EXPUNGE":
            self.exists = max(before - 1, 0)
            return False
        return word == "RECENT" and count > 0 and not announced


async def watch(
    spec: MailboxSpec,
    *,
    on_new_mail: NewMail,
    on_idling: Idling,
    known: FolderCount,
    reissue: float = REISSUE,
) -> None:
    """Hold IDLE on the spec's first folder until cancelled or the link fails.

    ``known``: the folder's message count when last seen; a reconnect that finds
    more queues a poll too, for the mail that came while the link was down. Raises
    IdleUnavailable or IdleDropped; ``on_idling("idling")`` and ``on_idling("connecting")``
    tell when IDLE is held.
    """
    if spec.server.protocol is not MailProtocol.IMAP:
        raise IdleUnavailable("IDLE is an IMAP command")
    if spec.server.plugin:
        raise IdleUnavailable("the IDLE process does not run plugin tunnels")
    reader, writer = await _open(spec)
    s = _Session(reader, writer, spec.server.timeout)
    try:
        greeting = await s.line()
        s._note_caps(greeting)
        status = imap_parse.untagged_status(greeting)
        if status is None or status[0] not in ("OK", "PREAUTH"):
            raise IdleDropped("the server's greeting is not OK")
        if not s.caps:
            await s.capability()
        if spec.server.tls.mode is TlsMode.STARTTLS:
            await _starttls(spec, s)
        if status[0] == "OK":
            await _login(spec, s)
        if "IDLE" not in s.caps:
            await _logout(s)
            raise IdleUnavailable("the server does not offer IDLE")
        exists = await _examine(spec, s)
        if known.exists is not None and exists > known.exists:
            await on_new_mail()
        known.exists, known.announced = exists, False
        while True:
            await _idle_once(s, reissue, known, on_new_mail, on_idling)
    finally:
        writer.close()


async def _examine(spec: MailboxSpec, s: _Session) -> int:
    folder = spec.folders[0] if spec.folders else "INBOX"
    name = imap_parse.quoted(imap_parse.encode_mailbox(folder))
    if name is None:
        raise IdleUnavailable(f"the folder name {folder!r} cannot be sent")
    found = [0]

    def untagged(raw: bytes) -> None:
        number = imap_parse.untagged_number(raw.rstrip(b"\r\n"))
        if number is not None and number[1] == "EXISTS":
            found[0] = number[0]

    reply = await s.command(b"EXAMINE " + name, untagged=untagged)
    if reply.status != "OK":
        raise IdleUnavailable(f"the server refused to open {folder!r}")
    return found[0]


async def _idle_once(
    s: _Session,
    reissue: float,
    known: FolderCount,
    on_new_mail: NewMail,
    on_idling: Idling,
) -> None:
    """One IDLE ... DONE round of at most ``reissue`` seconds."""
    tag = next(s.tags)
    await s.send(tag.encode() + b" IDLE\r\n")
    while True:  # untagged responses may come before the continuation
        raw = await s.line()
        if raw.startswith(b"+"):
            break
        tagged = imap_parse.parse_tagged(raw.rstrip(b"\r\n"))
        if tagged is not None:
            raise IdleUnavailable("the server refused IDLE")
        if known.news(raw):
            await on_new_mail()
    on_idling("idling")
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + reissue
        while True:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                raw = await s.line(timeout=left)
            except TimeoutError:
                break
            if imap_parse.parse_tagged(raw.rstrip(b"\r\n")) is not None:
                raise IdleDropped("the server ended IDLE")
            if known.news(raw):
                await on_new_mail()
    finally:
        on_idling("connecting")
    await s.send(b"DONE\r\n")

    late = [False]

    def untagged(raw: bytes) -> None:
        late[0] = known.news(raw) or late[0]

    reply = await s.result(tag, untagged=untagged)
    if reply.status != "OK":
        raise IdleDropped("IDLE did not end with OK")
    if late[0]:
        await on_new_mail()


async def _logout(s: _Session) -> None:
    with contextlib.suppress(IdleDropped, OSError, TimeoutError):
        await s.command(b"LOGOUT")
