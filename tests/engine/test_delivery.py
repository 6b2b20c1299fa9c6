"""What the listener answers decides keep or delete: SMTP, LMTP and MDA."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.ports import MessageKey
from retrieval.engine.report import ExitCode, MessageStatus
from retrieval.engine.run import poll
from retrieval.engine.spec import DeliveryKind, DeliverySpec, MessageOptions
from tests.support.fake_servers import FakePop3Server, FakeSmtpServer, refused_port

from .conftest import make_spec, message, without_trace

if TYPE_CHECKING:
    from pathlib import Path


def run(server: FakePop3Server, delivery: DeliverySpec, **options: object):
    ledger = MemoryLedger()
    spec = make_spec(server, delivery=delivery, **options)  # type: ignore[arg-type]
    report = poll(spec, ledger=ledger, transcript=ListTranscript())
    return report, ledger


def smtp(listener: FakeSmtpServer, **options: object) -> DeliverySpec:
    values: dict[str, object] = {
        "hosts": (f"127.0.0.1/{listener.port}",),
        "recipients": ("joe@example.com",),
        "timeout": 2.0,
    }
    values.update(options)
    return DeliverySpec(**values)  # type: ignore[arg-type]


class SmtpRepliesTests:
    @pytest.mark.parametrize(
        ("replies", "status"),
        [
            ({"END": "451 4.3.0 try again later"}, MessageStatus.DEFERRED),
            ({"MAIL": "421 4.3.2 shutting down"}, MessageStatus.DEFERRED),
            ({"RCPT": "450 4.2.1 mailbox busy"}, MessageStatus.DEFERRED),
            ({"DATA": "452 4.3.1 disk full"}, MessageStatus.DEFERRED),
            ({"END": "550 5.7.1 rejected"}, MessageStatus.REFUSED),
            ({"RCPT": "550 5.1.1 no such user"}, MessageStatus.REFUSED),
        ],
    )
    def test_it_keeps_what_the_listener_did_not_accept(
        self, replies: dict[str, str], status: MessageStatus
    ) -> None:
        with (
            FakeSmtpServer(replies=replies) as listener,
            FakePop3Server([message(1), message(2)]) as server,
        ):
            report, ledger = run(server, smtp(listener))
        assert [m.status for m in report.messages] == [status, status]
        assert len(server.mailbox) == 2 and ledger.marks == []
        assert report.exit_code is ExitCode.SMTP
        reply = next(iter(replies.values()))
        assert reply in report.error and report.messages[0].listener_reply == reply

    def test_a_temporary_rcpt_failure_sends_no_data(self) -> None:
        with (
            FakeSmtpServer(replies={"RCPT:b@example.com": "451 later"}) as listener,
            FakePop3Server([message(1)]) as server,
        ):
            report, _ = run(
                server, smtp(listener, recipients=("a@example.com", "b@example.com"))
            )
        assert report.messages[0].status is MessageStatus.DEFERRED
        assert listener.received == []
        # PIPELINING: DATA went out with the envelope; the listener's 354 (it had
        # one recipient) was answered by hanging up, not by an empty message.
        assert listener.commands[-1] == "DATA"
        assert listener.connections == 1

    def test_without_pipelining_a_temporary_rcpt_failure_sends_no_data(self) -> None:
        with (
            FakeSmtpServer(
                replies={"RCPT:b@example.com": "451 later"},
                overrides={"EHLO": b"250 fake.local\r\n"},
            ) as listener,
            FakePop3Server([message(1)]) as server,
        ):
            report, _ = run(
                server, smtp(listener, recipients=("a@example.com", "b@example.com"))
            )
        assert report.messages[0].status is MessageStatus.DEFERRED
        assert "DATA" not in listener.commands

    def test_hard_bounces_delete_only_when_softbounce_is_off(self) -> None:
        with (
            FakeSmtpServer(replies={"END": "550 5.7.1 no"}) as listener,
            FakePop3Server([message(1)]) as server,
        ):
            report, ledger = run(server, smtp(listener, softbounce=False))
        assert report.messages[0].status is MessageStatus.REFUSED
        assert report.messages[0].deleted and server.mailbox == []
        assert ledger.marks == [("INBOX", None, "uid-1")]

    def test_antispam_codes_delete_the_message(self) -> None:
        with (
            FakeSmtpServer(replies={"END": "554 5.7.1 spam"}) as listener,
            FakePop3Server([message(1)]) as server,
        ):
            report, _ = run(server, smtp(listener, antispam=(554,)))
        assert report.messages[0].deleted and server.mailbox == []
        assert any("refused as spam" in note for note in report.notes)

    @pytest.mark.parametrize(
        ("fault", "reason"),
        [
            ("drop_on", "closed the connection"),
            # The client's own 0.5 s deadline ended the wait, not the fake
            # listener giving up on its silent client (after CLIENT_WAIT, a
            # hang-up that would read "closed the connection").
            ("stall_on", "did not answer within 0.5 seconds"),
        ],
    )
    def test_a_listener_that_vanishes_before_the_final_reply_defers(
        self, fault: str, reason: str
    ) -> None:
        with (
            FakeSmtpServer(**{fault: "END"}) as listener,  # type: ignore[arg-type]
            FakePop3Server([message(1)]) as server,
        ):
            report, _ = run(server, smtp(listener, timeout=0.5))
        assert report.messages[0].status is MessageStatus.DEFERRED
        assert reason in report.messages[0].listener_reply
        assert report.exit_code is ExitCode.SMTP and len(server.mailbox) == 1

    @pytest.mark.parametrize(
        "reply",
        [b"999 odd\r\n", b"hello\r\n", b"250-more\r\n251 mixed\r\n", b"334 \r\n"],
    )
    def test_a_malformed_reply_defers(self, reply: bytes) -> None:
        overrides = {"END": reply} if not reply.startswith(b"334") else {"MAIL": reply}
        with (
            FakeSmtpServer(overrides=overrides) as listener,
            FakePop3Server([message(1)]) as server,
        ):
            report, _ = run(server, smtp(listener))
        assert report.messages[0].status is MessageStatus.DEFERRED
        assert len(server.mailbox) == 1

    def test_a_listener_refusing_connections_ends_the_poll(self) -> None:
        with FakePop3Server([message(1), message(2)]) as server:
            delivery = DeliverySpec(
                hosts=(f"127.0.0.1/{refused_port()}",), recipients=("j@x.org",)
            )
            report, ledger = run(server, delivery)
        assert report.exit_code is ExitCode.SMTP
        assert report.error.startswith("Local delivery is unavailable")
        assert len(server.mailbox) == 2 and ledger.marks == []
        assert "RETR 2" not in server.commands  # stopped at the first message

    def test_it_tries_the_next_listener_in_the_list(self) -> None:
        with FakeSmtpServer() as listener, FakePop3Server([message(1)]) as server:
            delivery = smtp(
                listener,
                hosts=(f"127.0.0.1/{refused_port()}", f"127.0.0.1/{listener.port}"),
            )
            report, _ = run(server, delivery)
        assert report.exit_code is ExitCode.SUCCESS and len(listener.received) == 1

    def test_it_reconnects_after_batchlimit_messages(self) -> None:
        with (
            FakeSmtpServer() as listener,
            FakePop3Server([message(i) for i in range(5)]) as server,
        ):
            report, _ = run(server, smtp(listener), batchlimit=2)
        assert report.delivered == 5 and listener.connections == 3

    def test_a_connection_gone_stale_between_messages_is_replaced(self) -> None:
        with (
            FakeSmtpServer(drop_on="RSET") as listener,
            FakePop3Server([message(i) for i in range(3)]) as server,
        ):
            report, _ = run(server, smtp(listener))
        assert report.delivered == 3 and server.mailbox == []
        assert listener.connections == 3

    def test_it_qualifies_a_bare_user_name_like_fetchmail(self) -> None:
        # fetchmail appends the listener's host; an IP becomes an address literal.
        with FakeSmtpServer() as listener, FakePop3Server([message(1)]) as server:
            report, _ = run(server, smtp(listener, recipients=()))
            assert listener.received[0].recipients == ["joe@[127.0.0.1]"]
            with FakePop3Server([message(2)]) as again:
                run(again, smtp(listener, recipients=(), smtpaddress="example.org"))
        assert report.exit_code is ExitCode.SUCCESS
        assert listener.received[1].recipients == ["joe@example.org"]

    def test_an_invalid_recipient_is_a_configuration_error(self) -> None:
        with FakeSmtpServer() as listener, FakePop3Server([message(1)]) as server:
            report, _ = run(server, smtp(listener, recipients=("bad address",)))
        assert report.exit_code is ExitCode.SYNTAX and server.connections == 0


class LmtpTests:
    def lmtp(self, listener: FakeSmtpServer, *recipients: str) -> DeliverySpec:
        return DeliverySpec(
            kind=DeliveryKind.LMTP,
            hosts=(f"127.0.0.1/{listener.port}",),
            recipients=recipients or ("joe@example.com",),
            timeout=2.0,
        )

    def test_it_reads_one_reply_per_recipient(self) -> None:
        with (
            FakeSmtpServer(lmtp=True) as listener,
            FakePop3Server([message(1)]) as server,
        ):
            report, _ = run(server, self.lmtp(listener, "a@x.org", "b@x.org"))
        assert report.exit_code is ExitCode.SUCCESS
        assert listener.received[0].recipients == ["a@x.org", "b@x.org"]
        assert "LHLO" in listener.commands[0]

    def test_one_temporary_recipient_keeps_the_message(self) -> None:
        replies = {"END:b@x.org": "450 4.2.0 later", "END:c@x.org": "550 5.1.1 no"}
        with (
            FakeSmtpServer(lmtp=True, replies=replies) as listener,
            FakePop3Server([message(1)]) as server,
        ):
            report, _ = run(
                server, self.lmtp(listener, "a@x.org", "b@x.org", "c@x.org")
            )
        assert report.messages[0].status is MessageStatus.DEFERRED
        assert report.messages[0].listener_reply == "450 4.2.0 later"
        assert len(server.mailbox) == 1

    def test_too_few_replies_defer(self) -> None:
        overrides = {"END": b"250 2.0.0 a ok\r\n"}  # then silence for the second
        with (
            FakeSmtpServer(lmtp=True, overrides=overrides) as listener,
            FakePop3Server([message(1)]) as server,
        ):
            delivery = self.lmtp(listener, "a@x.org", "b@x.org")
            report, _ = run(
                server, DeliverySpec(**{**delivery.__dict__, "timeout": 0.5})
            )
        assert report.messages[0].status is MessageStatus.DEFERRED
        assert len(server.mailbox) == 1

    def test_it_delivers_over_a_unix_socket(self, tmp_path: Path) -> None:
        path = str(tmp_path / "lmtp.sock")
        with (
            FakeSmtpServer(lmtp=True, unix_path=path) as listener,
            FakePop3Server([message(1)]) as server,
        ):
            delivery = DeliverySpec(
                kind=DeliveryKind.LMTP, hosts=(path,), recipients=("joe",)
            )
            report, _ = run(server, delivery)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert listener.received[0].recipients == ["joe"]


MDA_SCRIPT = """
import sys, pathlib
target, sender, mode = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "half":
    sys.stdin.buffer.read(10); sys.exit(0)
