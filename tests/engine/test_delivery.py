"""What the listener answers decides keep or delete: SMTP, LMTP and MDA."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import pytest

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode, MessageStatus
from retrieval.engine.run import poll
from retrieval.engine.spec import DeliveryKind, DeliverySpec
from retrieval.engine.testing import FakePop3Server, FakeSmtpServer, refused_port

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

    @pytest.mark.parametrize("fault", ["drop_on", "stall_on"])
    def test_a_listener_that_vanishes_before_the_final_reply_defers(
        self, fault: str
    ) -> None:
        with (
            FakeSmtpServer(**{fault: "END"}) as listener,  # type: ignore[arg-type]
            FakePop3Server([message(1)]) as server,
        ):
            started = time.monotonic()
            report, _ = run(server, smtp(listener, timeout=0.5))
        assert time.monotonic() - started < 3
        assert report.messages[0].status is MessageStatus.DEFERRED
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
        with FakeSmtpServer() as listener, FakePop3Server([message(1)]) as server:
            report, _ = run(server, smtp(listener, recipients=()))
        assert report.exit_code is ExitCode.SUCCESS
        assert listener.received[0].recipients == ["joe@localhost"]

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
sys.stderr.write("note from mda\\n")
sys.exit(int(mode))
"""


class MdaTests:
    def deliver(
        self, tmp_path: Path, mode: str, body: bytes = b""
    ) -> tuple[object, Path, FakePop3Server]:
        script = tmp_path / "mda.py"
        script.write_text(MDA_SCRIPT)
        out = tmp_path / "out"
        delivery = DeliverySpec(
            kind=DeliveryKind.MDA,
            mda=(sys.executable, str(script), f"{out}-%T", "%F", mode),
            recipients=("joe",),
            timeout=2.0,
        )
        with FakePop3Server([message(1, body)]) as server:
            report, _ = run(server, delivery)
        return report, tmp_path / "out-joe", server

    def test_exit_zero_delivers_with_unix_line_endings(self, tmp_path: Path) -> None:
        report, out, server = self.deliver(tmp_path, "0", b".dot\r\n8bit \xe9\r\n")
        assert report.exit_code is ExitCode.SUCCESS, report.error  # type: ignore[attr-defined]
        data = out.read_bytes()
        assert data.startswith(b"sender1@example.org|Received: from ")
        assert data.endswith(b"Subject: test 1\n\n.dot\n8bit \xe9\n")
        assert server.mailbox == []

    @pytest.mark.parametrize(
        ("mode", "status"),
        [
            ("75", MessageStatus.DEFERRED),
            ("1", MessageStatus.DEFERRED),
            ("67", MessageStatus.REFUSED),
            ("sleep", MessageStatus.DEFERRED),
            ("half", MessageStatus.DEFERRED),
        ],
    )
    def test_anything_but_exit_zero_keeps_the_message(
        self, tmp_path: Path, mode: str, status: MessageStatus
    ) -> None:
        body = b"x" * 200_000 + b"\r\n" if mode == "half" else b""
        started = time.monotonic()
        report, _, server = self.deliver(tmp_path, mode, body)
        assert time.monotonic() - started < 10
        assert report.messages[0].status is status  # type: ignore[attr-defined]
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
