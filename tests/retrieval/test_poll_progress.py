"""Issue 13 item 3: Poll now and Test connection followed step by step.

A real poll of the suite's Dovecot (POP3 over TLS, ten messages) stops mid-way
because the listener holds the fourth message after its final dot; the status
fragment then says, for each role that may see the mailbox, how far it came. The
listener lets go, and the same fragment gives the result. No sleeps, no timing."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from retrieval import services
from retrieval.engine import progress as engine_progress
from retrieval.models import ConnectionTest, PollRun
from retrieval.services.progress import CachedProgress
from tests.factories import (
    make_domain,
    make_dovecot_mailbox,
    make_mailbox,
    make_user,
)

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _message(n: int) -> bytes:
    return (
        f"Message-ID: <p{n}@example.org>\r\nSubject: {n}\r\n\r\nbody {n}\r\n".encode()
    )


@pytest.fixture
def people():
    domain = make_domain("example.org")
    alice = make_user("alice@example.org", domain=domain)
    admin = make_user("admin@example.org", domain=domain)
    domain.admins.add(admin)
    root = make_user("root@example.net", superuser=True)
    return domain, {"user": alice, "domain admin": admin, "superuser": root}


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def poll_in_background(mailbox_id: int, trigger: str = "manual") -> threading.Thread:
    """The worker's poll, on a thread of this process (it shares the cache)."""

    def run() -> None:
        try:
            services.mailbox_poll(mailbox_id=mailbox_id, trigger=trigger)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_the_fragment_shows_each_role_how_far_the_poll_came_then_the_result(
    people, dovecot, mailuser, smtp_listener, monkeypatch, settings
):
    settings.FETCH_ALLOW_PRIVATE_HOSTS = True
    monkeypatch.setattr(engine_progress, "EVERY", 0.0)  # every count is told
    domain, roles = people
    for n in range(1, 11):
        dovecot.put(mailuser.name, _message(n))
    mailbox = make_dovecot_mailbox(
        roles["user"],
        dovecot,
        mailuser,
        smtp_listener,
        domain=domain,
        protocol="pop3",
        port=dovecot.pop3s_port,
    )
    status = reverse("retrieval:mailbox-poll-status", args=[mailbox.pk])
    smtp_listener.hold_after(3)
    thread = poll_in_background(mailbox.pk)
    try:
        smtp_listener.wait_held()
        for role, user in roles.items():
            part = _client(user).get(status, {"after": 0}).content.decode()
            assert 'data-done="false"' in part, role
            assert "Poll running: Logged in; 3 of 10 messages in INBOX done." in part, (
                role
            )
    finally:
        smtp_listener.release()
        thread.join(timeout=60)
    assert not thread.is_alive()
    run = PollRun.objects.get(mailbox=mailbox)
    assert run.delivered == 10, run.error
    for role, user in roles.items():
        part = _client(user).get(status, {"after": 0}).content.decode()
        assert 'data-done="true"' in part, role
        assert "Poll finished: Mail delivered; 10 fetched, 10 delivered." in part
        assert "Logged in" not in part  # the progress line went with the run


def test_someone_outside_the_domain_sees_no_progress(people, settings):
    domain, roles = people
    mailbox = make_mailbox(roles["user"], domain=domain)
    run = PollRun.objects.create(mailbox=mailbox, outcome=PollRun.Outcome.RUNNING)
    CachedProgress("run", run.pk)("logged_in")
    stranger = make_user("eve@elsewhere.example")
    status = reverse("retrieval:mailbox-poll-status", args=[mailbox.pk])
    response = _client(stranger).get(status, {"after": 0})
    assert response.status_code == 404
    assert b"Logged in" not in response.content


@pytest.mark.parametrize(
    ("step", "words"),
    [
        ("connecting", "Connecting to imap.example.org…"),
        ("connected", "Connected to imap.example.org; logging in…"),
        ("tls", "TLS established; logging in…"),
        ("logged_in", "Logged in."),
        ("logging_out", "Logging out…"),
    ],
)
def test_a_running_connection_test_shows_its_step_in_words(people, step, words):
    domain, roles = people
    mailbox = make_mailbox(roles["user"], domain=domain, host="imap.example.org")
    probe = ConnectionTest.objects.create(
        mailbox=mailbox,
        requested_by=roles["user"],
        status=ConnectionTest.Status.RUNNING,
    )
    CachedProgress("test", probe.pk)(step)
    status = reverse("retrieval:connection-test-status", args=[mailbox.pk, probe.pk])
    for role, user in roles.items():
        part = _client(user).get(status).content.decode()
        assert words in part and 'data-done="false"' in part, role


@pytest.mark.parametrize("backend", ["redis", "files"])
def test_the_step_crosses_processes_through_the_configured_cache(
    backend, settings, request, tmp_path
):
    """Workers and web processes share the step through the settings' cache:
    Redis (several hosts) or files (the single-host default); a fresh cache
    object, as another process would have, reads what the writer stored."""
    from django.core.cache import caches

    if backend == "redis":
        location = request.getfixturevalue("redis_url")
        engine = "django.core.cache.backends.redis.RedisCache"
    else:
        location = str(tmp_path / "cache")
        engine = "django.core.cache.backends.filebased.FileBasedCache"
    settings.CACHES = {"default": {"BACKEND": engine, "LOCATION": location}}
    CachedProgress("run", 424242)("messages", done=3, total=10, folder="INBOX")
    # Another process's cache object, made from the same settings, sees it.
    other = caches.create_connection("default")
    assert other.get("fetchweb:progress:run:424242")["done"] == 3
    assert services.progress_text(kind="run", pk=424242, host="h") == (
        "Logged in; 3 of 10 messages in INBOX done."
    )
    CachedProgress("run", 424242).clear()
    assert services.progress_text(kind="run", pk=424242, host="h") == ""
