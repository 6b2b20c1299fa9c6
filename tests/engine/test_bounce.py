"""Reply policy (keep, delete, bounce) and the delivery status notification."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy as email_policy

import pytest

from retrieval.engine.deliver.bounce import Bounce, status_code
from retrieval.engine.deliver.policy import decide
from retrieval.engine.deliver.sink import DeliveryOutcome, RecipientReply, Verdict
from retrieval.engine.report import MessageStatus
from retrieval.engine.spec import DeliverySpec

SENDER = "alice@example.net"


def outcome(*replies: tuple[str, int, str]) -> DeliveryOutcome:
    return DeliveryOutcome.from_replies([RecipientReply(*r) for r in replies])


@pytest.mark.parametrize(
    ("replies", "options", "status", "delete", "bounce_to"),
    [
        ([("a", 250, "ok")], {}, MessageStatus.DELIVERED, True, None),
        (
            [("a", 451, "later")],
            {"softbounce": False},
            MessageStatus.DEFERRED,
            False,
            None,
        ),
        (
            [("a", 530, "starttls first")],
            {"softbounce": False},
            MessageStatus.DEFERRED,
            False,
            None,
        ),
        ([("a", 0, "dropped")], {}, MessageStatus.DEFERRED, False, None),
        ([("a", 550, "no")], {}, MessageStatus.REFUSED, False, None),
        ([("a", 550, "no")], {"softbounce": False}, MessageStatus.REFUSED, True, None),
        (
            [("a", 550, "no")],
            {"softbounce": False, "bouncemail": True},
            MessageStatus.REFUSED,
            True,
            SENDER,
        ),
        (
            [("a", 550, "no")],
            {"softbounce": False, "postmaster": "pm"},
            MessageStatus.REFUSED,
            True,
            "pm",
        ),
        (
            [("a", 553, "forged")],
            {"softbounce": False, "bouncemail": True},
            MessageStatus.REFUSED,
            True,
            None,
        ),
        (
            [("a", 554, "spam")],
            {"antispam": (554,), "bouncemail": True},
            MessageStatus.REFUSED,
            True,
            None,
        ),
        (
            [("a", 554, "spam")],
            {"antispam": (554,), "spambounce": True, "postmaster": "pm"},
            MessageStatus.REFUSED,
            True,
            "pm",
        ),
        (
            [("a", 250, "ok"), ("b", 450, "busy")],
            {},
            MessageStatus.DEFERRED,
            False,
            None,
        ),
        (
            [("a", 250, "ok"), ("b", 550, "no")],
            {"softbounce": False, "bouncemail": True},
            MessageStatus.REFUSED,
            True,
            SENDER,
        ),
    ],
)
def test_the_reply_policy(
    replies: list[tuple[str, int, str]],
    options: dict[str, object],
    status: MessageStatus,
    delete: bool,
    bounce_to: str | None,
) -> None:
    delivery = DeliverySpec(**options)  # type: ignore[arg-type]
    decision = decide(outcome(*replies), delivery, keep=False, sender=SENDER)
    assert (decision.status, decision.delete) == (status, delete)
    assert (decision.bounce.to if decision.bounce else None) == bounce_to


def test_keep_and_partial_acceptance_record_who_has_it() -> None:
    delivery = DeliverySpec(softbounce=False, bouncemail=True)
    decision = decide(
        outcome(("a", 250, "ok"), ("b", 550, "no")), delivery, keep=True, sender=SENDER
    )
    assert not decision.delete and decision.bounce is None
    assert decision.served == ["a"]


@pytest.mark.parametrize("sender", ["", "MAILER-DAEMON@example.net"])
def test_a_bounce_is_never_bounced(sender: str) -> None:
    delivery = DeliverySpec(softbounce=False, bouncemail=True, postmaster="pm")
    decision = decide(outcome(("a", 550, "no")), delivery, keep=False, sender=sender)
    assert decision.delete and decision.bounce is None


def test_the_report_is_rfc3464_and_carries_the_original_header() -> None:
    failures = [
        RecipientReply("joe@example.org", 550, "5.1.1 no such user\nsecond line"),
        RecipientReply("ann@example.org", 554, "rejected"),
    ]
    report = Bounce(
        to=SENDER,
        failures=failures,
        reason="The local mail system refused the message permanently.",
        reporting_host="mx.example.org",
        original_header=b"Subject: hello\r\nMessage-ID: <m1@x>\r\n",
        when=datetime(2025, 1, 2, tzinfo=UTC),
    )
    data = b"".join(report.chunks([SENDER]))
    parsed = email.message_from_bytes(data, policy=email_policy.default)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed["Auto-Submitted"] == "auto-replied"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    status = parts[1].as_bytes()
    assert b"Reporting-MTA: dns; mx.example.org" in status
    assert b"Final-Recipient: rfc822; joe@example.org" in status
    assert b"Status: 5.1.1" in status and b"Status: 5.0.0" in status
    # A multi-line listener reply cannot start a field of its own.
    assert b"\nsecond line" not in data and b"no such user second line" in data
    assert b"Message-ID: <m1@x>" in parts[2].as_bytes()
    assert report.size == len(data) and not report.needs_8bit


def test_status_codes_come_from_the_reply_when_it_has_one() -> None:
    assert status_code(RecipientReply("a", 552, "5.3.4 too big")) == "5.3.4"
    assert status_code(RecipientReply("a", 550, "4.1.1 inconsistent")) == "5.0.0"
    assert status_code(RecipientReply("a", 550, "")) == "5.0.0"


def test_the_verdict_names_the_deciding_reply() -> None:
    result = outcome(("a", 250, "ok"), ("b", 452, "4.2.2 full"), ("c", 550, "no"))
    assert result.verdict is Verdict.DEFERRED and result.reply == "452 4.2.2 full"
    assert result.accepted == ["a"]
