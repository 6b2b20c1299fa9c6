"""A whole-domain mailbox set up only in the multidrop editor, polled for real.

No options JSON is written by hand: the superuser fills in the editor's page
(envelope header, prefix, aka, local domains, the domain added to names,
postmaster, name mappings), the service polls the suite's Dovecot, and the
suite's SMTP listener receives each message for the person it was for.
"""

from __future__ import annotations

from collections import Counter

import pytest
from django.urls import reverse

from retrieval import services
from retrieval.engine.deliver.headers import message_id
from retrieval.models import PollRun
from tests.factories import make_domain, make_user
from tests.live.test_service_dovecot import _mailbox

pytestmark = [pytest.mark.live, pytest.mark.django_db]

DOMAIN = "client.example"


def _message(mid: str, envelope_to: str) -> bytes:
    return (
        f"X-Original-To: {envelope_to}\r\n"
        f"Message-ID: <{mid}@outside.example>\r\n"
        "From: Sam <sam@outside.example>\r\n"
        f"To: everyone@{DOMAIN}\r\n"
        f"Subject: {mid}\r\n\r\nBody of {mid}.\r\n"
    ).encode()


def test_a_mailbox_set_up_in_the_editor_sorts_the_domains_mail(
    client, settings, dovecot, mailuser, smtp_listener
):
    settings.FETCH_ALLOW_PRIVATE_HOSTS = True  # Dovecot is on loopback
    domain = make_domain(DOMAIN)
    alice = make_user(f"alice@{DOMAIN}", domain=domain)
    root = make_user("root@example.net", superuser=True)
    # The suite's Dovecot and listener; no recipient: the rules decide.
    mailbox = _mailbox(
        dovecot, mailuser, smtp_listener, alice, domain=domain, recipient=""
    )
    assert mailbox.options == {}
    client.force_login(root)
    response = client.post(
        reverse("retrieval:mailbox-rules", args=[mailbox.pk]),
        {
            "envelope": "X-Original-To",
            "qvirtual": "catchall+",
            "aka": DOMAIN,
            "localdomains": f"lists.{DOMAIN}",
            "smtpaddress": DOMAIN,
            "postmaster": "postmaster",
            "rules": "alice\nbert -> bob",
        },
    )
    assert response.status_code == 302, response.context["form"].errors

    for mid, to in [
        ("m1", f"catchall+alice@{DOMAIN}"),
        ("m2", f"catchall+bert@{DOMAIN}"),
        ("m3", f"catchall+zed@{DOMAIN}"),
        ("m4", f"carol@lists.{DOMAIN}"),
    ]:
        dovecot.put(mailuser.name, _message(mid, to))

    summary = services.mailbox_poll(mailbox_id=mailbox.pk)

    run = PollRun.objects.get(pk=summary.run_id)
    assert run.outcome == PollRun.Outcome.SUCCESS, run.error
    assert run.delivered == run.deleted == 4
    got = Counter(
        (rcpt, message_id(m.data))
        for m in smtp_listener.messages
        for rcpt in m.rcpt_tos
    )
    assert got == Counter(
        {
            (f"alice@{DOMAIN}", "<m1@outside.example>"): 1,
            (f"bob@{DOMAIN}", "<m2@outside.example>"): 1,  # bert -> bob
            (f"postmaster@{DOMAIN}", "<m3@outside.example>"): 1,  # nobody's
            (f"carol@lists.{DOMAIN}", "<m4@outside.example>"): 1,  # local domain
        }
    )
    assert dovecot.messages(mailuser.name) == []
