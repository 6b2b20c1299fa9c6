"""Issue 14 item 2 against a real Dovecot: what the engine reports for a refused
password and an unverified certificate is what pauses a mailbox (the mapping in
retrieval/services/failures.py reads the engine's exit code and message)."""

from __future__ import annotations

import pytest

from retrieval import services, tasks
from retrieval.models import Mailbox
from tests.factories import make_mailbox, make_user

pytestmark = [pytest.mark.live, pytest.mark.django_db]


@pytest.fixture
def alerts(monkeypatch):
    queued: list[tuple[int, str, str]] = []
    monkeypatch.setattr(tasks.send_alert, "delay", lambda *a: queued.append(a))
    return queued


def _mailbox(dovecot, mailuser, smtp_listener, **fields) -> Mailbox:
    values = {
        "protocol": "imap",
        "host": dovecot.host,
        "port": dovecot.imaps_port,
        "tls_mode": "implicit",
        "ca_file": dovecot.ca_file,
        "username": mailuser.name,
        "delivery_host": "127.0.0.1",
        "delivery_port": smtp_listener.port,
        "recipient": "alice@example.org",
        "timeout": 10,
        **fields,
    }
    password = values.pop("password", mailuser.password)
    return make_mailbox(
        make_user(superuser=True), password=password, poll_interval=60, **values
    )


def _poll_times(mailbox, capture, times: int) -> list[str]:
    states = []
    for _ in range(times):
        with capture(execute=True):
            services.mailbox_poll(mailbox_id=mailbox.pk)
        mailbox.refresh_from_db()
        states.append(mailbox.health)
    return states


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"password": "not-the-password"}, 3, "user name or password"),
        ({"ca_file": ""}, 2, "certificate could not be verified"),
    ],
    ids=["password-refused", "certificate-not-verified"],
)
def test_a_permanent_failure_pauses_after_n_tries(
    dovecot,
    mailuser,
    smtp_listener,
    settings,
    alerts,
    django_capture_on_commit_callbacks,
    fields,
    code,
    words,
):
    settings.FETCH_PAUSE_AFTER = 2
    mailbox = _mailbox(dovecot, mailuser, smtp_listener, **fields)
    states = _poll_times(mailbox, django_capture_on_commit_callbacks, 2)
    assert states == ["failing", "paused"]
    run = mailbox.runs.first()
    assert run.exit_code == code
    assert words in mailbox.health_reason
    assert [a[1] for a in alerts] == ["failing", "paused"]
    assert mailbox.pk not in services.mailboxes_claim_due()


def test_a_refused_connection_backs_off_but_never_pauses(
    dovecot,
    mailuser,
    smtp_listener,
    settings,
    alerts,
    django_capture_on_commit_callbacks,
):
    from tests.support.ports import free_port

    settings.FETCH_PAUSE_AFTER = 1
    mailbox = _mailbox(dovecot, mailuser, smtp_listener, port=free_port())
    states = _poll_times(mailbox, django_capture_on_commit_callbacks, 3)
    assert states == ["failing", "failing", "failing"]
    assert mailbox.runs.first().exit_code == 2
    assert mailbox.failure_count == 3 and mailbox.permanent_failures == 0
    assert [a[1] for a in alerts] == ["failing"]
    # The right port again: it recovers, and says so once.
    Mailbox.objects.filter(pk=mailbox.pk).update(port=dovecot.imaps_port)
    assert _poll_times(mailbox, django_capture_on_commit_callbacks, 1) == ["ok"]
    assert mailbox.failure_count == 0
    assert [a[1] for a in alerts] == ["failing", "recovered"]
