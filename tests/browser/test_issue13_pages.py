"""Issue 13 in Chromium: "Poll now" followed without a reload, from queued to
running to the result and its explanation, under the CSP; and a real poll of the
suite's Dovecot, held mid-way by the listener, shown step by step."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from retrieval.engine import progress as engine_progress
from retrieval.models import PollRun
from retrieval.services.progress import CachedProgress
from retrieval.tasks import poll_mailbox
from tests.browser.test_admin_pages import _log_in
from tests.browser.test_console_pages import SCREENSHOTS
from tests.factories import make_domain, make_dovecot_mailbox, make_mailbox, make_user
from tests.retrieval.test_poll_progress import poll_in_background

if TYPE_CHECKING:
    import threading

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_poll_now_shows_progress_live(page, live_server, monkeypatch, csp_violations):
    # No worker: the test plays it, writing the run the page follows.
    monkeypatch.setattr(poll_mailbox, "delay", lambda pk, trigger: None)
    alice = make_user("alice@example.org", domain=make_domain("example.org"))
    mailbox = make_mailbox(alice, name="live-box")
    _log_in(page, live_server, "alice@example.org")
    page.goto(f"{live_server.url}/mailboxes/{mailbox.pk}/")
    page.get_by_role("button", name="Poll now").click()
    status = page.locator("#poll-status")
    expect(status).to_contain_text("waiting for a worker")
    url = page.url

    run = PollRun.objects.create(mailbox=mailbox, outcome=PollRun.Outcome.RUNNING)
    CachedProgress("run", run.pk)("messages", done=2, total=5, folder="INBOX")
    expect(status).to_contain_text("Poll running: Logged in; 2 of 5 messages")

    run.outcome = PollRun.Outcome.ERROR
    run.exit_code = 3
    run.error = "Wrong user name or password (the server said: no)."
    run.finished_at = timezone.now()
    run.save()
    expect(status).to_contain_text("Poll finished: Failed")
    expect(status.locator(".explanation")).to_contain_text("app password")
    assert page.url == url  # no reload, no navigation
    assert csp_violations == []


@pytest.mark.live
def test_poll_now_of_a_real_mailbox_shows_how_far_it_came_then_the_result(
    page, live_server, monkeypatch, settings, dovecot, mailuser, smtp_listener
):
    settings.FETCH_ALLOW_PRIVATE_HOSTS = True
    monkeypatch.setattr(engine_progress, "EVERY", 0.0)  # every count is told
    workers: list[threading.Thread] = []
    monkeypatch.setattr(
        poll_mailbox,
        "delay",
        lambda pk, trigger: workers.append(poll_in_background(pk, trigger)),
    )
    domain = make_domain("example.org")
    alice = make_user("alice@example.org", domain=domain)
    for n in range(1, 11):
        dovecot.put(
            mailuser.name, f"Message-ID: <b{n}@example.org>\r\n\r\nbody\r\n".encode()
        )
    mailbox = make_dovecot_mailbox(
        alice,
        dovecot,
        mailuser,
        smtp_listener,
        domain=domain,
        name="alice at dovecot",
        port=dovecot.imap_port,
        tls_mode="starttls",
    )
    smtp_listener.hold_after(3)
    _log_in(page, live_server, "alice@example.org")
    page.goto(f"{live_server.url}/mailboxes/{mailbox.pk}/")
    page.get_by_role("button", name="Poll now").click()
    url = page.url
    status = page.locator("#poll-status")
    try:
        smtp_listener.wait_held(timeout=30)
        expect(status).to_contain_text(
            "Poll running: Logged in; 3 of 10 messages in INBOX done."
        )
        page.screenshot(path=str(SCREENSHOTS / "poll-progress.png"), full_page=True)
    finally:
        smtp_listener.release()
    expect(status).to_contain_text("Poll finished: Mail delivered")
    expect(status).to_contain_text("10 fetched, 10 delivered")
    assert page.url == url  # no reload, no navigation
    workers[0].join(timeout=60)
    assert len(smtp_listener.messages) == 10
