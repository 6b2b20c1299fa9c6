"""POP3 polls against the scripted fake server: the happy path and its faults."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode, MessageStatus
from retrieval.engine.run import poll
from retrieval.engine.spec import TlsMode
from retrieval.engine.testing import FakePop3Server, FakeSmtpServer, refused_port

from .conftest import make_spec, message, without_trace

if TYPE_CHECKING:
    import ssl

    import pytest

TRICKY = (
    b"Return-Path: <tricky@example.org>\r\n"
    b"Subject: dots, 8-bit and a long line\r\n\r\n"
    b".starts with a dot\r\n"
    b"..two dots\r\n"
    b".\r\n"
    b"caf\xe9 \xff\x00 bytes\r\n" + b"L" * 100_000 + b"\r\n"
)


def run(server: FakePop3Server, listener: FakeSmtpServer | None, **options: object):
    ledger = options.pop("ledger", None) or MemoryLedger()
    transcript = ListTranscript()
    spec = make_spec(server, listener, **options)  # type: ignore[arg-type]
    report = poll(spec, ledger=ledger, transcript=transcript)  # type: ignore[arg-type]
    return report, ledger, transcript


class Pop3DeliveryTests:
    def test_it_delivers_byte_for_byte_and_empties_the_mailbox(
        self, listener: FakeSmtpServer
    ) -> None:
        bodies = [message(1), TRICKY, message(3)]
        with FakePop3Server(bodies) as server:
            report, ledger, _ = run(server, listener)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert [m.status for m in report.messages] == [MessageStatus.DELIVERED] * 3
        assert all(m.deleted for m in report.messages)
        assert server.mailbox == []
        assert [without_trace(r.data) for r in listener.received] == bodies
        assert listener.received[0].mail_from == "sender1@example.org"
        assert listener.received[1].recipients == ["joe@example.com"]
        assert len(ledger.marks) == 3
        assert report.greeting.startswith("+OK fake POP3")
        assert listener.connections == 1 and listener.rsets == 2

    def test_it_keeps_messages_and_skips_them_next_time(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server([message(1), message(2)]) as server:
            first, ledger, _ = run(server, listener, keep=True)
            second, _, _ = run(server, listener, keep=True, ledger=ledger)
        assert first.exit_code is ExitCode.SUCCESS
        assert second.exit_code is ExitCode.NOMAIL
        assert len(server.mailbox) == 2 and len(listener.received) == 2
        assert not any(c.startswith("DELE") for c in server.commands)

    def test_it_fetches_everything_again_with_fetchall(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server([message(1)]) as server:
            _, ledger, _ = run(server, listener, keep=True)
            again, _, _ = run(server, listener, keep=True, fetchall=True, ledger=ledger)
        assert again.delivered == 1 and len(listener.received) == 2

    def test_it_deletes_without_redelivery_what_the_ledger_already_has(
        self, listener: FakeSmtpServer
    ) -> None:
        ledger = MemoryLedger()
        ledger.mark_delivered("INBOX", None, "uid-1")
        with FakePop3Server([message(1), message(2)]) as server:
            report, _, _ = run(server, listener, ledger=ledger)
        assert [r.data.count(b"message 2") for r in listener.received] == [1]
        assert server.mailbox == []
        assert report.messages[0].status is MessageStatus.SKIPPED
        assert report.messages[0].deleted

    def test_it_commits_deletes_only_when_quit_succeeds(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server([message(1)], drop_on="QUIT") as server:
            report, ledger, _ = run(server, listener)
            assert len(server.mailbox) == 1  # the server rolled the DELE back
            assert not report.messages[0].deleted
            server.drop_on = None
            again, _, _ = run(server, listener, ledger=ledger)
        assert server.mailbox == []
        assert len(listener.received) == 1  # not delivered twice
        assert again.messages[0].deleted

    def test_it_skips_one_message_the_server_cannot_send(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server(
            [message(1), message(2), message(3)], retr_errors=[2]
        ) as server:
            report, _, _ = run(server, listener)
        assert [m.status for m in report.messages] == [
            MessageStatus.DELIVERED,
            MessageStatus.FAILED,
            MessageStatus.DELIVERED,
        ]
        assert [uid for uid, _ in server.mailbox] == ["uid-2"]
        assert report.exit_code is ExitCode.SUCCESS

    def test_it_skips_messages_over_the_size_limit(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server([message(1), message(2, b"x" * 5000)]) as server:
            report, _, _ = run(server, listener, limit=1000)
        assert [m.status for m in report.messages] == [
            MessageStatus.DELIVERED,
            MessageStatus.SKIPPED,
        ]
        assert [uid for uid, _ in server.mailbox] == ["uid-2"]
        assert "RETR 2" not in server.commands

    def test_it_works_without_uidl_unless_asked_to_keep(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server([message(1)], capabilities=["USER"]) as server:
            server.overrides["UIDL"] = b"-ERR no UIDL here\r\n"
            kept, _, _ = run(server, listener, keep=True)
            assert kept.exit_code is ExitCode.ERROR and "UIDL" in kept.error
            report, ledger, _ = run(server, listener)
        assert report.exit_code is ExitCode.SUCCESS and server.mailbox == []
        assert ledger.marks == []  # message numbers are no key for next time

    def test_it_leaves_duplicated_uids_alone(self, listener: FakeSmtpServer) -> None:
        with FakePop3Server(
            [message(1), message(2), message(3)], uids=["a", "dup", "dup"]
        ) as server:
            report, _, _ = run(server, listener)
        assert [m.uid for m in report.messages] == ["a"]
        assert [uid for uid, _ in server.mailbox] == ["dup", "dup"]
        assert any("used twice" in note for note in report.notes)

    def test_it_uses_auth_plain_when_asked(self, listener: FakeSmtpServer) -> None:
        with FakePop3Server(
            [message(1)], capabilities=["UIDL", "SASL PLAIN"], password="pw"
        ) as server:
            report, _, transcript = run(server, listener, password="pw", auth="plain")
        assert report.exit_code is ExitCode.SUCCESS
        assert ("C", "AUTH PLAIN ********") in transcript.lines


class Pop3FaultsTests:
    def test_wrong_password_is_authfail_and_nothing_is_fetched(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server([message(1)]) as server:
            report, _, _ = run(server, listener, password="wrong")
        assert report.exit_code is ExitCode.AUTHFAIL
        assert report.error.startswith("Wrong user name or password (the server said:")
        assert len(server.mailbox) == 1 and "LIST" not in server.commands

    def test_a_locked_mailbox_is_lockbusy(self, listener: FakeSmtpServer) -> None:
        overrides = {"PASS": b"-ERR [IN-USE] mailbox locked by another session\r\n"}
        with FakePop3Server([message(1)], overrides=overrides) as server:
            report, _, _ = run(server, listener)
        assert report.exit_code is ExitCode.LOCKBUSY

    def test_an_over_long_line_is_a_protocol_error(
        self, listener: FakeSmtpServer
    ) -> None:
        overrides = {"UIDL": b"+OK\r\n1 " + b"x" * 100_000}  # no line end, ever
        with FakePop3Server([message(1)], overrides=overrides) as server:
            report, _, _ = run(server, listener)
        assert report.exit_code is ExitCode.PROTOCOL
        assert "longer than 2048 bytes" in report.error
        assert len(server.mailbox) == 1 and listener.received == []

    def test_a_missing_ok_is_a_protocol_error(self, listener: FakeSmtpServer) -> None:
        with FakePop3Server(
            [message(1)], overrides={"USER": b"OK go on\r\n"}
        ) as server:
            report, _, _ = run(server, listener)
        assert report.exit_code is ExitCode.PROTOCOL
        assert not any(c.startswith("PASS") for c in server.commands)

    def test_a_stalled_server_times_out(self, listener: FakeSmtpServer) -> None:
        with FakePop3Server([message(1)], stall_on="RETR") as server:
            started = time.monotonic()
            report, _, _ = run(server, listener, timeout=0.5)
        assert time.monotonic() - started < 3
        assert report.exit_code is ExitCode.SOCKET
        assert "did not answer within 0.5 seconds" in report.error
        assert len(server.mailbox) == 1

    def test_a_connection_dropped_mid_poll_deletes_nothing(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server([message(1), message(2)], drop_on="RETR") as server:
            report, ledger, _ = run(server, listener)
        assert report.exit_code is ExitCode.SOCKET
        assert len(server.mailbox) == 2 and ledger.marks == []

    def test_an_endless_body_hits_the_message_cap(
        self, listener: FakeSmtpServer
    ) -> None:
        overrides = {"RETR": b"+OK\r\n" + b"line\r\n" * 2000}  # and no final dot
        with FakePop3Server([message(1)], overrides=overrides) as server:
            report, _, _ = run(server, listener, max_message_bytes=4096)
        assert report.exit_code is ExitCode.PROTOCOL
        assert "larger than the limit" in report.error
        assert len(server.mailbox) == 1

    def test_a_refused_connection_is_a_socket_error(self) -> None:
        server = FakePop3Server()
        server.port = refused_port()
        report, _, _ = run(server, None)
        assert report.exit_code is ExitCode.SOCKET
        assert "connection refused" in report.error

    def test_an_unknown_name_is_a_dns_error(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def fail(*args: object, **kwargs: object) -> None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

        monkeypatch.setattr(socket, "getaddrinfo", fail)
        report, _, _ = run(FakePop3Server(), None)
        assert report.exit_code is ExitCode.DNS
        assert "could not be resolved" in report.error


class Pop3TlsTests:
    def test_it_upgrades_with_stls_and_rereads_capabilities(
        self, listener: FakeSmtpServer, server_tls: ssl.SSLContext, ca_file: str
    ) -> None:
        with FakePop3Server([message(1)], starttls=server_tls) as server:
            report, _, transcript = run(
                server, listener, tls=TlsMode.STARTTLS, ca_file=ca_file
            )
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert server.commands[:4] == ["CAPA", "STLS", "CAPA", "USER joe"]
        assert any(t.startswith("TLS established") for _, t in transcript.lines)

    def test_it_stops_before_credentials_without_stls(
        self, listener: FakeSmtpServer, ca_file: str
    ) -> None:
        with FakePop3Server([message(1)]) as server:
            report, _, _ = run(server, listener, tls=TlsMode.STARTTLS, ca_file=ca_file)
        assert report.exit_code is ExitCode.SOCKET
        assert report.error == (
            "The server does not offer STARTTLS, which this mailbox requires; "
            "nothing was sent."
        )
        assert server.commands == ["CAPA"]

    def test_it_stops_when_stls_is_refused(
        self, listener: FakeSmtpServer, server_tls: ssl.SSLContext, ca_file: str
    ) -> None:
        with FakePop3Server(
            [message(1)], starttls=server_tls, overrides={"STLS": b"-ERR not now\r\n"}
        ) as server:
            report, _, _ = run(server, listener, tls=TlsMode.STARTTLS, ca_file=ca_file)
        assert report.exit_code is ExitCode.SOCKET
        assert not any(c.startswith(("USER", "PASS")) for c in server.commands)

    def test_it_speaks_pop3s(
        self, listener: FakeSmtpServer, server_tls: ssl.SSLContext, ca_file: str
    ) -> None:
        with FakePop3Server([message(1)], tls=server_tls) as server:
            report, _, _ = run(server, listener, tls=TlsMode.IMPLICIT, ca_file=ca_file)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert b"with POP3S" in listener.received[0].data

    def test_a_certificate_from_another_ca_is_refused(
        self, listener: FakeSmtpServer, server_tls: ssl.SSLContext, other_ca_file: str
    ) -> None:
        with FakePop3Server([message(1)], tls=server_tls) as server:
            report, _, _ = run(
                server, listener, tls=TlsMode.IMPLICIT, ca_file=other_ca_file
            )
        assert report.exit_code is ExitCode.SOCKET
        assert report.error.startswith("The server's certificate could not be verified")
        assert server.commands == []

    def test_a_certificate_for_another_name_is_refused(
        self, listener: FakeSmtpServer, server_tls: ssl.SSLContext, ca_file: str
    ) -> None:
        from dataclasses import replace

        from retrieval.engine.memory import ListTranscript, MemoryLedger

        with FakePop3Server([message(1)], tls=server_tls) as server:
            spec = make_spec(server, listener, tls=TlsMode.IMPLICIT, ca_file=ca_file)
            spec = replace(spec, server=replace(spec.server, host="mail.example.org"))
            report = poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())
        assert report.exit_code is ExitCode.SOCKET
        assert "mail.example.org" in report.error
        assert server.commands == []
