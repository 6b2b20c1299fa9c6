"""Scripted POP3, IMAP and SMTP/LMTP servers on 127.0.0.1, for tests only.

They exist for what no real server does on purpose: over-long lines, missing
``+OK``, literals claiming gigabytes, stalls, PREAUTH on cleartext, a listener
that hangs up before its final reply. Each runs its connections on daemon
threads (like aiosmtpd's ``Controller``) and records what it was told.

Faults are injected per command verb:

* ``overrides={"UIDL": b"..."}`` sends those bytes instead of the normal answer
  (``{tag}`` is replaced by the IMAP tag);
* ``stall_on="RETR"`` answers nothing and waits until the client goes away;
* ``drop_on="RETR"`` closes the connection at that command.

Moved here from ``retrieval/engine/testing.py``: only tests use them. There are
three SMTP/LMTP listeners on purpose, each doing what the others cannot:
:class:`FakeSmtpServer` (here) answers byte for byte what a test scripts, broken
replies included (its faults are the engine's hostile-listener cases);
:class:`tests.support.smtp_listener.SmtpListener` is aiosmtpd, a correct SMTP/LMTP
server (also on a Unix socket) for the live tests that compare with fetchmail;
``bench/listener.py`` is a separate process on plain sockets that sets
TCP_QUICKACK after every read, checks each message against the manifest and
journals it before the final reply, which an asyncio server cannot do.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import re
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import TracebackType

CLIENT_WAIT = 10.0  # seconds a fake server waits for its client


class ClientGone(Exception):
    """The client closed the connection (or sent nothing for too long)."""


class FakeClient:
    """The server side of one connection."""

    def __init__(
        self, sock: socket.socket, on_turn: Callable[[], None] | None = None
    ) -> None:
        self.sock = sock
        self.buffer = b""
        # A turn: the server answered and then had to wait for the client (a
        # round trip); pipelined commands already buffered cost none.
        self._on_turn = on_turn
        self._answered = False
        sock.settimeout(CLIENT_WAIT)
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)
        self._answered = True

    def readline(self) -> bytes:
        while b"\n" not in self.buffer:
            self._fill()
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _fill(self) -> None:
        if self._answered and self._on_turn is not None:
            self._on_turn()
        self._answered = False
        try:
            data = self.sock.recv(65536)
        except OSError as exc:
            raise ClientGone from exc
        if not data:
            raise ClientGone
        self.buffer += data

    def start_tls(self, context: ssl.SSLContext) -> None:
        self.sock = context.wrap_socket(self.sock, server_side=True)
        self.sock.settimeout(CLIENT_WAIT)

    def line_ready(self, wait: float) -> bool:
        """True when a whole line from the client is buffered within ``wait``."""
        if b"\n" in self.buffer:
            return True
        pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
        if pending or select.select([self.sock], [], [], wait)[0]:
            self._fill()
        return b"\n" in self.buffer

    def has_client_certificate(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket) and bool(self.sock.getpeercert())

    def wait_until_gone(self) -> None:
        """A stall: read and ignore until the client hangs up."""
        with contextlib.suppress(ClientGone):
            while True:
                self._fill()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class FakeServer:
    """Accept loop on 127.0.0.1; ``handle(client)`` runs once per connection."""

    def __init__(
        self, *, tls: ssl.SSLContext | None = None, unix_path: str | None = None
    ) -> None:
        self.implicit_tls = tls
        self.unix_path = unix_path  # listen on this unix socket instead of TCP
        self.host = "127.0.0.1"
        self.port = 0
        self.errors: list[BaseException] = []
        self.connections = 0
        self.turns = 0  # round trips, over all connections (see FakeClient)
        self.clients: list[FakeClient] = []  # connected now
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def handle(self, client: FakeClient) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        if self.unix_path is not None:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(self.unix_path)
        else:
            # ``host`` may be set to "::1" before start() for an IPv6 listener.
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            listener = socket.socket(family, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, 0))
            self.port = listener.getsockname()[1]
        listener.listen(16)
        listener.settimeout(0.05)
        self._listener = listener
        thread = threading.Thread(target=self._accept_loop, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, sock: socket.socket) -> None:
        client = FakeClient(sock, self._turn)
        self.clients.append(client)
        try:
            if self.implicit_tls is not None:
                client.start_tls(self.implicit_tls)
            self.handle(client)
        except (ClientGone, ssl.SSLError, ConnectionError, TimeoutError):
            pass
        except BaseException as exc:  # reported to the test through .errors
            self.errors.append(exc)
        finally:
            self.clients.remove(client)
            client.close()

    def tell_clients(self, data: bytes, *, hang_up: bool = False) -> None:
        """Send ``data`` to every connected client out of turn (news, a BYE),
        then, with ``hang_up``, end each connection as a server does."""
        for client in list(self.clients):
            with contextlib.suppress(OSError):
                if data:
                    client.send(data)
                if hang_up:
                    # shutdown() also wakes the thread blocked reading it.
                    client.sock.shutdown(socket.SHUT_RDWR)

    def _turn(self) -> None:
        self.turns += 1

    def stop(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            # shutdown() wakes a thread blocked in accept(); close() alone does not.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        for thread in self._threads:
            thread.join(timeout=2)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Scripted(FakeServer):
    """Shared fault injection for the protocol servers."""

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        unix_path: str | None = None,
        overrides: dict[str, bytes] | None = None,
        stall_on: str | None = None,
        drop_on: str | None = None,
        hangup_after: dict[str, bytes] | None = None,
    ) -> None:
        super().__init__(tls=tls, unix_path=unix_path)
        self.overrides = dict(overrides or {})
        self.stall_on = stall_on
        self.drop_on = drop_on
        # Send these bytes for the verb, then close: a server dying mid-reply.
        self.hangup_after = dict(hangup_after or {})
        self.commands: list[str] = []

    def _fault(self, client: FakeClient, verb: str, tag: str = "") -> bool:
        """Apply a scripted fault for ``verb``; True when it replaced the answer."""
        if verb == self.drop_on:
            client.close()
            raise ClientGone
        if verb == self.stall_on:
            client.wait_until_gone()
            raise ClientGone
        if verb in self.hangup_after:
            client.send(self.hangup_after[verb].replace(b"{tag}", tag.encode()))
            client.close()
            raise ClientGone
        if verb in self.overrides:
            client.send(self.overrides[verb].replace(b"{tag}", tag.encode()))
            return True
        return False


# -- SASL (server side, for both fakes) ------------------------------------------


CRAM_CHALLENGE = b"<4711.1234567890@fake.example>"


def serve_sasl(
    client: FakeClient,
    mechanism: str,
    initial: str | None,
    *,
    user: str,
    secret: str,
    hostile: bytes | None = None,
    record: list[str] | None = None,
) -> bool:
    """Run the server side of one SASL exchange; True when it authenticated.

    ``secret`` is the password, or the token for XOAUTH2/OAUTHBEARER.
    ``hostile`` replaces the first challenge with these bytes (a test of the
    client's defences); the exchange then fails.
    """

    def ask(challenge: bytes) -> bytes | None:
        if hostile is not None:
            client.send(hostile)
        else:
            client.send(b"+ " + base64.b64encode(challenge) + b"\r\n")
        line = client.readline().strip()
        if record is not None:
            record.append(line.decode("ascii", "replace"))
        if line == b"*" or hostile is not None:
            return None
        return base64.b64decode(line) if line not in (b"", b"=") else b""

    def first() -> bytes | None:
        if initial is not None and hostile is None:
            return b"" if initial == "=" else base64.b64decode(initial)
        return ask(b"")

    name = mechanism.upper()
    if name == "PLAIN":
        data = first()
        return data is not None and data.split(b"\0")[1:] == [
            user.encode(),
            secret.encode(),
        ]
    if name == "LOGIN":
        given_user = ask(b"Username:")
        given_password = None if given_user is None else ask(b"Password:")
        return (given_user, given_password) == (user.encode(), secret.encode())
    if name == "CRAM-MD5":
        answer = ask(CRAM_CHALLENGE)
        digest = hmac.new(secret.encode(), CRAM_CHALLENGE, hashlib.md5).hexdigest()
        return answer == f"{user} {digest}".encode()
    if name in ("XOAUTH2", "OAUTHBEARER"):
        data = first()
        if data is None:
            return False
        if name == "XOAUTH2":
            good = data == f"user={user}\x01auth=Bearer {secret}\x01\x01".encode()
        else:
            fields = data.split(b"\x01")
            good = fields[0] == f"n,a={user},".encode() and (
                f"auth=Bearer {secret}".encode() in fields
            )
        if not good:
            ask(b'{"status":"401","schemes":"bearer","scope":"mail"}')
        return good
    if name == "EXTERNAL":
        return first() is not None and client.has_client_certificate()
    return False


# -- POP3 ---------------------------------------------------------------------


class FakePop3Server(_Scripted):
    """A POP3 maildrop: DELE takes effect only at QUIT, as RFC 1939 says.

    Beyond USER/PASS it speaks APOP (``apop=True`` puts a timestamp in the
    greeting), AUTH with the mechanisms of :func:`serve_sasl` (advertise them
    with ``capabilities=[..., "SASL PLAIN CRAM-MD5"]``), TOP, UIDL n, LIST n,
    RSET, and pipelined commands (advertise ``PIPELINING``). Known server
    quirks on request: ``quirks={"top-truncates"}`` (TOP cuts a message after
    ``TOP_CUT`` bytes), ``"top-double-ok"`` (a second +OK line before the
    message), ``"list-lies"`` / ``"list-short"`` (LIST sizes ``LIST_LIE`` bytes
    too large / too small). ``refused_mechanisms`` fail whatever is sent.
    """

    APOP_STAMP = "<1896.697170952@fake.example>"
    TOP_CUT = 40
    LIST_LIE = 17

    def __init__(
        self,
        messages: Iterable[bytes] = (),
        *,
        user: str = "joe",
        password: str = "secret",
        uids: list[str] | None = None,
        capabilities: list[str] | None = None,
        starttls: ssl.SSLContext | None = None,
        greeting: bytes = b"+OK fake POP3 server ready\r\n",
        retr_errors: Iterable[int] = (),
        apop: bool = False,
        quirks: Iterable[str] = (),
        hostile_sasl: bytes | None = None,
        refused_mechanisms: Iterable[str] = (),
        **faults: object,
    ) -> None:
        super().__init__(**faults)  # type: ignore[arg-type]
        bodies = list(messages)
        self.refused_mechanisms = {name.upper() for name in refused_mechanisms}
        self.mailbox: list[tuple[str, bytes]] = list(
            zip(
                uids or [f"uid-{i + 1}" for i in range(len(bodies))],
                bodies,
                strict=True,
            )
        )
        self.user = user
        self.password = password
        self.capabilities = (
            ["USER", "UIDL", "TOP"] if capabilities is None else capabilities
        )
        self.starttls_context = starttls
        if apop:
            greeting = greeting.rstrip(b"\r\n") + f" {self.APOP_STAMP}\r\n".encode()
        self.greeting = greeting
        self.retr_errors = set(retr_errors)
        self.quirks = set(quirks)
        self.hostile_sasl = hostile_sasl
        self.quit_count = 0
        self.logins = 0

    def handle(self, client: FakeClient) -> None:
        client.send(self.greeting)
        deleted: set[int] = set()
        user = ""
        authed = False
        while True:
            line = client.readline().rstrip(b"\r\n").decode("utf-8", "replace")
            self.commands.append(line)
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if self._fault(client, verb):
                continue
            if verb == "CAPA":
                caps = list(self.capabilities)
                if self.starttls_context is not None and "STLS" not in caps:
                    caps.append("STLS")
                client.send("+OK\r\n" + "".join(f"{c}\r\n" for c in caps) + ".\r\n")
            elif verb == "STLS" and self.starttls_context is not None:
                client.send("+OK begin TLS\r\n")
                client.start_tls(self.starttls_context)
            elif verb in ("USER", "PASS", "APOP", "AUTH"):
                authed = self._login(client, verb, arg, user)
                user = arg if verb == "USER" else user
                self.logins += authed
            elif verb == "QUIT":
                self.quit_count += 1
                # The UPDATE state: deletions become real only now.
                self.mailbox = [
                    m for i, m in enumerate(self.mailbox, 1) if i not in deleted
                ]
                client.send("+OK bye\r\n")
                return
            elif not authed:
                client.send("-ERR not logged in\r\n")
            else:
                self._transaction(client, verb, arg, deleted)

    def _login(self, client: FakeClient, verb: str, arg: str, user: str) -> bool:
        """USER, PASS, APOP or AUTH; True once logged in."""
        refused = "-ERR [AUTH] bad login\r\n"
        if verb == "USER":
            client.send("+OK\r\n")
            return False
        if verb == "PASS":
            authed = user == self.user and arg == self.password
        elif verb == "APOP":
            digest = hashlib.md5((self.APOP_STAMP + self.password).encode()).hexdigest()
            authed = b"<" in self.greeting and arg == f"{self.user} {digest}"
        elif arg.split(" ")[0].upper() in self.refused_mechanisms:
            authed = False
        else:
            mechanism, _, initial = arg.partition(" ")
            authed = serve_sasl(
                client,
                mechanism,
                initial or None,
                user=self.user,
                secret=self.password,
                hostile=self.hostile_sasl,
                record=self.commands,
            )
        client.send("+OK logged in\r\n" if authed else refused)
        return authed

    def _transaction(
        self, client: FakeClient, verb: str, arg: str, deleted: set[int]
    ) -> None:
        live = [
            (i, uid, body)
            for i, (uid, body) in enumerate(self.mailbox, 1)
            if i not in deleted
        ]
        if verb in ("UIDL", "LIST"):
            lie = self.LIST_LIE * ("list-lies" in self.quirks) - self.LIST_LIE * (
                "list-short" in self.quirks
            )
            rows = {
                i: f"{i} {uid if verb == 'UIDL' else len(body) + lie}"
                for i, uid, body in live
            }
            if not arg:
                client.send("+OK\r\n" + "".join(f"{r}\r\n" for r in rows.values()))
                client.send(".\r\n")
            elif arg.isdigit() and int(arg) in rows:
                client.send(f"+OK {rows[int(arg)]}\r\n")
            else:
                client.send("-ERR no such message\r\n")
        elif verb == "STAT":
            client.send(f"+OK {len(live)} {sum(len(b) for _, _, b in live)}\r\n")
        elif verb in ("RETR", "TOP"):
            number = int(arg.split()[0])
            if number in self.retr_errors or not 0 < number <= len(self.mailbox):
                client.send("-ERR cannot read that message\r\n")
                return
            body = self.mailbox[number - 1][1]
            head = b"+OK message follows\r\n"
            if verb == "TOP" and "top-truncates" in self.quirks:
                body = body[: self.TOP_CUT]
            if verb == "TOP" and "top-double-ok" in self.quirks:
                head += b"+OK top of message follows\r\n"
            client.send(head + dot_stuff(body) + b".\r\n")
        elif verb == "DELE":
            deleted.add(int(arg))
            client.send("+OK marked\r\n")
        elif verb == "RSET":
            deleted.clear()
            client.send("+OK\r\n")
        elif verb == "NOOP":
            client.send("+OK\r\n")
        else:
            client.send("-ERR unknown command\r\n")


def dot_stuff(body: bytes) -> bytes:
    """A body as it travels in POP3 RETR / SMTP DATA, before the final dot."""
    if body and not body.endswith(b"\n"):
        body += b"\r\n"
    stuffed = re.sub(rb"(?m)^\.", b"..", body)
    return stuffed


# -- IMAP ---------------------------------------------------------------------


@dataclass
class ImapMessage:
    uid: int
    body: bytes
    flags: set[str] = field(default_factory=set)


class FakeImapServer(_Scripted):
    """One INBOX with UIDs, \\Seen and \\Deleted flags and (UID) EXPUNGE.

    Also: AUTHENTICATE with the mechanisms of :func:`serve_sasl`, SASL-IR,
    ESEARCH replies (``UID SEARCH RETURN (ALL)``) when ``ESEARCH`` or
    ``IMAP4rev2`` is advertised, IDLE, and ``arrivals``: messages that arrive
    one per IDLE or NOOP command (announced with EXISTS), for idle tests.
    ``read_only=True`` answers SELECT with [READ-ONLY].
    """

    def __init__(
        self,
        messages: Iterable[bytes] = (),
        *,
        user: str = "joe",
        password: str = "secret",
        uidvalidity: int = 1234,
        first_uid: int = 101,
        capabilities: list[str] | None = None,
        starttls: ssl.SSLContext | None = None,
        greeting: bytes = b"* OK fake IMAP4rev1 ready\r\n",
        arrivals: Iterable[bytes] = (),
        read_only: bool = False,
        hostile_sasl: bytes | None = None,
        refused_mechanisms: Iterable[str] = (),
        login_capabilities: list[str] | None = None,
        **faults: object,
    ) -> None:
        super().__init__(**faults)  # type: ignore[arg-type]
        self.messages = [
            ImapMessage(first_uid + i, body) for i, body in enumerate(messages)
        ]
        # Sent in the tagged OK of a login, as Dovecot does (RFC 3501 7.1).
        self.login_capabilities = login_capabilities
        self.user = user
        self.password = password
        self.uidvalidity = uidvalidity
        self.capabilities = (
            ["IMAP4rev1", "AUTH=PLAIN", "UIDPLUS"]
            if capabilities is None
            else capabilities
        )
        self.starttls_context = starttls
        self.greeting = greeting
        self.folders = {"INBOX"}
        self.arrivals = list(arrivals)
        self.read_only = read_only
        self.hostile_sasl = hostile_sasl
        self.refused_mechanisms = {name.upper() for name in refused_mechanisms}

    def _caps(self) -> str:
        caps = list(self.capabilities)
        if self.starttls_context is not None and "STARTTLS" not in caps:
            caps.append("STARTTLS")
        return " ".join(caps)

    def _read_command(self, client: FakeClient) -> bytes:
        """One command with its literals inlined as quoted strings."""
        line = client.readline()
        while (match := re.search(rb"\{(\d+)\}\r?\n$", line)) is not None:
            client.send(b"+ go ahead\r\n")
            data = client.read_exact(int(match.group(1)))
            line = line[: match.start()] + b'"' + data + b'"' + client.readline()
        return line.rstrip(b"\r\n")

    def handle(self, client: FakeClient) -> None:
        client.send(self.greeting)
        authed = self.greeting.startswith(b"* PREAUTH")
        selected = False
        while True:
            line = self._read_command(client)
            text = line.decode("utf-8", "replace")
            self.commands.append(text)
            tag, _, rest = text.partition(" ")
            verb, _, arg = rest.partition(" ")
            verb = verb.upper()
            if verb == "UID":
                sub, _, arg = arg.partition(" ")
                verb = f"UID {sub.upper()}"
            # The body fetch can be scripted apart from the size fetch.
            fault = verb + (" BODY" if "BODY" in arg.upper() else "")
            if self._fault(client, fault, tag):
                continue
            ok = f"{tag} OK {verb} completed\r\n"
            if verb == "CAPABILITY":
                client.send(f"* CAPABILITY {self._caps()}\r\n{ok}")
            elif verb == "STARTTLS" and self.starttls_context is not None:
                client.send(f"{tag} OK begin TLS\r\n")
                client.start_tls(self.starttls_context)
            elif verb in ("LOGIN", "AUTHENTICATE"):
                authed = self._login(client, verb, arg)
                if authed and self.login_capabilities is not None:
                    caps = " ".join(self.login_capabilities)
                    ok = f"{tag} OK [CAPABILITY {caps}] Logged in\r\n"
                client.send(
                    ok if authed else f"{tag} NO [AUTHENTICATIONFAILED] bad\r\n"
                )
            elif verb == "LOGOUT":
                client.send(f"* BYE see you\r\n{ok}")
                return
            elif verb == "NOOP":
                client.send(self._arrive() + ok)
            elif verb == "ENABLE":
                client.send(ok)
            elif not authed:
                client.send(f"{tag} NO not logged in\r\n")
            elif verb in ("SELECT", "EXAMINE"):
                name = _imap_strings(arg)
                if not name or name[0] not in self.folders:
                    client.send(f"{tag} NO no such folder\r\n")
                    continue
                selected = True
                mode = (
                    "READ-ONLY" if self.read_only or verb == "EXAMINE" else "READ-WRITE"
                )
                client.send(
                    f"* {len(self.messages)} EXISTS\r\n* 0 RECENT\r\n"
                    f"* OK [UIDVALIDITY {self.uidvalidity}] UIDs valid\r\n"
                    f"* OK [UIDNEXT {self._uidnext()}] next\r\n"
                    f"{tag} OK [{mode}] {verb} completed\r\n"
                )
            elif not selected:
                client.send(f"{tag} BAD no folder selected\r\n")
            elif verb == "IDLE":
                self._idle(client, ok)
            elif verb == "UNSELECT" and "UNSELECT" in self.capabilities:
                selected = False
                client.send(ok)
            else:
                self._selected(client, tag, verb, arg, ok)

    def _login(self, client: FakeClient, verb: str, arg: str) -> bool:
        if verb == "LOGIN":
            return _imap_strings(arg) == [self.user, self.password]
        mechanism, _, initial = arg.partition(" ")
        if mechanism.upper() in self.refused_mechanisms:
            return False
        return serve_sasl(
            client,
            mechanism,
            initial or None,
            user=self.user,
            secret=self.password,
            hostile=self.hostile_sasl,
            record=self.commands,
        )

    def _arrive(self) -> str:
        """Deliver the next arrival, if any; returns its EXISTS announcement."""
        if not self.arrivals:
            return ""
        body = self.arrivals.pop(0)
        self.messages.append(ImapMessage(self._uidnext(), body))
        return f"* {len(self.messages)} EXISTS\r\n"

    def _idle(self, client: FakeClient, ok: str) -> None:
        client.send("+ idling\r\n")
        client.send(self._arrive())
        while not client.line_ready(0.05):
            pass
        done = client.readline().strip()
        self.commands.append(done.decode("utf-8", "replace"))
        client.send(ok if done.upper() == b"DONE" else "* BAD expected DONE\r\n")

    def _selected(
        self, client: FakeClient, tag: str, verb: str, arg: str, ok: str
    ) -> None:
        if verb == "UID SEARCH":
            extended = arg.upper().startswith("RETURN (ALL) ")
            criteria = arg.upper().removeprefix("RETURN (ALL) ")
            found = [m.uid for m in self.messages if _matches(m, criteria)]
            if extended:
                result = f" ALL {_sequence(found)}" if found else ""
                client.send(f'* ESEARCH (TAG "{tag}") UID{result}\r\n{ok}')
            else:
                uids = "".join(f" {uid}" for uid in found)
                client.send(f"* SEARCH{uids}\r\n{ok}")
        elif verb == "UID FETCH":
            self._fetch(client, arg, ok)
        elif verb == "UID STORE":
            wanted = _parse_set(arg.split(" ", 1)[0], self._uidnext() - 1)
            for message in self.messages:
                if message.uid in wanted and "\\DELETED" in arg.upper():
                    message.flags.add("\\Deleted")
            client.send(ok)
        elif verb in ("EXPUNGE", "UID EXPUNGE"):
            limit = _parse_set(arg, self._uidnext() - 1) if arg else None
            out = []
            for index in range(len(self.messages), 0, -1):
                message = self.messages[index - 1]
                if "\\Deleted" in message.flags and (
                    limit is None or message.uid in limit
                ):
                    out.append(f"* {index} EXPUNGE\r\n")
                    del self.messages[index - 1]
            client.send("".join(out) + ok)
        else:
            client.send(f"{tag} BAD unknown command\r\n")

    def _uidnext(self) -> int:
        return (self.messages[-1].uid + 1) if self.messages else 1

    def _fetch(self, client: FakeClient, arg: str, ok: str) -> None:
        uid_set, _, items = arg.partition(" ")
        wanted = _parse_set(uid_set, self._uidnext() - 1)
        for index, message in enumerate(self.messages, 1):
            if message.uid not in wanted:
                continue
            if "BODY" in items.upper():
                client.send(
                    f"* {index} FETCH (UID {message.uid} BODY[] "
                    f"{{{len(message.body)}}}\r\n".encode()
                    + message.body
                    + b")\r\n"
                )
            else:
                client.send(
                    f"* {index} FETCH (UID {message.uid} "
                    f"RFC822.SIZE {len(message.body)})\r\n"
                )
        client.send(ok)


def _matches(message: ImapMessage, criteria: str) -> bool:
    """The few SEARCH keys the engine uses: [NOT] DELETED, SEEN, UNSEEN, ALL."""
    flags = {flag.upper() for flag in message.flags}
    words = criteria.split()
    result = True
    negate = False
    for word in words:
        if word == "NOT":
            negate = True
            continue
        if word in ("DELETED", "SEEN"):
            hit = f"\\{word}" in flags
        elif word == "UNSEEN":
            hit = "\\SEEN" not in flags
        else:
            hit = True  # ALL
        result = result and (hit != negate)
        negate = False
    return result


def _sequence(numbers: list[int]) -> str:
    return ",".join(str(n) for n in numbers)


def _imap_strings(arg: str) -> list[str]:
    """Quoted strings and atoms of a command's arguments."""
    out: list[str] = []
    for quoted, atom in re.findall(r'"((?:[^"\\]|\\.)*)"|(\S+)', arg):
        out.append(re.sub(r"\\(.)", r"\1", quoted) if quoted or not atom else atom)
    return out


def _parse_set(text: str, largest: int) -> set[int]:
    found: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition(":")
        start = largest if low == "*" else int(low)
        end = start if not high else (largest if high == "*" else int(high))
        found.update(range(min(start, end), max(start, end) + 1))
    return found


# -- SMTP / LMTP ---------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    recipients: list[str]
    data: bytes  # unstuffed, CRLF line endings, without the final dot


class FakeSmtpServer(_Scripted):
    """A listener that records envelopes; verbs: GREETING MAIL RCPT DATA END RSET.

    ``replies={"END": "451 4.3.0 try later"}`` answers the final dot that way;
    ``replies={"RCPT:bob@x": "550 no such user"}`` targets one recipient (and,
    for LMTP, ``"END:bob@x"`` its reply after the dot).
    """

    def __init__(
        self,
        *,
        lmtp: bool = False,
        replies: dict[str, str] | None = None,
        **faults: object,
    ) -> None:
        super().__init__(**faults)  # type: ignore[arg-type]
        self.lmtp = lmtp
        self.replies = dict(replies or {})
        self.received: list[Received] = []
        self.rsets = 0

    def _reply(self, key: str, default: str) -> str:
        return self.replies.get(key, default) + "\r\n"

    def handle(self, client: FakeClient) -> None:
        if self._fault(client, "GREETING"):
            return
        client.send(self._reply("GREETING", "220 fake.local ESMTP"))
        mail_from = ""
        accepted: list[str] = []
        while True:
            line = client.readline().rstrip(b"\r\n").decode("utf-8", "replace")
            self.commands.append(line)
            verb = line.split(" ", 1)[0].split(":", 1)[0].upper()
            if self._fault(client, verb):
                continue
            if verb in ("EHLO", "LHLO", "HELO"):
                client.send("250-fake.local\r\n250-8BITMIME\r\n250 PIPELINING\r\n")
            elif verb == "MAIL":
                mail_from = line.split(":", 1)[1].split(">")[0].lstrip(" <")
                accepted = []
                client.send(self._reply("MAIL", "250 2.1.0 ok"))
            elif verb == "RCPT":
                rcpt = line.split(":", 1)[1].strip().strip("<>")
                reply = self._reply(
                    f"RCPT:{rcpt}", self.replies.get("RCPT", "250 2.1.5 ok")
                )
                if reply.startswith("2"):
                    accepted.append(rcpt)
                client.send(reply)
            elif verb == "DATA":
                # RFC 2920 3.1: no valid recipient, no DATA (pipelined clients
                # send it regardless of the RCPT replies).
                default = "354 go ahead" if accepted else "554 5.5.1 no recipients"
                reply = self._reply("DATA", default)
                client.send(reply)
                if not reply.startswith("354"):
                    continue
                data = self._read_data(client)
                if self._fault(client, "END"):
                    continue
                if self.lmtp:
                    answers = [
                        self._reply(f"END:{r}", self.replies.get("END", "250 2.0.0 ok"))
                        for r in accepted
                    ]
                else:
                    answers = [self._reply("END", "250 2.0.0 queued")]
                if any(a.startswith("2") for a in answers):
                    self.received.append(Received(mail_from, list(accepted), data))
                client.send("".join(answers))
            elif verb == "RSET":
                self.rsets += 1
                client.send(self._reply("RSET", "250 2.0.0 ok"))
            elif verb == "QUIT":
                client.send("221 bye\r\n")
                return
            else:
                client.send("502 5.5.2 what?\r\n")

    def _read_data(self, client: FakeClient) -> bytes:
        lines: list[bytes] = []
        while True:
            line = client.readline()
            if line == b".\r\n":
                return b"".join(lines)
            lines.append(line[1:] if line.startswith(b".") else line)


def refused_port() -> int:
    """A loopback port on which nothing listens (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until true or ``timeout``; fake servers run on threads."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
