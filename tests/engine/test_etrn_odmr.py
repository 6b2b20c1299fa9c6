"""ETRN and ODMR through poll(): scripted servers (tests/engine/turn_servers.py)
and the suite's real aiosmtpd listener. The live ETRN test against Postfix is
tests/live/test_etrn_postfix.py."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode, MessageStatus, PollReport
from retrieval.engine.run import poll
from retrieval.engine.spec import (
    DeliveryKind,
    DeliverySpec,
    MailboxSpec,
    MailProtocol,
    Secret,
    ServerSpec,
    TlsMode,
    TlsSpec,
)
from tests.engine.turn_servers import FakeEtrnServer, FakeOdmrServer, Queued

if TYPE_CHECKING:
    from tests.support.fake_servers import FakeServer
    from tests.support.smtp_listener import SmtpListener

DOMAINS = ("client.example", "@other.example")


def turn_spec(
    server: FakeServer,
    protocol: MailProtocol,
    listener: SmtpListener | None = None,
    **changes: object,
) -> MailboxSpec:
    spec = MailboxSpec(
        server=ServerSpec(
            host="odmr.isp.example",
            via="127.0.0.1",
            port=server.port,
            protocol=protocol,
            tls=TlsSpec(mode=TlsMode.NONE),
            timeout=5,
        ),
        username="client.example",
        password=Secret("odmr-secret"),
        delivery=DeliverySpec(
            kind=DeliveryKind.SMTP,
            hosts=(f"{listener.host}/{listener.port}",) if listener else (),
            timeout=5,
        ),
        fetchdomains=DOMAINS,
    )
    return replace(spec, **changes)  # type: ignore[arg-type]


def run(spec: MailboxSpec) -> tuple[PollReport, str]:
    transcript = ListTranscript()
    report = poll(spec, ledger=MemoryLedger(), transcript=transcript)
    return report, transcript.text()


# --- ETRN --------------------------------------------------------------------------


def test_etrn_asks_for_every_domain_and_reports_each_answer() -> None:
    replies = {"@other.example": "251 OK, no messages waiting for node @other.example"}
    with FakeEtrnServer(etrn_replies=replies) as server:
        report, _ = run(turn_spec(server, MailProtocol.ETRN))
    assert report.exit_code is ExitCode.SUCCESS, report.error
    assert server.commands[1:] == [
        "ETRN client.example",
        "ETRN @other.example",
        "QUIT",
    ]
    assert any("client.example: queuing started" in n for n in report.notes)
    assert any("@other.example: no messages waiting" in n for n in report.notes)
    assert report.messages == []


@pytest.mark.parametrize(
    ("reply", "exit_code", "words"),
    [
        (
            "458 Unable to queue messages for node client.example",
            ExitCode.PROTOCOL,
            "unable to queue",
        ),
        (
            "459 Node client.example not allowed: unknown",
            ExitCode.AUTHFAIL,
            "not allowed",
        ),
        ("501 Syntax error in parameters", ExitCode.PROTOCOL, "syntax error"),
        ("554 what?", ExitCode.PROTOCOL, "unknown ETRN error"),
    ],
)
def test_etrn_refusals_carry_fetchmails_exit_codes(
    reply: str, exit_code: ExitCode, words: str
) -> None:
    with FakeEtrnServer(etrn_replies={"client.example": reply}) as server:
        report, _ = run(turn_spec(server, MailProtocol.ETRN))
    assert report.exit_code is exit_code
    assert words in report.error and reply.split()[0] in report.error
    assert server.commands[-1] == "QUIT"  # stopped at the first refusal, politely
    assert "ETRN @other.example" not in server.commands


def test_etrn_refuses_a_server_without_etrn() -> None:
    with FakeEtrnServer(offer_etrn=False) as server:
        report, _ = run(turn_spec(server, MailProtocol.ETRN))
    assert report.exit_code is ExitCode.PROTOCOL
    assert "does not offer ETRN" in report.error
    assert not any(c.startswith("ETRN") for c in server.commands)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"keep": True}, "keep cannot be used with ETRN"),
        ({"flush": True}, "flush cannot be used with ETRN"),
        ({"folders": ("INBOX",)}, "folder cannot be used with ETRN"),
        ({"fetchdomains": ()}, "needs the domains"),
        ({"fetchdomains": ("a.example\r\nQUIT",)}, "not a domain name"),
        ({"fetchdomains": ("a b",)}, "not a domain name"),
    ],
)
def test_etrn_refuses_options_that_make_no_sense(
    changes: dict[str, object], words: str
) -> None:
    with FakeEtrnServer() as server:
        spec = replace(turn_spec(server, MailProtocol.ETRN), **changes)  # type: ignore[arg-type]
        report, _ = run(spec)
        assert server.connections == 0
    assert report.exit_code is ExitCode.SYNTAX
    assert words in report.error


def test_etrn_with_required_starttls_stops_before_asking() -> None:
    with FakeEtrnServer() as server:
        spec = turn_spec(server, MailProtocol.ETRN)
        spec = replace(
            spec, server=replace(spec.server, tls=TlsSpec(mode=TlsMode.STARTTLS))
        )
        report, _ = run(spec)
    assert report.exit_code is ExitCode.SOCKET
    assert "STARTTLS" in report.error
    assert not any(c.startswith("ETRN") for c in server.commands)


# --- ODMR --------------------------------------------------------------------------


def queued(n: int, *rcpts: str) -> Queued:
    data = (
        f"From: sender{n}@outside.example\r\nMessage-ID: <q{n}@outside.example>\r\n"
        f"Subject: queued {n}\r\n\r\nbody {n}\r\n.leading dot\r\n"
    ).encode()
    return Queued(f"sender{n}@outside.example", list(rcpts), data)


def test_odmr_relays_the_queue_through_the_listener(
    smtp_listener: SmtpListener,
) -> None:
    queue = [
        queued(1, "alice@client.example"),
        queued(2, "bob@client.example", "carol@client.example"),
    ]
    with FakeOdmrServer(queue) as server:
        report, text = run(turn_spec(server, MailProtocol.ODMR, smtp_listener))
    assert report.exit_code is ExitCode.SUCCESS, report.error
    assert server.atrn_domains == list(DOMAINS)
    assert server.authenticated_as == "client.example"
    assert any(c.startswith("AUTH CRAM-MD5") for c in server.commands)
    assert server.greeting_after_turn.startswith("220 ")
    assert server.delivered() == [0, 1]
    got = smtp_listener.messages
    assert [(m.mail_from, m.rcpt_tos) for m in got] == [
        ("sender1@outside.example", ["alice@client.example"]),
        ("sender2@outside.example", ["bob@client.example", "carol@client.example"]),
    ]
    # Byte for byte after our trace header, dot-stuffing undone.
    assert got[0].data.endswith(queue[0].data)
    assert b"with ODMR (fetchweb-" in got[0].data
    assert [m.status for m in report.messages] == [MessageStatus.DELIVERED] * 2
    assert "odmr-secret" not in text


def test_odmr_answers_the_server_only_after_the_listener(
    smtp_listener: SmtpListener,
) -> None:
    # The listener refuses mid-session: message 2 temporarily, message 3 for
    # good; 1 and 4 go through. The server hears exactly that, per message.
    smtp_listener.fail_at(
        "DATA_END", "451 4.3.0 disk full", times=1, rcpt="bob@client.example"
    )
    smtp_listener.fail_at(
        "RCPT", "550 5.1.1 no such user", rcpt="nobody@client.example"
    )
    queue = [
        queued(1, "alice@client.example"),
        queued(2, "bob@client.example"),
        queued(3, "nobody@client.example"),
        queued(4, "alice@client.example"),
    ]
    with FakeOdmrServer(queue) as server:
        report, _ = run(turn_spec(server, MailProtocol.ODMR, smtp_listener))
    assert server.delivered() == [0, 3]
    assert (
        queue[1].final_reply.startswith("451 ") and "disk full" in queue[1].final_reply
    )
    assert (
        queue[2].final_reply.startswith("554 ")
        and "no such user" in queue[2].final_reply
    )
    assert [m.status for m in report.messages] == [
        MessageStatus.DELIVERED,
        MessageStatus.DEFERRED,
        MessageStatus.REFUSED,
        MessageStatus.DELIVERED,
    ]
    assert report.exit_code is ExitCode.SUCCESS
    assert [m.rcpt_tos for m in smtp_listener.messages] == [
        ["alice@client.example"],
        ["alice@client.example"],
    ]


def test_odmr_with_the_listener_gone_acknowledges_nothing(unused_port: int) -> None:
    with FakeOdmrServer([queued(1, "alice@client.example")]) as server:
        spec = turn_spec(server, MailProtocol.ODMR)
        spec = replace(
            spec, delivery=replace(spec.delivery, hosts=(f"127.0.0.1/{unused_port}",))
        )
        report, _ = run(spec)
    assert server.delivered() == []
    assert report.exit_code is ExitCode.SMTP


def test_odmr_server_hanging_up_keeps_what_was_answered(
    smtp_listener: SmtpListener,
) -> None:
    queue = [queued(1, "alice@client.example"), queued(2, "bob@client.example")]
    with FakeOdmrServer(queue, hang_up_after=1) as server:
        report, _ = run(turn_spec(server, MailProtocol.ODMR, smtp_listener))
    assert server.delivered() == [0]
    assert len(smtp_listener.messages) == 1
    assert report.exit_code is ExitCode.SUCCESS
    assert any("ended early" in n for n in report.notes)


@pytest.mark.parametrize(
    ("atrn_reply", "exit_code"),
    [
        ("450 ATRN request refused", ExitCode.PROTOCOL),
        ("451 Unable to process ATRN request now", ExitCode.EXCLUDE),
        ("502 Command not implemented", ExitCode.PROTOCOL),
        ("530 Authentication required", ExitCode.AUTHFAIL),
        ("599 strange", ExitCode.PROTOCOL),
    ],
)
def test_odmr_atrn_refusals(atrn_reply: str, exit_code: ExitCode) -> None:
    with FakeOdmrServer([], atrn_reply=atrn_reply) as server:
        report, _ = run(turn_spec(server, MailProtocol.ODMR))
    assert report.exit_code is exit_code
    assert atrn_reply.split()[0] in report.error


def test_odmr_no_mail_is_success_as_in_fetchmail() -> None:
    with FakeOdmrServer([], atrn_reply="453 You have no mail") as server:
        report, _ = run(turn_spec(server, MailProtocol.ODMR))
    assert report.exit_code is ExitCode.SUCCESS
    assert server.commands[-1] == "QUIT"


def test_odmr_wrong_password_and_plain_only_server() -> None:
    with FakeOdmrServer([], mechanisms="PLAIN") as server:
        report, _ = run(turn_spec(server, MailProtocol.ODMR, password=Secret("wrong")))
    assert report.exit_code is ExitCode.AUTHFAIL
    assert not server.turned_around
    assert not any(c.startswith("ATRN") for c in server.commands)


def test_odmr_refuses_a_server_without_atrn() -> None:
    with FakeOdmrServer([], offer_atrn=False) as server:
        report, _ = run(turn_spec(server, MailProtocol.ODMR))
    assert report.exit_code is ExitCode.PROTOCOL
    assert "ATRN" in report.error
    assert not any(c.startswith("AUTH") for c in server.commands)