data = sys.stdin.buffer.read()
if mode == "sleep":
    import time; time.sleep(30)
pathlib.Path(target).write_bytes(sender.encode() + b"|" + data)
if mode == "noisy":
    sys.stderr.write("note from mda\\n"); sys.exit(0)
sys.exit(int(mode))
"""


class _MdaRunner:
    def deliver(
        self, tmp_path: Path, mode: str, body: bytes = b"", **options: object
    ) -> tuple[object, Path, FakePop3Server]:
        script = tmp_path / "mda.py"
        script.write_text(MDA_SCRIPT)
        out = tmp_path / "out"
        values: dict[str, object] = {
            "kind": DeliveryKind.MDA,
            "mda": (sys.executable, str(script), f"{out}-%T", "%F", mode),
            "recipients": ("joe",),
            "timeout": 2.0,
        }
        spec_options = {k: options.pop(k) for k in ("message",) if k in options}
        raw = options.pop("raw", None) or message(1, body)
        values.update(options)
        delivery = DeliverySpec(**values)  # type: ignore[arg-type]
        with FakePop3Server([raw]) as server:  # type: ignore[list-item]
            report, _ = run(server, delivery, **spec_options)
        return report, tmp_path / "out-joe", server


class MdaTests(_MdaRunner):
    def test_exit_zero_delivers_with_unix_line_endings(self, tmp_path: Path) -> None:
        report, out, server = self.deliver(tmp_path, "0", b".dot\r\n8bit \xe9\r\n")
        assert report.exit_code is ExitCode.SUCCESS, report.error  # type: ignore[attr-defined]
        data = out.read_bytes()
        assert data.startswith(b"sender1@example.org|Received: from ")
        assert data.endswith(b"Subject: test 1\n\n.dot\n8bit \xe9\n")
        assert server.mailbox == []

    @pytest.mark.parametrize(
        ("mode", "status", "reason"),
        [
            ("75", MessageStatus.DEFERRED, "exited with status 75"),
            ("1", MessageStatus.DEFERRED, "exited with status 1"),
            ("67", MessageStatus.REFUSED, "refused the message (status 67)"),
            # Killed at the 2 s timeout: had it run its 30 s, it would have
            # exited 1 (the mode is not a number) and said so instead.
            ("sleep", MessageStatus.DEFERRED, "ran longer than 2 s"),
            ("half", MessageStatus.DEFERRED, "it stopped reading the message"),
        ],
    )
    def test_anything_but_exit_zero_keeps_the_message(
        self, tmp_path: Path, mode: str, status: MessageStatus, reason: str
    ) -> None:
        body = b"x" * 200_000 + b"\r\n" if mode == "half" else b""
        report, _, server = self.deliver(tmp_path, mode, body)
        result = report.messages[0]  # type: ignore[attr-defined]
        assert result.status is status
        assert reason in result.listener_reply
        assert len(server.mailbox) == 1


def test_delivered_bytes_match_through_lmtp_and_smtp_alike() -> None:
    body = message(1, b"..\r\n.\r\nend\r\n")
    for lmtp in (False, True):
        with FakeSmtpServer(lmtp=lmtp) as listener, FakePop3Server([body]) as server:
            delivery = DeliverySpec(
                kind=DeliveryKind.LMTP if lmtp else DeliveryKind.SMTP,
                hosts=(f"127.0.0.1/{listener.port}",),
                recipients=("joe@example.com",),
            )
            run(server, delivery)
        assert without_trace(listener.received[0].data) == body


class MdaPolicyTests(_MdaRunner):
    def test_stderr_after_exit_zero_keeps_the_message_by_default(
        self, tmp_path: Path
    ) -> None:
        report, _out, server = self.deliver(tmp_path, "noisy")
        result = report.messages[0]  # type: ignore[attr-defined]
        assert result.status is MessageStatus.DEFERRED and len(server.mailbox) == 1
        assert "note from mda" in result.listener_reply

    def test_stderr_can_be_ignored_as_fetchmail_does(self, tmp_path: Path) -> None:
        report, _, server = self.deliver(tmp_path, "noisy", mda_ignore_stderr=True)
        assert report.messages[0].status is MessageStatus.DELIVERED  # type: ignore[attr-defined]
        assert server.mailbox == []

    @pytest.mark.parametrize(
        "sender",
        [
            "a'b@example.org",
            "x|y$HOME@example.org",
            "a`b`@example.org",
            "-x@example.org",
        ],
    )
    def test_a_hostile_sender_never_reaches_the_program(
        self, tmp_path: Path, sender: str
    ) -> None:
        raw = f"Return-Path: <{sender}>\r\nSubject: x\r\n\r\nbody\r\n".encode()
        report, out, server = self.deliver(tmp_path, "0", raw=raw)
        result = report.messages[0]  # type: ignore[attr-defined]
        assert not out.exists() and len(server.mailbox) == 1
        assert result.status is MessageStatus.REFUSED
        assert "not passed to a delivery program" in result.listener_reply

    def test_forcecr_hands_over_crlf_and_no_stripcr_the_bytes_as_they_are(
        self, tmp_path: Path
    ) -> None:
        raw = b"Subject: x\r\n\r\nmixed\nends\r\n"
        forced = MessageOptions(forcecr=True)
        self.deliver(tmp_path, "0", raw=raw, message=forced)
        assert (
            (tmp_path / "out-joe").read_bytes().endswith(b"\r\n\r\nmixed\r\nends\r\n")
        )
        plain = MessageOptions(stripcr=False)
        self.deliver(tmp_path, "0", raw=raw, message=plain)
        assert (tmp_path / "out-joe").read_bytes().endswith(b"\r\n\r\nmixed\nends\r\n")


def lmtp_to(listener: FakeSmtpServer, *recipients: str) -> DeliverySpec:
    return DeliverySpec(
        kind=DeliveryKind.LMTP,
        hosts=(f"127.0.0.1/{listener.port}",),
        recipients=recipients,
        timeout=2.0,
    )


class ListenerListTests:
    def test_an_ipv6_listener_is_written_in_brackets(self) -> None:
        listener = FakeSmtpServer()
        listener.host = "::1"
        with listener, FakePop3Server([message(1)]) as server:
            delivery = smtp(
                listener,
                hosts=(f"127.0.0.1/{refused_port()}", f"[::1]/{listener.port}"),
                recipients=("joe",),
            )
            report, _ = run(server, delivery)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert listener.received[0].recipients == ["joe@[IPv6:::1]"]

    def test_a_socket_path_is_spoken_to_in_lmtp_even_when_smtp_is_chosen(
        self, tmp_path: Path
    ) -> None:
        path = str(tmp_path / "lmtp.sock")
        with (
            FakeSmtpServer(lmtp=True, unix_path=path) as listener,
            FakePop3Server([message(1)]) as server,
        ):
            delivery = DeliverySpec(hosts=(path,), recipients=("joe",), timeout=2.0)
            report, _ = run(server, delivery)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert listener.commands[0].startswith("LHLO ")
        assert listener.received[0].recipients == ["joe"]  # LMTP: bare names stay


class EsmtpTests:
    EHLO = b"250-fake.local\r\n250-8BITMIME\r\n250-SIZE 2000\r\n250 PIPELINING\r\n"

    def test_pipelining_sends_the_envelope_in_one_go_and_rset_between(self) -> None:
        transcript = ListTranscript()
        with (
            FakeSmtpServer(overrides={"EHLO": self.EHLO}) as listener,
            FakePop3Server([message(1), message(2)]) as server,
        ):
            spec = make_spec(
                server, delivery=smtp(listener, recipients=("a@x.org", "b@x.org"))
            )
            report = poll(spec, ledger=MemoryLedger(), transcript=transcript)
        assert report.delivered == 2 and listener.rsets == 1
        said = [text for direction, text in transcript.lines if direction != "*"]
        at = said.index("RSET")
        assert [t.split(":")[0].split(" ")[0] for t in said[at : at + 4]] == [
            "RSET",
            "MAIL",
            "RCPT",
            "RCPT",
        ]
        assert report.messages[1].listener_reply == "250 2.0.0 queued"

    def test_size_is_declared_and_a_message_over_the_limit_is_not_sent(
        self,
    ) -> None:
        big = message(2, b"x" * 3000 + b"\r\n")
        with (
            FakeSmtpServer(overrides={"EHLO": self.EHLO}) as listener,
            FakePop3Server([message(1), big]) as server,
        ):
            report, _ledger = run(server, smtp(listener))
        small, large = report.messages
        assert small.status is MessageStatus.DELIVERED
        assert any(" SIZE=" in c for c in listener.commands if c.startswith("MAIL"))
        assert large.status is MessageStatus.REFUSED and not large.deleted
        assert large.listener_reply.startswith("552 5.3.4")
        assert len(listener.received) == 1 and len(server.mailbox) == 1
        assert any("needs attention" in note for note in report.notes)

    @pytest.mark.parametrize(
        ("body", "offered", "declared"),
        [
            (b"caf\xe9\r\n", True, True),
            (b"plain\r\n", True, False),
            (b"caf\xe9\r\n", False, False),
        ],
    )
    def test_8bitmime_is_declared_for_8bit_content(
        self, body: bytes, offered: bool, declared: bool
    ) -> None:
        ehlo = self.EHLO if offered else b"250-fake.local\r\n250 PIPELINING\r\n"
        with (
            FakeSmtpServer(overrides={"EHLO": ehlo}) as listener,
            FakePop3Server([message(1, body)]) as server,
        ):
            run(server, smtp(listener))
        mail = next(c for c in listener.commands if c.startswith("MAIL"))
        assert ("BODY=8BITMIME" in mail) is declared

    def test_pass8bits_declares_8bitmime_for_any_message(self) -> None:
        with (
            FakeSmtpServer(overrides={"EHLO": self.EHLO}) as listener,
            FakePop3Server([message(1)]) as server,
        ):
            run(server, smtp(listener, pass8bits=True))
        assert "BODY=8BITMIME" in next(
            c for c in listener.commands if c.startswith("MAIL")
        )


class EnvelopeAndTraceTests:
    def test_the_sender_comes_from_return_path_then_the_headers(self) -> None:
        raws = [
            b"Return-Path: <list-bounces@example.net>\r\nFrom: a@example.net\r\n\r\nx\r\n",
            b"Return-Path: <>\r\nFrom: a@example.net\r\n\r\nx\r\n",
            b"Sender: owner@example.net\r\nFrom: a@example.net\r\n\r\nx\r\n",
            b"From: Bob <bob>\r\n\r\nx\r\n",
            b"Subject: nothing to go by\r\n\r\nx\r\n",
            b"Return-Path: <local>\r\n\r\nx\r\n",
        ]
        with FakeSmtpServer() as listener, FakePop3Server(raws) as server:
            run(server, smtp(listener))
        assert [r.mail_from for r in listener.received] == [
            "list-bounces@example.net",
            "",
            "owner@example.net",
            "bob@[127.0.0.1]",
            "joe@[127.0.0.1]",
            "local@[127.0.0.1]",
        ]

    def test_the_received_header_goes_before_the_first_received_field(self) -> None:
        raw = (
            b"Return-Path: <a@example.net>\r\nDelivered-To: joe@example.org\r\n"
            b"Received: from mx by pop; Tue, 1 Jan 2025 00:00:00 +0000\r\n"
            b"Subject: hi\r\n\r\nbody\r\n"
        )
        with FakeSmtpServer() as listener, FakePop3Server([raw]) as server:
            run(
                server,
                smtp(listener),
                message=MessageOptions(tracepolls=True),
                name="work",
            )
        lines = listener.received[0].data.split(b"\r\n")
        assert lines[:2] == [
            b"Return-Path: <a@example.net>",
            b"Delivered-To: joe@example.org",
        ]
        assert lines[2] == b"Received: from 127.0.0.1 [127.0.0.1]"
        assert lines[3].startswith(b"\tby ")
        assert lines[3].endswith(
            b" with POP3 (fetchweb-0.1.0 polling work account joe)"
        )
        assert lines[4].startswith(b"\tfor <joe@example.com> (single-drop); ")
        assert lines[5].startswith(b"Received: from mx by pop")

    def test_invisible_adds_no_header_and_greets_with_the_server_name(self) -> None:
        with FakeSmtpServer() as listener, FakePop3Server([message(1)]) as server:
            run(server, smtp(listener, invisible=True))
        assert listener.received[0].data == message(1)
        assert listener.commands[0] == "EHLO 127.0.0.1"

    def test_a_bad_header_line_is_refused_only_when_asked(self) -> None:
        raw = b"Subject: x\r\nthis line has no colon\r\n\r\nbody\r\n"
        strict = MessageOptions(badheader_accept=False)
        with FakeSmtpServer() as listener, FakePop3Server([raw]) as server:
            report, _ = run(server, smtp(listener), message=strict)
            assert report.messages[0].status is MessageStatus.REFUSED
            assert listener.received == [] and len(server.mailbox) == 1
            report, _ = run(server, smtp(listener))
        assert report.messages[0].status is MessageStatus.DELIVERED


class PartialDeliveryTests:
    def test_a_recipient_that_has_it_is_not_given_it_again(self) -> None:
        replies = {"END:b@x.org": "450 4.2.0 mailbox busy"}
        ledger = MemoryLedger()
        with (
            FakeSmtpServer(lmtp=True, replies=replies) as listener,
            FakePop3Server([message(1)]) as server,
        ):
            delivery = lmtp_to(listener, "a@x.org", "b@x.org")
            spec = make_spec(server, delivery=delivery)
            first = poll(spec, ledger=ledger, transcript=ListTranscript())
            assert first.messages[0].status is MessageStatus.DEFERRED
            assert len(server.mailbox) == 1
            key = MessageKey("INBOX", None, "uid-1")
            assert ledger.delivered_recipients(key) == {"a@x.org"}
            listener.replies.clear()
            second = poll(spec, ledger=ledger, transcript=ListTranscript())
        assert second.messages[0].status is MessageStatus.DELIVERED
        assert second.messages[0].recipients == ("b@x.org",)
        # (the fake lists RCPT-accepted recipients; LMTP accepted only a@ the
        # first time, and the retry offers the message to b@ alone)
        assert [r.recipients for r in listener.received][-1] == ["b@x.org"]
        assert server.mailbox == [] and ledger.delivered_uids("INBOX", None) == {
            "uid-1"
        }

    def test_a_ledger_without_recipient_records_retries_everyone(self) -> None:
        class PlainLedger:
            def __init__(self) -> None:
                self.inner = MemoryLedger()
                self.delivered_uids = self.inner.delivered_uids
                self.mark_delivered = self.inner.mark_delivered
                self.last_uidvalidity = self.inner.last_uidvalidity
                self.forget_missing = self.inner.forget_missing
                self.sync = self.inner.sync
                self.delivery_dates = self.inner.delivery_dates

        replies = {"END:b@x.org": "450 4.2.0 mailbox busy"}
        ledger = PlainLedger()
        with (
            FakeSmtpServer(lmtp=True, replies=replies) as listener,
            FakePop3Server([message(1)]) as server,
        ):
            spec = make_spec(server, delivery=lmtp_to(listener, "a@x.org", "b@x.org"))
            poll(spec, ledger=ledger, transcript=ListTranscript())
            listener.replies.clear()
            poll(spec, ledger=ledger, transcript=ListTranscript())
        assert [r.recipients for r in listener.received][-1] == ["a@x.org", "b@x.org"]


class BounceTests:
    def bounce_run(
        self, reply: str, **options: object
    ) -> tuple[object, FakeSmtpServer, FakePop3Server]:
        listener = FakeSmtpServer(replies={"END": reply})
        with listener, FakePop3Server([message(1)]) as server:
            values: dict[str, object] = {"softbounce": False, "postmaster": "pm"}
            values.update(options)
            report, _ = run(server, smtp(listener, **values))
        return report, listener, server

    def bounces(self, listener: FakeSmtpServer) -> list[str]:
        return [c for c in listener.commands if c == "MAIL FROM:<>"]

    def test_a_final_refusal_bounces_to_the_sender_with_bouncemail(self) -> None:
        listener = FakeSmtpServer(
            replies={"RCPT:joe@example.com": "550 5.1.1 no such user"}
        )
        with listener, FakePop3Server([message(1)]) as server:
            report, _ = run(server, smtp(listener, softbounce=False, bouncemail=True))
        assert server.mailbox == [] and report.messages[0].deleted
        assert "RCPT TO:<sender1@example.org>" in listener.commands
        dsn = listener.received[0]
        assert dsn.mail_from == "" and dsn.recipients == ["sender1@example.org"]
        assert b"Content-Type: message/delivery-status" in dsn.data
        assert (
            b"Status: 5.1.1" in dsn.data and b"Message-ID: <m1@example.org>" in dsn.data
        )
        assert any(
            "a bounce was sent to sender1@example.org" in n for n in report.notes
        )

    def test_without_bouncemail_the_postmaster_is_told(self) -> None:
        _report, listener, _ = self.bounce_run("554 5.6.0 no")
        assert "RCPT TO:<pm@[127.0.0.1]>" in listener.commands

    @pytest.mark.parametrize(
        "options",
        [
            {"antispam": (554,)},  # spam: no bounce ...
            {"postmaster": ""},  # ... nobody to tell ...
            {"softbounce": True},  # ... not final: kept, no bounce
        ],
    )
    def test_no_bounce_when_policy_says_so(self, options: dict[str, object]) -> None:
        _, listener, _ = self.bounce_run("554 5.7.1 spam", **options)
        assert self.bounces(listener) == []

    def test_never_on_553(self) -> None:
        _report, listener, server = self.bounce_run("553 5.1.8 bad sender domain")
        assert self.bounces(listener) == [] and server.mailbox == []

    def test_spambounce_reports_spam_refusals(self) -> None:
        _, listener, _ = self.bounce_run(
            "554 5.7.1 spam", antispam=(554,), spambounce=True, bouncemail=True
        )
        assert self.bounces(listener) == ["MAIL FROM:<>"]

    def test_a_failed_bounce_is_noted_and_changes_nothing(self) -> None:
        # The listener refuses the message and then the bounce's recipient.
        listener = FakeSmtpServer(
            replies={"END": "554 5.6.0 no", "RCPT:pm@[127.0.0.1]": "550 5.1.1 no pm"}
        )
        with listener, FakePop3Server([message(1)]) as server:
            report, ledger = run(
                server, smtp(listener, softbounce=False, postmaster="pm")
            )
        assert server.mailbox == [] and ledger.marks == [("INBOX", None, "uid-1")]
        assert any("bounce to pm was not accepted" in note for note in report.notes)
