"""POP3 polls against the scripted fake server: the happy path and its faults."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.ports import MessageKey
from retrieval.engine.report import ExitCode, MessageStatus
from retrieval.engine.run import poll
from retrieval.engine.spec import TlsMode
from tests.support.fake_servers import FakePop3Server, FakeSmtpServer, refused_port

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
        ledger.mark_delivered(MessageKey("INBOX", None, "uid-1"))
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
        with FakePop3Server([message(1)], stall_on="TOP") as server:
            report, _, _ = run(server, listener, timeout=0.5)
        # The client's own deadline fired: without it, the wait would have
        # ended with the fake server giving up ("closed the connection").
        assert report.exit_code is ExitCode.SOCKET
        assert "did not answer within 0.5 seconds" in report.error
        assert len(server.mailbox) == 1

    def test_a_connection_dropped_mid_poll_deletes_nothing(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server(
            [message(1), message(2)], capabilities=["USER", "UIDL"], drop_on="RETR"
        ) as server:
            report, ledger, _ = run(server, listener)
        assert report.exit_code is ExitCode.SOCKET
        assert len(server.mailbox) == 2 and ledger.marks == []

    def test_an_endless_body_hits_the_message_cap(
        self, listener: FakeSmtpServer
    ) -> None:
        overrides = {"TOP": b"+OK\r\n" + b"line\r\n" * 2000}  # and no final dot
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


def client_runs(transcript: ListTranscript) -> list[list[str]]:
    """Client lines grouped by the server replies between them: a run of more
    than one command was sent without waiting (pipelined)."""
    runs: list[list[str]] = [[]]
    verbs = ("CAPA", "USER", "PASS", "LIST", "UIDL", "TOP", "RETR", "DELE", "QUIT")
    for direction, text in transcript.lines:
        if direction == "C" and text.startswith(verbs):
            runs[-1].append(text)
        elif direction == "S" and runs[-1]:
            runs.append([])
    return [run for run in runs if run]


PIPELINED = ["USER", "UIDL", "TOP", "PIPELINING"]


class Pop3PipeliningTests:
    def test_it_sends_a_window_of_fetches_without_waiting(
        self, listener: FakeSmtpServer
    ) -> None:
        bodies = [message(i) for i in range(5)]
        with FakePop3Server(bodies, capabilities=PIPELINED) as server:
            report, _, transcript = run(server, listener)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert [without_trace(r.data) for r in listener.received] == bodies
        assert server.mailbox == []
        runs = client_runs(transcript)
        assert ["LIST", "UIDL"] in runs
        assert [f"TOP {n} 99999999" for n in range(1, 6)] in runs
        # The DELEs ride together with QUIT's flush, in one write.
        assert [f"DELE {n}" for n in range(1, 6)] in runs

    def test_without_pipelining_every_command_waits(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server([message(1), message(2)]) as server:
            _, _, transcript = run(server, listener)
        assert all(len(group) == 1 for group in client_runs(transcript))

    def test_one_failed_fetch_in_a_window_spares_the_others(
        self, listener: FakeSmtpServer
    ) -> None:
        bodies = [message(i) for i in range(4)]
        with FakePop3Server(bodies, capabilities=PIPELINED, retr_errors=[2]) as server:
            report, _, _ = run(server, listener)
        assert [m.status for m in report.messages] == [
            MessageStatus.DELIVERED,
            MessageStatus.FAILED,
            MessageStatus.DELIVERED,
            MessageStatus.DELIVERED,
        ]
        assert [uid for uid, _ in server.mailbox] == ["uid-2"]

    def test_refused_deletes_are_reported_and_delivery_is_remembered(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server(
            [message(1), message(2)],
            capabilities=PIPELINED,
            overrides={"DELE": b"-ERR not today\r\n"},
        ) as server:
            report, ledger, _ = run(server, listener)
            assert report.exit_code is ExitCode.SUCCESS
            assert len(server.mailbox) == 2
            assert sum("refused to delete" in note for note in report.notes) == 2
            server.overrides.clear()
            again, _, _ = run(server, listener, ledger=ledger)
        assert server.mailbox == [] and len(listener.received) == 2
        assert [m.listener_reply for m in again.messages] == [
            "delivered by an earlier poll"
        ] * 2

    def test_a_server_closing_mid_message_deletes_nothing(
        self, listener: FakeSmtpServer
    ) -> None:
        partial = {"TOP": b"+OK\r\nSubject: half\r\n\r\nthe first ha"}
        with FakePop3Server(
            [message(1), message(2)], capabilities=PIPELINED, hangup_after=partial
        ) as server:
            report, ledger, _ = run(server, listener)
        assert report.exit_code is ExitCode.SOCKET
        assert "closed the connection" in report.error
        assert len(server.mailbox) == 2 and listener.received == []
        assert ledger.marks == []


class Pop3ExpungeTests:
    def test_expunge_n_quits_and_logs_in_again_every_n_deletions(
        self, listener: FakeSmtpServer
    ) -> None:
        bodies = [message(i) for i in range(5)]
        with FakePop3Server(bodies) as server:
            report, _, _ = run(server, listener, expunge=2)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert server.mailbox == [] and len(listener.received) == 5
        assert (server.logins, server.quit_count) == (3, 3)
        assert all(m.deleted for m in report.messages)

    def test_expunge_n_with_pipelining_renumbers_by_uid(
        self, listener: FakeSmtpServer
    ) -> None:
        bodies = [message(i) for i in range(5)]
        with FakePop3Server(bodies, capabilities=PIPELINED) as server:
            report, _, transcript = run(server, listener, expunge=2)
        assert server.mailbox == [] and report.deleted == 5
        assert [without_trace(r.data) for r in listener.received] == bodies
        assert server.quit_count == 3
        # After each reconnect the remaining messages are numbered from 1 again.
        # Each message is read before the one ahead of it goes to the listener
        # (its envelope rides with that one's final dot), so messages 3 and 5
        # are read on the connection before their own: numbers 3, and 3 again.
        sent = [t.split() for d, t in transcript.lines if d == "C"]
        fetched = [words[1] for words in sent if words[0] == "TOP"]
        assert fetched == ["1", "2", "3", "2", "3"]
        # Deleted by UID: the message read as 3 is DELE 1 after the reconnect.
        deleted = [words[1] for words in sent if words[0] == "DELE"]
        assert deleted == ["1", "2", "1", "2", "1"]

    def test_without_uidl_expunge_waits_for_the_end(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server([message(1), message(2)], capabilities=["USER"]) as server:
            server.overrides["UIDL"] = b"-ERR no UIDL here\r\n"
            report, _, _ = run(server, listener, expunge=1)
        assert server.mailbox == [] and server.quit_count == 1
        assert any("'expunge' cannot split" in note for note in report.notes)


class Pop3TopAndQuirksTests:
    def test_top_reads_without_marking_and_fetchall_uses_retr(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server([message(1)]) as server:
            run(server, listener, keep=True)
            run(server, listener, keep=True, fetchall=True)
        fetches = [c.split()[0] for c in server.commands if c[:4] in ("TOP ", "RETR")]
        assert fetches == ["TOP", "RETR"]

    def test_a_maillennium_server_gets_retr(self, listener: FakeSmtpServer) -> None:
        greeting = b"+OK Maillennium POP3/PROXY server #1\r\n"
        with FakePop3Server([message(1)], greeting=greeting) as server:
            report, _, _ = run(server, listener)
        assert report.delivered == 1
        assert "RETR 1" in server.commands
        assert not any(c.startswith("TOP") for c in server.commands)

    def test_a_truncating_top_is_caught_and_retr_used_from_then_on(
        self, listener: FakeSmtpServer
    ) -> None:
        bodies = [message(1), message(2), message(3)]
        with FakePop3Server(
            bodies, capabilities=PIPELINED, quirks={"top-truncates"}
        ) as server:
            report, _, _ = run(server, listener)
        assert [without_trace(r.data) for r in listener.received] == bodies
        assert server.mailbox == []
        assert [c.split()[0] for c in server.commands if c[:4] in ("TOP ", "RETR")] == [
            *["TOP"] * 3,
            "RETR",  # message 1 again, in full
            "RETR",  # 2 and 3 were read ahead by TOP: fetched again with RETR
            "RETR",
        ]
        assert any("cut message 1 short" in note for note in report.notes)

    def test_a_doubled_ok_before_the_message_is_dropped(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server([message(1)], quirks={"top-double-ok"}) as server:
            report, _, _ = run(server, listener)
        assert without_trace(listener.received[0].data) == message(1)
        assert any("second +OK" in note for note in report.notes)

    def test_list_sizes_that_lie_are_tolerated_and_said(
        self, listener: FakeSmtpServer
    ) -> None:
        bodies = [message(1), message(2)]
        for quirk in ("list-lies", "list-short"):
            with FakePop3Server(bodies, quirks={quirk}) as server:
                report, _, transcript = run(server, listener)
            assert report.delivered == 2 and server.mailbox == [], quirk
            text = "\n".join(t for _, t in transcript.lines)
            assert "server declared" in text, quirk
        # Too large: TOP looked truncated, RETR said the same: LIST is wrong,
        # and once known the sizes are not checked again.
        assert sum(c.startswith("RETR") for c in server.commands) == 0
        listener.received.clear()
        with FakePop3Server(bodies, quirks={"list-lies"}) as server:
            report, _, _ = run(server, listener)
        assert [c.split()[0] for c in server.commands if c[:4] in ("TOP ", "RETR")] == [
            "TOP",
            "RETR",
            "TOP",
        ]
        assert any("LIST sizes do not match" in note for note in report.notes)


class Pop3OptionsTests:
    def test_fetchlimit_ends_with_maxfetch_and_leaves_the_rest(
        self, listener: FakeSmtpServer
    ) -> None:
        bodies = [message(i) for i in range(5)]
        with FakePop3Server(bodies) as server:
            report, ledger, _ = run(server, listener, fetchlimit=2)
            assert report.exit_code is ExitCode.MAXFETCH
            assert report.delivered == 2 and len(server.mailbox) == 3
            assert any("3 message(s) in INBOX are left" in n for n in report.notes)
            again, _, _ = run(server, listener, fetchlimit=3, ledger=ledger)
        assert again.exit_code is ExitCode.SUCCESS and server.mailbox == []

    def test_flush_with_keep_deletes_what_was_delivered_before(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server([message(1)]) as server:
            _, ledger, _ = run(server, listener, keep=True)
            server.mailbox.append(("uid-new", message(2)))
            report, _, _ = run(server, listener, keep=True, flush=True, ledger=ledger)
        assert [uid for uid, _ in server.mailbox] == ["uid-new"]
        assert [(m.uid, m.status, m.deleted) for m in report.messages] == [
            ("uid-1", MessageStatus.SKIPPED, True),
            ("uid-new", MessageStatus.DELIVERED, False),
        ]

    def test_limitflush_deletes_oversized_messages_unread(
        self, listener: FakeSmtpServer
    ) -> None:
        big = message(2, b"x" * 5000)
        with FakePop3Server([message(1), big]) as server:
            report, _, _ = run(server, listener, limit=1000, limitflush=True, keep=True)
        assert [uid for uid, _ in server.mailbox] == ["uid-1"]
        assert "TOP 2 99999999" not in server.commands
        assert report.messages[1].deleted
        assert "deleted (limitflush)" in report.messages[1].listener_reply

    def test_showdots_writes_a_progress_line_per_message(
        self, listener: FakeSmtpServer
    ) -> None:
        big = message(2, b"y" * 3000 + b"\r\n")
        with FakePop3Server([message(1), big]) as server:
            _, _, transcript = run(server, listener, showdots=True)
        dots = [t for _, t in transcript.lines if t.startswith("reading message")]
        assert dots == [
            f"reading message 1 ({len(message(1))} octets) .",
            f"reading message 2 ({len(big)} octets) ...",
        ]

    def test_properties_are_passed_through(self, listener: FakeSmtpServer) -> None:
        with FakePop3Server() as server:
            report, _, _ = run(server, listener, properties="team=blue")
        assert report.properties == "team=blue"

    def test_pop3_has_no_folders(self, listener: FakeSmtpServer) -> None:
        with FakePop3Server([message(1)]) as server:
            report, _, _ = run(server, listener, folders=("Archive",))
        assert report.exit_code is ExitCode.SYNTAX
        # Ended in step: RSET and QUIT, and nothing fetched.
        assert server.commands[-2:] == ["RSET", "QUIT"]
        assert len(server.mailbox) == 1

    def test_fastuidl_finds_the_first_new_message_by_binary_search(
        self, listener: FakeSmtpServer
    ) -> None:
        bodies = [message(i) for i in range(20)]
        ledger = MemoryLedger()
        for n in range(1, 16):
            ledger.mark_delivered(MessageKey("INBOX", None, f"uid-{n}"))
        with FakePop3Server(bodies) as server:
            report, _, _ = run(
                server, listener, keep=True, fastuidl=4, poll_number=1, ledger=ledger
            )
        assert [m.uid for m in report.messages] == [f"uid-{n}" for n in range(16, 21)]
        assert "UIDL" not in server.commands and "LIST" not in server.commands
        probes = [c for c in server.commands if c.startswith("UIDL ")]
        assert len(probes) <= 5 + 5  # log2(20) probes, then one per new message
        assert len(ledger.delivered[("INBOX", None)]) == 20  # nothing pruned

    def test_fastuidl_lists_everything_every_nth_poll(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server([message(i) for i in range(10)]) as server:
            run(server, listener, keep=True, fastuidl=4, poll_number=4)
        assert "UIDL" in server.commands


class Pop3HostileUidlTests:
    def test_long_and_unprintable_uids_are_left_alone(
        self, listener: FakeSmtpServer
    ) -> None:
        uids = ["a" * 71, "b" * 129, "ok"]
        with FakePop3Server([message(1), message(2), message(3)], uids=uids) as server:
            report, _, _ = run(server, listener)
        assert [m.uid for m in report.messages] == ["a" * 71, "ok"]
        assert [uid for uid, _ in server.mailbox] == ["b" * 129]
        assert any("longer than the 70 characters" in n for n in report.notes)
        assert any("unusable UID" in n for n in report.notes)

    def test_a_uid_with_spaces_ends_the_poll_before_anything_is_fetched(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server([message(1)], uids=["two words"]) as server:
            report, ledger, _ = run(server, listener)
        assert report.exit_code is ExitCode.PROTOCOL
        assert "malformed listing line" in report.error
        assert len(server.mailbox) == 1 and ledger.marks == []
        assert not any(c.startswith(("TOP", "RETR", "DELE")) for c in server.commands)

    def test_a_uid_with_a_nul_byte_is_left_alone(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server([message(1), message(2)], uids=["nul\0", "b"]) as server:
            report, _, _ = run(server, listener)
        assert [m.uid for m in report.messages] == ["b"]
        assert [uid for uid, _ in server.mailbox] == ["nul\0"]


class Pop3AuthTests:
    SASL = ["USER", "UIDL", "SASL PLAIN LOGIN CRAM-MD5 XOAUTH2 OAUTHBEARER"]

    def test_any_takes_cram_md5_and_never_sends_the_password(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server([message(1)], capabilities=self.SASL) as server:
            report, _, transcript = run(server, listener)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert "AUTH CRAM-MD5" in server.commands
        assert not any(c.startswith(("PASS", "AUTH PLAIN")) for c in server.commands)
        assert "secret" not in "\n".join(t for _, t in transcript.lines)

    def test_any_moves_on_after_a_refused_cram_md5(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server(
            [message(1)], capabilities=self.SASL, refused_mechanisms=["CRAM-MD5"]
        ) as server:
            report, _, _ = run(server, listener)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert [c.split()[1] for c in server.commands if c.startswith("AUTH")] == [
            "CRAM-MD5",
            "PLAIN",
        ]

    def test_each_named_mechanism(self, listener: FakeSmtpServer) -> None:
        for auth in ("plain", "login", "cram-md5", "xoauth2", "oauthbearer"):
            with FakePop3Server([message(1)], capabilities=self.SASL) as server:
                report, _, _ = run(server, listener, auth=auth)
            assert report.exit_code is ExitCode.SUCCESS, (auth, report.error)
            assert any(c.startswith(f"AUTH {auth.upper()}") for c in server.commands)

    def test_a_wrong_password_with_a_named_mechanism_is_authfail(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server([message(1)], capabilities=self.SASL) as server:
            report, _, _ = run(server, listener, auth="cram-md5", password="nope")
        assert report.exit_code is ExitCode.AUTHFAIL
        assert sum(c.startswith("AUTH") for c in server.commands) == 1

    def test_hostile_challenges_end_the_poll_cleanly(
        self, listener: FakeSmtpServer
    ) -> None:
        for hostile in (b"+ %%%\r\n", b"+ " + b"QUFB" * 600 + b"\r\n"):
            with FakePop3Server(
                [message(1)], capabilities=self.SASL, hostile_sasl=hostile
            ) as server:
                report, _, _ = run(server, listener, auth="cram-md5")
            assert report.exit_code is ExitCode.PROTOCOL, report.error
            assert len(server.mailbox) == 1
            assert not any(
                c.startswith(("LIST", "TOP", "DELE")) for c in server.commands
            )

    def test_apop(self, listener: FakeSmtpServer) -> None:
        with FakePop3Server([message(1)], apop=True) as server:
            report, _, transcript = run(server, listener, auth="apop")
            wrong, _, _ = run(server, listener, auth="apop", password="nope")
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert ("C", "APOP joe ********") in transcript.lines
        assert wrong.exit_code is ExitCode.AUTHFAIL

    def test_apop_without_a_valid_timestamp_sends_nothing(
        self, listener: FakeSmtpServer
    ) -> None:
        for greeting in (b"+OK no stamp\r\n", b"+OK <no at sign>\r\n"):
            with FakePop3Server([message(1)], greeting=greeting) as server:
                report, _, _ = run(server, listener, auth="apop")
            assert report.exit_code is ExitCode.AUTHFAIL
            assert server.commands == ["CAPA"]

    def test_a_login_delay_is_lockbusy(self, listener: FakeSmtpServer) -> None:
        refused = b"-ERR [LOGIN-DELAY] wait 15 minutes between logins\r\n"
        with FakePop3Server([message(1)], overrides={"PASS": refused}) as server:
            report, _, _ = run(server, listener)
        assert report.exit_code is ExitCode.LOCKBUSY
