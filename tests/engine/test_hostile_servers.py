"""Hostile servers lose nothing: a message that looks like a status line, a
server that trickles, a listing that never ends.

Each case is something fetchmail 6.4 ends by its ``timeout`` or survives, and
that no real server does on purpose: the fake servers do it on loopback.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import pytest

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.pop3 import Pop3Session
from retrieval.engine.report import ExitCode
from retrieval.engine.run import poll
from retrieval.engine.session import RemoteMessage
from retrieval.engine.testing import FakePop3Server, FakeSmtpServer, dot_stuff
from retrieval.engine.transport import Connection

from .conftest import make_spec, message, without_trace
from .test_wire_chunks import ScriptedSocket, read

if TYPE_CHECKING:
    import socket

    from retrieval.engine.testing import FakeServer


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
