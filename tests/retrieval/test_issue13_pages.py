"""Issue 13 items 3 and 7: the mailbox page (polls by page, pause and resume,
Poll now followed live, the explanation of the last failure) and the poll page
(timings, TLS and login from the transcript, folded transcript, its download)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from retrieval.models import ConnectionTest, Mailbox, PollRun
from retrieval.services.progress import CachedProgress
from tests.factories import make_mailbox, make_user

pytestmark = pytest.mark.django_db

TRANSCRIPT = "\n".join(
    [
        "*: connected to mail.example.com:993 (192.0.2.1)",
        "*: TLS established: TLSv1.3 TLS_AES_256_GCM_SHA384",
        "S: * OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] Dovecot ready.",
        "C: A0001 CAPABILITY",
        "C: A0002 AUTHENTICATE PLAIN ****",
        "S: A0002 OK Logged in",
        "C: LHLO fetchweb",
        "C: AUTH LOGIN",
    ]
)


@pytest.fixture(autouse=True)
def _quick(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": uuid.uuid4().hex,
        }
    }


@pytest.fixture
def alice():
    user = make_user("alice@example.org")
    client = Client()
    client.force_login(user)
    return user, client


def _run(mailbox: Mailbox, **fields) -> PollRun:
    started = fields.pop("started_at", timezone.now() - timedelta(seconds=90))
    values = {
        "outcome": PollRun.Outcome.SUCCESS,
        "exit_code": 0,
        "finished_at": started + timedelta(seconds=75),
    }
    values.update(fields)
    return PollRun.objects.create(mailbox=mailbox, started_at=started, **values)


def test_polls_are_paged_down_to_the_oldest_kept(alice) -> None:
    user, client = alice
    mailbox = make_mailbox(user)
    base = timezone.now() - timedelta(days=1)
    for i in range(45):
        _run(mailbox, started_at=base + timedelta(minutes=i), error=f"run-{i:02d}-x")
    url = reverse("retrieval:mailbox-detail", args=[mailbox.pk])
    first = client.get(url).content.decode()
    assert "run-44-x" in first and "run-24-x" not in first
    last = client.get(url, {"page": 3}).content.decode()
    assert "run-00-x" in last and "run-44-x" not in last
    assert "Page 3 of 3" in last


def test_pause_and_resume_buttons(alice) -> None:
    user, client = alice
    mailbox = make_mailbox(user)
    page = client.get(reverse("retrieval:mailbox-detail", args=[mailbox.pk]))
    assert b"Pause polling" in page.content
    client.post(reverse("retrieval:mailbox-pause", args=[mailbox.pk]))
    mailbox.refresh_from_db()
    assert mailbox.enabled is False
    page = client.get(reverse("retrieval:mailbox-detail", args=[mailbox.pk]))
    assert b"Resume polling" in page.content and b"Pause polling" not in page.content
    client.post(reverse("retrieval:mailbox-resume", args=[mailbox.pk]))
    mailbox.refresh_from_db()
    assert mailbox.enabled is True and mailbox.next_poll_at is not None


def test_poll_now_is_followed_from_queued_to_running_to_done(
    alice, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    user, client = alice
    mailbox = make_mailbox(user)
    older = _run(mailbox)
    queued: list[int] = []
    monkeypatch.setattr(
        "retrieval.tasks.poll_mailbox.delay", lambda pk, why: queued.append(pk)
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("retrieval:mailbox-poll", args=[mailbox.pk]))
    assert queued == [mailbox.pk]
    assert response["Location"].endswith(f"?after={older.pk}")
    page = client.get(response["Location"]).content.decode()
    status = reverse("retrieval:mailbox-poll-status", args=[mailbox.pk])
    assert f'data-status-url="{status}?after={older.pk}"' in page
    assert "js/poll-status.js" in page

    part = client.get(status, {"after": older.pk})
    assert part["Cache-Control"] == "no-store"
    assert b"Poll queued" in part.content and b'data-done="false"' in part.content

    run = PollRun.objects.create(mailbox=mailbox, outcome=PollRun.Outcome.RUNNING)
    part = client.get(status, {"after": older.pk}).content.decode()
    assert "Poll running: starting…" in part and 'data-done="false"' in part
    # What the worker's poll tells (services/progress.py), as the page reads it.
    CachedProgress("run", run.pk)("messages", done=3, total=10, folder="INBOX")
    part = client.get(status, {"after": older.pk}).content.decode()
    assert "Poll running: Logged in; 3 of 10 messages in INBOX done." in part

    run.outcome = PollRun.Outcome.ERROR
    run.exit_code = 3
    run.error = "Wrong user name or password (the server said: no)."
    run.finished_at = timezone.now()
    run.save()
    part = client.get(status, {"after": older.pk}).content.decode()
    assert 'data-done="true"' in part and "Poll finished" in part
    assert "explain-wrong-password" in part


def test_mailbox_page_explains_the_last_failure(alice) -> None:
    user, client = alice
    mailbox = make_mailbox(user)
    _run(
        mailbox,
        outcome=PollRun.Outcome.ERROR,
        exit_code=2,
        error="The server's certificate could not be verified: self-signed "
        "certificate.",
    )
    page = client.get(reverse("retrieval:mailbox-detail", args=[mailbox.pk]))
    assert b"explain-certificate" in page.content
    assert b"give its CA file" in page.content


def test_run_page_shows_timings_tls_login_and_explanation(alice) -> None:
    user, client = alice
    mailbox = make_mailbox(user)
    run = _run(
        mailbox,
        transcript=TRANSCRIPT,
        greeting="* OK Dovecot ready.",
        outcome=PollRun.Outcome.ERROR,
        exit_code=10,
        error="Local delivery is unavailable: Could not connect to the local "
        "listener at 127.0.0.1:25: connection refused. Nothing was deleted from "
        "the server.",
    )
    page = client.get(
        reverse("retrieval:run-detail", args=[mailbox.pk, run.pk])
    ).content.decode()
    assert "1 min 15 s" in page
    assert "TLSv1.3, cipher TLS_AES_256_GCM_SHA384" in page
    assert "SASL PLAIN" in page and "SASL LOGIN" not in page  # the listener's
    assert "explain-listener-down" in page
    assert "<mark>* OK Dovecot ready.</mark>" in page
    assert "<details" not in page  # short: not folded
    download = reverse("retrieval:run-transcript", args=[mailbox.pk, run.pk])
    assert download in page


def test_run_page_says_when_nothing_is_recorded_and_folds_long(alice) -> None:
    user, client = alice
    mailbox = make_mailbox(user)
    run = _run(mailbox, transcript="\n".join(f"S: line {i}" for i in range(100)))
    page = client.get(
        reverse("retrieval:run-detail", args=[mailbox.pk, run.pk])
    ).content.decode()
    assert "no TLS recorded in the transcript" in page
    assert "no login recorded in the transcript" in page
    assert '<details class="transcript-fold">' in page


def test_transcript_download_is_an_attachment(alice) -> None:
    user, client = alice
    mailbox = make_mailbox(user)
    run = _run(mailbox, transcript=TRANSCRIPT)
    response = client.get(
        reverse("retrieval:run-transcript", args=[mailbox.pk, run.pk])
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment;")
    assert response.content.decode() == TRANSCRIPT + "\n"


def test_transcript_download_hides_commands_from_non_superusers() -> None:
    owner = make_user("alice@example.org")
    root = make_user("root@example.net", superuser=True)
    mailbox = make_mailbox(owner)
    mailbox.options = {"user": {"mda": "/usr/bin/procmail -d %T"}}
    mailbox.save(update_fields=["options"])
    run = _run(
        mailbox,
        transcript="*: MDA: /usr/bin/procmail -d alice\nS: +OK",
    )
    url = reverse("retrieval:run-transcript", args=[mailbox.pk, run.pk])
    client = Client()
    client.force_login(owner)
    text = client.get(url).content.decode()
    assert "procmail" not in text and "shown to superusers only" in text
    client.force_login(root)
    assert "procmail" in client.get(url).content.decode()


def test_connection_test_page_explains_a_failure(alice) -> None:
    user, client = alice
    mailbox = make_mailbox(user)
    probe = ConnectionTest.objects.create(
        mailbox=mailbox,
        requested_by=user,
        status=ConnectionTest.Status.DONE,
        ok=False,
        error="The name imap.example.invalid could not be resolved "
        "([Errno -2] Name or service not known).",
        finished_at=timezone.now(),
    )
    for name in ("retrieval:connection-test", "retrieval:connection-test-status"):
        page = client.get(reverse(name, args=[mailbox.pk, probe.pk])).content.decode()
        assert "explain-host-unknown" in page and "Check the server name" in page
    probe.ok = True
    probe.error = ""
    probe.save()
    page = client.get(reverse("retrieval:connection-test", args=[mailbox.pk, probe.pk]))
    assert b"explanation" not in page.content
