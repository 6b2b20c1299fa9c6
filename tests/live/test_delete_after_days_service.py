"""``delete_after_days`` of a stored mailbox, polled through the service, with a
moved clock, against the real Dovecot; the ledger is SeenMessage.delivered_at.

These run twice in `make test`: on PostgreSQL and on SQLite.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from retrieval import services
from retrieval.models import MessageResult, PollRun, SeenMessage
from tests.factories import make_mailbox, make_user

pytestmark = [pytest.mark.live, pytest.mark.django_db]

DAYS = 5
DAY = timedelta(days=1)


def _message(n: int) -> bytes:
    return (
        f"From: a@example.net\r\nSubject: kept {n}\r\n"
        f"Message-ID: <kept{n}.service@example.net>\r\n\r\nBody {n}.\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("protocol", "port_name"), [("pop3", "pop3s_port"), ("imap", "imaps_port")]
)
@pytest.mark.parametrize("fetchall", [False, True], ids=["new-only", "fetchall"])
def test_the_service_deletes_kept_messages_n_days_after_their_delivery(
    dovecot, mailuser, smtp_listener, protocol, port_name, fetchall
):
    # A superuser's mailbox may name the loopback Dovecot (others: public only).
    owner = make_user("kept@example.org", superuser=True)
    mailbox = make_mailbox(
        owner,
        password=mailuser.password,
        protocol=protocol,
        host=dovecot.host,
        port=getattr(dovecot, port_name),
        tls_mode="implicit",
        ca_file=dovecot.ca_file,
        username=mailuser.name,
        delivery_host="127.0.0.1",
        delivery_port=smtp_listener.port,
        recipient="kept@example.org",
        timeout=10,
        keep=True,
        fetchall=fetchall,
        delete_after_days=DAYS,
    )
    t0 = timezone.now()

    def poll_at(moment):
        summary = services.mailbox_poll(mailbox_id=mailbox.pk, clock=lambda: moment)
        run = PollRun.objects.get(pk=summary.run_id)
        assert not run.error, run.error
        return run

    dovecot.put(mailuser.name, _message(1))
    assert poll_at(t0).delivered == 1
    dovecot.put(mailuser.name, _message(2))
    assert poll_at(t0 + 2 * DAY).delivered == 1 + fetchall
    dates = dict(SeenMessage.objects.values_list("message_id", "delivered_at"))
    assert dates == {
        "<kept1.service@example.net>": t0,  # fetchall delivered it again: first date
        "<kept2.service@example.net>": t0 + 2 * DAY,
    }

    run = poll_at(t0 + (DAYS - 1) * DAY)
    assert run.deleted == 0
    assert not run.messages.filter(status="expired").exists()
    assert len(dovecot.messages(mailuser.name)) == 2

    run = poll_at(t0 + (DAYS + 1) * DAY)
    (gone,) = MessageResult.objects.filter(run=run, status="expired")
    assert gone.deleted
    assert f"deleted after {DAYS} days (keep)" in gone.listener_reply
    assert run.deleted == 1
    assert run.fetched == run.delivered  # an expired message is not fetched
    assert len(dovecot.messages(mailuser.name)) == 1
    assert b"kept 2" in dovecot.messages(mailuser.name)[0]

    run = poll_at(t0 + (2 + DAYS + 1) * DAY)
    assert list(run.messages.values_list("status", "deleted")) == [("expired", True)]
    assert dovecot.messages(mailuser.name) == []
    # Gone from the server, so gone from the ledger at the next poll.
    poll_at(t0 + (3 + DAYS + 1) * DAY)
    assert not SeenMessage.objects.filter(mailbox=mailbox).exists()
