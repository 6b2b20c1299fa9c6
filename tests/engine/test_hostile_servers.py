"""Hostile servers lose nothing: a message that looks like a status line, a
server that trickles, a listing that never ends.

Each case is something fetchmail 6.4 ends by its ``timeout`` or survives, and
that no real server does on purpose: the fake servers do it on loopback.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import pytest

from retrieval.engine.fetch.pop3 import Pop3Session
from retrieval.engine.fetch.session import RemoteMessage
from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode
from retrieval.engine.run import poll
from retrieval.engine.spec import MailProtocol
from retrieval.engine.wire.transport import Connection
from tests.support.fake_servers import (
    FakeClient,
    FakeImapServer,
    FakePop3Server,
    FakeSmtpServer,
    dot_stuff,
)

from .conftest import make_spec, message, without_trace
from .test_wire_chunks import ScriptedSocket, read

if TYPE_CHECKING:
    import socket

    from tests.support.fake_servers import FakeServer


def run_pop3(server: FakePop3Server, listener: FakeSmtpServer, **options: object):
    ledger = MemoryLedger()
    spec = make_spec(server, listener, **options)  # type: ignore[arg-type]
    return poll(spec, ledger=ledger, transcript=ListTranscript()), ledger


STATUS_LIKE = b"+OK this message has no header\r\n\r\nand a body\r\n"


def pop3_over(wire: bytes) -> Pop3Session:
    conn = Connection(
        cast("socket.socket", ScriptedSocket([wire])),
        timeout=1.0,
        transcript=ListTranscript(),
        peer="pop.example.org:110",
    )
    spec = make_spec(cast("FakeServer", SimpleNamespace(port=110)))
    session = Pop3Session(conn, "+OK hello", spec)
    session.capabilities = {"UIDL"}
    return session


class StatusLikeMessageTests:
    @pytest.mark.parametrize("capabilities", [["UIDL", "TOP"], ["UIDL"]])
    def test_a_message_starting_with_ok_is_delivered_whole(
        self, listener: FakeSmtpServer, capabilities: list[str]
    ) -> None:
        bodies = [STATUS_LIKE, message(2)]
        with FakePop3Server(bodies, capabilities=capabilities) as server:
            report, _ = run_pop3(server, listener)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert [without_trace(r.data) for r in listener.received] == bodies
        assert not any("second +OK" in note for note in report.notes)
        assert server.mailbox == []

    def test_without_a_declared_size_the_line_is_kept(self) -> None:
        wire = b"+OK 1 follows\r\n" + dot_stuff(STATUS_LIKE) + b".\r\n"
        session = pop3_over(wire)
        unknown = RemoteMessage("u1", 1, -1)
        session.prefetch([unknown])
        assert read(session.fetch(unknown)) == STATUS_LIKE

    def test_a_server_that_doubled_once_keeps_a_message_that_starts_with_ok(
        self,
    ) -> None:
        """The server shows the quirk on message 1; message 2 really starts
        with "+OK" (its declared size says so) and keeps that line."""
        first = message(1)
        wire = (
            b"+OK\r\n+OK top follows\r\n" + dot_stuff(first) + b".\r\n"
            b"+OK\r\n" + dot_stuff(STATUS_LIKE) + b".\r\n"
        )
        session = pop3_over(wire)
        messages = [
            RemoteMessage("u1", 1, len(first)),
            RemoteMessage("u2", 2, len(STATUS_LIKE)),
        ]
        session.prefetch(messages)
        assert read(session.fetch(messages[0])) == first
        assert read(session.fetch(messages[1])) == STATUS_LIKE
        assert any("second +OK" in note for note in session.notes)


# -- slow and endless servers ----------------------------------------------------

# Faster than the timeout for each piece, far slower than it over the whole.
TIMEOUT = 1.0
PIECE_EVERY = 0.25
# Short lines: each one arrives well inside the timeout, the whole does not.
TRICKLED = b"Subject: slow\r\n\r\n" + b"line\r\n" * 60
PIECE = 8  # bytes per piece: about 12 seconds for the whole message


def trickle(client: FakeClient, head: bytes, data: bytes, size: int) -> None:
    """Send ``head``, then ``data`` ``size`` bytes at a time, waiting between."""
    client.send(head)
    for at in range(0, len(data), size):
        client.send(data[at : at + size])
        time.sleep(PIECE_EVERY)


def stream_lines(client: FakeClient, prefix: bytes, cap: int) -> None:
    """Distinct 1,000-byte lines until the client goes or ``cap`` bytes went.

    The cap only keeps a client without a bound from running the machine out
    of memory: it is far above every bound the engine sets.
    """
    sent = 0
    number = 0
    while sent < cap:
        number += 1
        head = prefix + b"%d " % number
        line = head + b"c" * (998 - len(head)) + b"\r\n"
        chunk = line * 64
        client.send(chunk)
        sent += len(chunk)


class SlowPop3(FakePop3Server):
    """POP3 that trickles one answer (``slow``: verb -> head, rest, piece size)."""

    def __init__(
        self, *args: object, slow: dict[str, tuple[bytes, bytes, int]], **kwargs: object
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.slow = slow

    def _fault(self, client: FakeClient, verb: str, tag: str = "") -> bool:
        if verb in self.slow:
            trickle(client, *self.slow[verb])
            return True
        return super()._fault(client, verb, tag)


class EndlessPop3(FakePop3Server):
    """POP3 whose answer to one verb is "+OK" and then lines without end."""

    def __init__(self, *args: object, endless: str, cap: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.endless = endless
        self.cap = cap

    def _fault(self, client: FakeClient, verb: str, tag: str = "") -> bool:
        if verb == self.endless:
            client.send(b"+OK here it comes\r\n")
            stream_lines(client, b"" if verb == "CAPA" else b"1 ", self.cap)
            client.send(b".\r\n")
            return True
        return super()._fault(client, verb, tag)


class EndlessImap(FakeImapServer):
    """IMAP that answers one verb with untagged lines without end."""

    def __init__(self, *args: object, endless: str, cap: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.endless = endless
        self.cap = cap

    def _fault(self, client: FakeClient, verb: str, tag: str = "") -> bool:
        if verb == self.endless:
            stream_lines(client, b"* OK still thinking ", self.cap)
            client.send(f"{tag} NO giving up\r\n")
            return True
        return super()._fault(client, verb, tag)


class TrickleTests:
    def test_a_body_trickled_inside_the_timeout_is_cut_off_as_a_whole(
        self, listener: FakeSmtpServer
    ) -> None:
        slow = {"RETR": (b"+OK\r\n", dot_stuff(TRICKLED) + b".\r\n", PIECE)}
        with SlowPop3([message(1)], capabilities=["UIDL"], slow=slow) as server:
            report, ledger = run_pop3(server, listener, timeout=TIMEOUT)
        assert report.exit_code is ExitCode.SOCKET, report.error
        assert "too slowly" in report.error
        assert listener.received == [] and ledger.marks == []
        assert len(server.mailbox) == 1

    def test_a_listing_trickled_line_by_line_is_cut_off(
        self, listener: FakeSmtpServer
    ) -> None:
        lines = b"".join(b"%d uid-%d\r\n" % (n, n) for n in range(1, 121))
        slow = {"UIDL": (b"+OK\r\n", lines + b".\r\n", 10)}
        with SlowPop3([message(1)], slow=slow) as server:
            report, _ = run_pop3(server, listener, timeout=TIMEOUT)
        assert report.exit_code is ExitCode.SOCKET, report.error
        assert "too slowly" in report.error
        assert listener.received == [] and len(server.mailbox) == 1

    def test_an_imap_literal_trickled_inside_the_timeout_is_cut_off(
        self, listener: FakeSmtpServer
    ) -> None:
        head = b"* 1 FETCH (UID 101 BODY[] {%d}\r\n" % len(TRICKLED)
        rest = TRICKLED + b")\r\n{tag} OK done\r\n"
        slow = {"UID FETCH BODY": (head, rest, PIECE)}
        with SlowImap([message(1)], slow=slow) as server:
            report, ledger = run_imap(server, listener, timeout=TIMEOUT)
        assert report.exit_code is ExitCode.SOCKET, report.error
        assert listener.received == [] and ledger.marks == []
        assert len(server.messages) == 1

    def test_untagged_lines_trickled_before_the_answer_are_cut_off(
        self, listener: FakeSmtpServer
    ) -> None:
        noise = b"".join(b"* OK searching %d\r\n" % n for n in range(120))
        rest = noise + b"* SEARCH 101\r\n{tag} OK done\r\n"
        with SlowImap([message(1)], slow={"UID SEARCH": (b"", rest, 20)}) as server:
            report, _ = run_imap(server, listener, timeout=TIMEOUT)
        assert report.exit_code is ExitCode.SOCKET, report.error
        assert listener.received == [] and len(server.messages) == 1


class SlowImap(FakeImapServer):
    """IMAP that trickles one answer (``slow``: verb -> head, rest, piece size)."""

    def __init__(
        self, *args: object, slow: dict[str, tuple[bytes, bytes, int]], **kwargs: object
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.slow = slow

    def _fault(self, client: FakeClient, verb: str, tag: str = "") -> bool:
        if verb in self.slow:
            head, data, size = self.slow[verb]
            trickle(client, head, data.replace(b"{tag}", tag.encode()), size)
            return True
        return super()._fault(client, verb, tag)


class EndlessResponseTests:
    def test_an_endless_capa_is_a_protocol_error(
        self, listener: FakeSmtpServer
    ) -> None:
        with EndlessPop3([message(1)], endless="CAPA", cap=8 << 20) as server:
            report, _ = run_pop3(server, listener)
        assert report.exit_code is ExitCode.PROTOCOL, report.error
        assert "CAPA is longer than" in report.error
        assert listener.received == [] and len(server.mailbox) == 1

    def test_an_endless_uidl_is_a_protocol_error(
        self, listener: FakeSmtpServer
    ) -> None:
        with EndlessPop3([message(1)], endless="UIDL", cap=40 << 20) as server:
            report, _ = run_pop3(server, listener, timeout=30)
        assert report.exit_code is ExitCode.PROTOCOL, report.error
        assert "UIDL is longer than" in report.error
        assert listener.received == [] and len(server.mailbox) == 1

    def test_endless_untagged_lines_during_login_are_a_protocol_error(
        self, listener: FakeSmtpServer
    ) -> None:
        with EndlessImap([message(1)], endless="AUTHENTICATE", cap=24 << 20) as server:
            report, _ = run_imap(server, listener, timeout=30)
        assert report.exit_code is ExitCode.PROTOCOL, report.error
        assert "overly long" in report.error
        assert listener.received == [] and len(server.messages) == 1


def run_imap(server: FakeImapServer, listener: FakeSmtpServer, **options: object):
    ledger = MemoryLedger()
    spec = make_spec(server, listener, protocol=MailProtocol.IMAP, **options)  # type: ignore[arg-type]
    return poll(spec, ledger=ledger, transcript=ListTranscript()), ledger
