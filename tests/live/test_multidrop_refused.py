"""Multidrop: a message whose every recipient the listener refuses (issue 10.7).

fetchmail 6.4 (``sink.c``, ``open_smtp_sink``) hands such a message to the
postmaster ("no address matches; forwarding to postmaster") and bounces the
refusals as ``bouncemail`` says; before this, fetchweb left it on the server,
where it was fetched and refused again at every poll. A real Dovecot and the
real aiosmtpd listener, refusing at RCPT as a real MTA does for unknown users.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import MessageStatus
from retrieval.engine.run import poll
from retrieval.engine.spec import MessageOptions, MultidropSpec
from tests.live.test_crash_invariants import build_spec, config

if TYPE_CHECKING:
    from retrieval.engine.spec import MailboxSpec
    from tests.support.dovecot import Dovecot, MailUser
    from tests.support.smtp_listener import SmtpListener

pytestmark = pytest.mark.live

RAW = (
    b"From: sam@outside.example\r\nReturn-Path: <sam@outside.example>\r\n"
    b"To: alice@client.example, bob@client.example\r\n"
    b"Message-ID: <refused-1@outside.example>\r\nSubject: for two unknowns\r\n"
    b"\r\nhello\r\n"
)


def spec_for(
    dovecot: Dovecot, user: MailUser, listener: SmtpListener, **delivery: object
) -> MailboxSpec:
    spec = build_spec(config(dovecot, user, listener.port, "imap", dovecot.imap_port))
    return replace(
        spec,
        delivery=replace(
            spec.delivery,
            recipients=(),
            smtpaddress="client.example",
            postmaster="postmaster",
            **delivery,  # type: ignore[arg-type]
        ),
        message=MessageOptions(rewrite=True),
        multidrop=MultidropSpec(wildcard=True, envelope=None, aka=("client.example",)),
    )


def refuse_both(listener: SmtpListener) -> None:
    for who in ("alice@client.example", "bob@client.example"):
        listener.fail_at("RCPT", "550 5.1.1 No such user", rcpt=who)


def test_a_message_every_recipient_refuses_goes_to_the_postmaster(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener
) -> None:
    dovecot.put(mailuser.name, RAW)
    refuse_both(smtp_listener)
    spec = spec_for(dovecot, mailuser, smtp_listener)
    ledger = MemoryLedger()

    report = poll(spec, ledger=ledger, transcript=ListTranscript())

    got = smtp_listener.messages[0]  # then the bounce report (next tests)
    assert got.rcpt_tos == ["postmaster@client.example"]
    assert got.mail_from == "sam@outside.example"
    (result,) = report.messages
    assert result.status is MessageStatus.DELIVERED and result.deleted
    assert result.recipients == ("postmaster",)
    assert "550 5.1.1 No such user" in result.listener_reply
    assert any(
        "every recipient" in note and "delivered to the postmaster" in note
        for note in report.notes
    ), report.notes
    assert dovecot.messages(mailuser.name) == []
    again = poll(spec, ledger=ledger, transcript=ListTranscript())
    assert again.messages == [] and len(smtp_listener.messages) == 2


def test_with_bouncemail_the_sender_is_told_too(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener
) -> None:
    dovecot.put(mailuser.name, RAW)
    refuse_both(smtp_listener)
    spec = spec_for(dovecot, mailuser, smtp_listener, bouncemail=True)

    report = poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())

    delivered, bounce = smtp_listener.messages
    assert delivered.rcpt_tos == ["postmaster@client.example"]
    assert bounce.mail_from in ("", "<>") and bounce.rcpt_tos == ["sam@outside.example"]
    assert b"alice@client.example" in bounce.data
    assert any("a bounce was sent to sam@outside.example" in n for n in report.notes)


def test_without_bouncemail_the_postmaster_gets_the_report(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener
) -> None:
    dovecot.put(mailuser.name, RAW)
    refuse_both(smtp_listener)
    spec = spec_for(dovecot, mailuser, smtp_listener)
    poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())
    rcpts = [m.rcpt_tos for m in smtp_listener.messages]
    # fetchmail: error mail goes to the postmaster when bouncemail is off.
    assert rcpts == [["postmaster@client.example"], ["postmaster@client.example"]]


def test_when_the_postmaster_refuses_too_the_message_stays(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener
) -> None:
    dovecot.put(mailuser.name, RAW)
    refuse_both(smtp_listener)
    smtp_listener.fail_at("RCPT", 550, rcpt="postmaster@client.example")
    spec = spec_for(dovecot, mailuser, smtp_listener)

    report = poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())

    assert smtp_listener.messages == []
    (result,) = report.messages
    assert result.status is MessageStatus.REFUSED and not result.deleted
    assert any("the postmaster (postmaster) refused it too" in n for n in report.notes)
    assert len(dovecot.messages(mailuser.name)) == 1


def test_a_temporary_refusal_is_not_rerouted(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener
) -> None:
    dovecot.put(mailuser.name, RAW)
    smtp_listener.fail_at("RCPT", 450, rcpt="alice@client.example")
    smtp_listener.fail_at("RCPT", 550, rcpt="bob@client.example")
    spec = spec_for(dovecot, mailuser, smtp_listener)

    report = poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())

    assert smtp_listener.messages == []
    assert report.messages[0].status is MessageStatus.DEFERRED
