"""A whole client domain through one mailbox: Postfix -> Dovecot catch-all -> us.

The ISP's Postfix (tests/support/postfix.py) delivers every address of
client.example into Dovecot's ``catchall`` mailbox, one copy per recipient,
each copy with ``Delivered-To: catchall+USER@client.example``. fetchweb's
engine empties that mailbox over IMAP and delivers each copy through the real
SMTP listener to the user it was for: To, Cc, Bcc, a mailing-list copy and an
unknown address (which goes to the postmaster), nothing twice.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import pytest

from retrieval.engine.deliver.headers import message_id
from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode
from retrieval.engine.run import poll
from retrieval.engine.spec import (
    DeliveryKind,
    DeliverySpec,
    MailboxSpec,
    MailProtocol,
    MultidropSpec,
    Secret,
    ServerSpec,
    TlsMode,
    TlsSpec,
)
from tests.support.postfix import CATCHALL_PREFIX, CLIENT_DOMAIN

if TYPE_CHECKING:
    from tests.support.dovecot import Dovecot, MailUser
    from tests.support.postfix import Postfix
    from tests.support.smtp_listener import SmtpListener

pytestmark = pytest.mark.live

USERS = ("alice", "bob", "carol", "dave", "erin")


def at(name: str) -> str:
    return f"{name}@{CLIENT_DOMAIN}"


def message(mid: str, *lines: str) -> bytes:
    head = [f"Message-ID: <{mid}@outside.example>", "From: Sam <sam@outside.example>"]
    return ("\r\n".join([*head, *lines]) + f"\r\n\r\nBody of {mid}.\r\n").encode()


def send_the_day(postfix: Postfix) -> None:
    """What the Internet sends the client domain (its MX is the ISP)."""
    # To, Cc, Bcc (dave: only in the envelope) and an unknown address.
    postfix.send(
        message(
            "m1",
            f"To: {at('alice')}, {at('bob')}",
            f"Cc: {at('carol')}, Zed <{at('zed')}>",
            "Subject: project kickoff",
        ),
        mail_from="sam@outside.example",
        rcpt_tos=[at("alice"), at("bob"), at("carol"), at("dave"), at("zed")],
    )
    # The same message again from a mailing list alice and erin are on.
    postfix.send(
        message(
            "m1",
            f"To: {at('alice')}, {at('bob')}",
            "List-Id: <team.lists.example>",
            "Subject: project kickoff",
        ),
        mail_from="team-bounces@lists.example",
        rcpt_tos=[at("alice"), at("erin")],
    )
    # A list post whose header names only the list.
    postfix.send(
        message("m2", "To: team@lists.example", "Subject: list only"),
        mail_from="team-bounces@lists.example",
        rcpt_tos=[at("erin")],
    )
    # Nobody of that name.
    postfix.send(
        message("m3", f"To: {at('nobody')}", "Subject: lost"),
        mail_from="sam@outside.example",
        rcpt_tos=[at("nobody")],
    )


def domain_spec(
    dovecot: Dovecot, catchall: MailUser, listener: SmtpListener
) -> MailboxSpec:
    return MailboxSpec(
        server=ServerSpec(
            host="localhost",
            via=dovecot.host,
            protocol=MailProtocol.IMAP,
            port=dovecot.imaps_port,
            tls=TlsSpec(mode=TlsMode.IMPLICIT, ca_file=dovecot.ca_file),
            timeout=10,
        ),
        username=catchall.name,
        password=Secret(catchall.password),
        delivery=DeliverySpec(
            kind=DeliveryKind.SMTP,
            hosts=(f"{listener.host}/{listener.port}",),
            smtpaddress=CLIENT_DOMAIN,
            postmaster="postmaster",
            timeout=10,
        ),
        multidrop=MultidropSpec(
            names=tuple((u, u) for u in USERS),
            aka=(CLIENT_DOMAIN,),
            envelope="Delivered-To",
            qvirtual=CATCHALL_PREFIX,
        ),
        name="client.example",
    )


def test_the_domain_mailbox_is_sorted_to_its_users(
    postfix: Postfix,
    dovecot: Dovecot,
    catchall: MailUser,
    smtp_listener: SmtpListener,
) -> None:
    send_the_day(postfix)
    postfix.wait_for_queue(0)
    stored = dovecot.messages(catchall.name)
    assert len(stored) == 9  # one copy per envelope recipient
    assert all(b"Delivered-To: catchall+" in raw for raw in stored)

    transcript = ListTranscript()
    report = poll(
        domain_spec(dovecot, catchall, smtp_listener),
        ledger=MemoryLedger(),
        transcript=transcript,
    )

    assert report.exit_code is ExitCode.SUCCESS, report.error
    assert report.deleted == 9
    assert dovecot.messages(catchall.name) == []
    got = Counter(
        (rcpt.split("@")[0], message_id(m.data))
        for m in smtp_listener.messages
        for rcpt in m.rcpt_tos
    )
    m1, m2, m3 = (f"<{n}@outside.example>" for n in ("m1", "m2", "m3"))
    assert got == Counter(
        {
            ("alice", m1): 1,  # To, and the list copy: once
            ("bob", m1): 1,
            ("carol", m1): 1,  # Cc
            ("dave", m1): 1,  # Bcc
            ("erin", m1): 1,  # the list copy
            ("erin", m2): 1,  # named by no header, only by the envelope
            ("postmaster", m1): 1,  # zed is nobody here
            ("postmaster", m3): 1,
        }
    )
    assert all(len(m.rcpt_tos) == 1 for m in smtp_listener.messages)
    text = transcript.text()
    assert "multidrop: recipients from Delivered-To (envelope)" in text
    assert f"qvirtual '{CATCHALL_PREFIX}' stripped" in text
    assert "no local name for zed" in text
    assert "alice already got <m1@outside.example> in this poll" in text


@pytest.mark.django_db
def test_the_service_polls_a_stored_domain_mailbox_by_its_rules(
    postfix: Postfix,
    dovecot: Dovecot,
    catchall: MailUser,
    smtp_listener: SmtpListener,
) -> None:
    """The same, from database rows: MultidropRule rows and the mailbox's
    stored rcfile options, through ``services.mailbox_poll``."""
    from retrieval import services
    from retrieval.models import MultidropRule, PollRun
    from tests.factories import make_mailbox, make_user

    owner = make_user("admin@client.example", superuser=True)
    mailbox = make_mailbox(
        owner,
        password=catchall.password,
        protocol="imap",
        host=dovecot.host,
        port=dovecot.imaps_port,
        tls_mode="implicit",
        ca_file=dovecot.ca_file,
        username=catchall.name,
        delivery_host="127.0.0.1",
        delivery_port=smtp_listener.port,
        timeout=10,
        options={
            "globals": {"postmaster": "postmaster"},
            "server": {
                "envelope": "Delivered-To",
                "qvirtual": CATCHALL_PREFIX,
                "aka": [CLIENT_DOMAIN],
            },
            "user": {"smtpaddress": CLIENT_DOMAIN},
        },
    )
    for position, (remote, local) in enumerate(
        [("alice", ""), ("bob", "robert"), ("*", "")]
    ):
        MultidropRule.objects.create(
            mailbox=mailbox, position=position, remote=remote, local=local
        )
    postfix.send(
        message("s1", f"To: {at('alice')}", f"Cc: {at('bob')}, {at('zed')}"),
        mail_from="sam@outside.example",
        rcpt_tos=[at("alice"), at("bob"), at("zed")],
    )
    postfix.wait_for_queue(0)

    summary = services.mailbox_poll(mailbox_id=mailbox.pk)

    assert summary.run_id is not None, summary
    run = PollRun.objects.get(pk=summary.run_id)
    assert run.outcome == PollRun.Outcome.SUCCESS, run.error
    assert run.delivered == run.deleted == 3
    assert sorted(r for m in smtp_listener.messages for r in m.rcpt_tos) == [
        at("alice"),
        at("robert"),  # bob=robert
        at("zed"),  # passed through by *
    ]
    assert "multidrop: recipients from Delivered-To (envelope)" in run.transcript
    assert dovecot.messages(catchall.name) == []
