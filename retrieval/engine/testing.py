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
"""

from __future__ import annotations

import base64
import contextlib
import re
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

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        sock.settimeout(CLIENT_WAIT)
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

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
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
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
        client = FakeClient(sock)
        try:
            if self.implicit_tls is not None:
                client.start_tls(self.implicit_tls)
            self.handle(client)
        except (ClientGone, ssl.SSLError, ConnectionError, TimeoutError):
            pass
        except BaseException as exc:  # reported to the test through .errors
            self.errors.append(exc)
        finally:
            client.close()

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
    ) -> None:
        super().__init__(tls=tls, unix_path=unix_path)
        self.overrides = dict(overrides or {})
        self.stall_on = stall_on
        self.drop_on = drop_on
        self.commands: list[str] = []

    def _fault(self, client: FakeClient, verb: str, tag: str = "") -> bool:
        """Apply a scripted fault for ``verb``; True when it replaced the answer."""
        if verb == self.drop_on:
            client.close()
            raise ClientGone
        if verb == self.stall_on:
            client.wait_until_gone()
            raise ClientGone
        if verb in self.overrides:
            client.send(self.overrides[verb].replace(b"{tag}", tag.encode()))
            return True
        return False


# -- POP3 ---------------------------------------------------------------------


class FakePop3Server(_Scripted):
    """A POP3 maildrop: DELE takes effect only at QUIT, as RFC 1939 says."""

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
        **faults: object,
    ) -> None:
        super().__init__(**faults)  # type: ignore[arg-type]
        bodies = list(messages)
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
        self.greeting = greeting
        self.retr_errors = set(retr_errors)
        self.quit_count = 0

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
            elif verb == "USER":
                user = arg
                client.send("+OK\r\n")
            elif verb == "PASS":
                authed = user == self.user and arg == self.password
                client.send(
                    "+OK logged in\r\n" if authed else "-ERR [AUTH] bad login\r\n"
                )
            elif verb == "AUTH" and arg.upper().startswith("PLAIN "):
                raw = base64.b64decode(arg.split(" ", 1)[1])
                authed = raw == f"\0{self.user}\0{self.password}".encode()
                client.send("+OK\r\n" if authed else "-ERR [AUTH] bad login\r\n")
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
            elif verb in ("UIDL", "LIST"):
                rows = [
                    f"{i} {uid if verb == 'UIDL' else len(body)}\r\n"
                    for i, (uid, body) in enumerate(self.mailbox, 1)
                    if i not in deleted
                ]
                client.send("+OK\r\n" + "".join(rows) + ".\r\n")
            elif verb == "STAT":
                client.send(f"+OK {len(self.mailbox)} 0\r\n")
            elif verb == "RETR":
                number = int(arg)
                if number in self.retr_errors or not 0 < number <= len(self.mailbox):
                    client.send("-ERR cannot read that message\r\n")
                    continue
                body = self.mailbox[number - 1][1]
                client.send(b"+OK message follows\r\n" + dot_stuff(body) + b".\r\n")
            elif verb == "DELE":
                deleted.add(int(arg))
                client.send("+OK marked\r\n")
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
    """One INBOX with UIDs, \\Deleted flags and (UID) EXPUNGE."""

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
        **faults: object,
    ) -> None:
        super().__init__(**faults)  # type: ignore[arg-type]
        self.messages = [
            ImapMessage(first_uid + i, body) for i, body in enumerate(messages)
        ]
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
            elif verb == "LOGIN":
                args = _imap_strings(arg)
                authed = args == [self.user, self.password]
                client.send(
                    ok if authed else f"{tag} NO [AUTHENTICATIONFAILED] bad\r\n"
                )
            elif verb == "AUTHENTICATE":
                _mechanism, _, initial = arg.partition(" ")
                if not initial:
                    client.send(b"+ \r\n")
                    initial = client.readline().strip().decode()
                raw = base64.b64decode(initial)
                authed = raw == f"\0{self.user}\0{self.password}".encode()
                client.send(
                    ok if authed else f"{tag} NO [AUTHENTICATIONFAILED] bad\r\n"
                )
            elif verb == "LOGOUT":
                client.send(f"* BYE see you\r\n{ok}")
                return
            elif verb == "NOOP":
                client.send(ok)
            elif not authed:
                client.send(f"{tag} NO not logged in\r\n")
            elif verb in ("SELECT", "EXAMINE"):
                name = _imap_strings(arg)
                if not name or name[0] not in self.folders:
                    client.send(f"{tag} NO no such folder\r\n")
                    continue
                selected = True
                client.send(
                    f"* {len(self.messages)} EXISTS\r\n* 0 RECENT\r\n"
                    f"* OK [UIDVALIDITY {self.uidvalidity}] UIDs valid\r\n"
                    f"* OK [UIDNEXT {self._uidnext()}] next\r\n"
                    f"{tag} OK [READ-WRITE] {verb} completed\r\n"
                )
            elif not selected:
                client.send(f"{tag} BAD no folder selected\r\n")
            elif verb == "UID SEARCH":
                uids = " ".join(
                    str(m.uid)
                    for m in self.messages
                    if "NOT DELETED" not in arg.upper() or "\\Deleted" not in m.flags
                )
                client.send(f"* SEARCH {uids}\r\n{ok}".replace("SEARCH \r", "SEARCH\r"))
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
                reply = self._reply("DATA", "354 go ahead")
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
