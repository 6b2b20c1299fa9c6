"""Issue 13 in Chromium: "Poll now" followed without a reload, from queued to
running to the result and its explanation, under the CSP."""

from __future__ import annotations

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from retrieval.models import MessageResult, PollRun
from retrieval.tasks import poll_mailbox
from tests.browser.test_admin_pages import _log_in
from tests.factories import make_domain, make_mailbox, make_user

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
    MessageResult.objects.create(run=run, uid="1", status="delivered")
    MessageResult.objects.create(run=run, uid="2", status="delivered")
    expect(status).to_contain_text("Poll running: 2 messages so far")

    run.outcome = PollRun.Outcome.ERROR
    run.exit_code = 3
    run.error = "Wrong user name or password (the server said: no)."
    run.finished_at = timezone.now()
    run.save()
    expect(status).to_contain_text("Poll finished: Failed")
    expect(status.locator(".explanation")).to_contain_text("app password")
    assert page.url == url  # no reload, no navigation
    assert csp_violations == []
