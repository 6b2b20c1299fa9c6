"""Issue 13 items 1 and 2 in Chromium, as a domain administrator: the dashboard
(its live "polls running now" panel refreshed by htmx, under the CSP) and the
mailbox list (search, the exact time on hover, a bulk pause). Saves the two
screenshots of docs/screenshots/."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from retrieval import services
from retrieval.engine.report import ExitCode
from retrieval.models import Mailbox, PollRun
from retrieval.services import stats
from tests.browser.test_admin_pages import _log_in
from tests.factories import make_domain, make_mailbox, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _world() -> dict[str, Mailbox]:
    admin = make_user("admin@tenant.example", full_name="Dana Admin")
    domain = make_domain("tenant.example", admins=(admin,))
    other = make_domain("elsewhere.example")
    ann = make_user("ann@tenant.example", domain=domain)
    ben = make_user("ben@tenant.example", domain=domain)
    stranger = make_user("zed@elsewhere.example", domain=other)
    now = timezone.now()
    boxes = {
        "sales": make_mailbox(
            ann,
            name="Sales inbox",
            host="imap.provider.example",
            username="sales",
            domain=domain,
        ),
        "support": make_mailbox(
            ann,
            name="Support",
            host="pop.provider.example",
            username="support",
            domain=domain,
            protocol=Mailbox.Protocol.POP3,
        ),
        "ben": make_mailbox(
            ben,
            name="Ben's old account",
            host="mail.isp.example",
            username="ben.k",
            domain=domain,
        ),
        "archive": make_mailbox(
            ben,
            name="Archive",
            host="imap.isp.example",
            username="archive",
            domain=domain,
            enabled=False,
        ),
        "new": make_mailbox(
            ann,
            name="Newsletter",
            host="imap.lists.example",
            username="news",
            domain=domain,
        ),
        "foreign": make_mailbox(
            stranger,
            name="FOREIGN-MARKER",
            domain=other,
            host="imap.foreign-marker.example",
        ),
    }
    outcomes = {
        "sales": (PollRun.Outcome.SUCCESS, ExitCode.SUCCESS, ""),
        "support": (
            PollRun.Outcome.ERROR,
            ExitCode.AUTHFAIL,
            "The server refused the password for support (-ERR [AUTH] "
            "Authentication failed).",
        ),
        "ben": (PollRun.Outcome.NOMAIL, ExitCode.NOMAIL, ""),
        "archive": (PollRun.Outcome.SUCCESS, ExitCode.SUCCESS, ""),
        "foreign": (PollRun.Outcome.ERROR, ExitCode.SOCKET, "FOREIGN-ERROR-MARKER"),
    }
    for key, (outcome, code, error) in outcomes.items():
        PollRun.objects.create(
            mailbox=boxes[key],
            outcome=outcome,
            exit_code=code,
            error=error,
            started_at=now - timedelta(minutes=3),
            finished_at=now - timedelta(minutes=3),
        )
    # Each mailbox's last run on its row, as recording the runs leaves it.
    services.latest_run_refresh(mailboxes=[box.pk for box in boxes.values()])
    # A day of traffic in the counters, as recorded runs would leave it.
    for hour in range(24):
        moment = now - timedelta(hours=hour)
        stats.stats_record(
            mailbox_id=boxes["sales"].pk,
            moment=moment,
            messages=(hour * 7) % 13,
            size=40_000,
        )
        stats.stats_record(
            mailbox_id=boxes["support"].pk,
            moment=moment,
            errors=1 if hour % 5 == 0 else 0,
        )
        stats.stats_record(mailbox_id=boxes["foreign"].pk, moment=moment, messages=500)
    return boxes


def test_a_domain_administrator_s_dashboard_and_mailbox_list(
    page, live_server, csp_violations
):
    boxes = _world()
    page.set_viewport_size({"width": 1280, "height": 1000})
    _log_in(page, live_server, "admin@tenant.example")
    page.wait_for_url(f"{live_server.url}/")

    # The dashboard: the domain's states, never the other domain's.
    expect(page.locator('[data-state="ok"] .count')).to_have_text("2")
    expect(page.locator('[data-state="failing"] .count')).to_have_text("1")
    expect(page.locator('[data-state="disabled"] .count')).to_have_text("1")
    expect(page.locator('[data-state="never"] .count')).to_have_text("1")
    expect(
        page.get_by_text("The server refused the user name or password")
    ).to_be_visible()
    assert page.locator("svg rect.bar-messages").count() == 24
    content = page.content()
    assert "FOREIGN" not in content and "elsewhere.example" not in content
    assert "500" not in page.locator("#traffic-h + nav + p").inner_text()

    # A poll starts: the live panel shows it without a reload (htmx).
    expect(page.locator("#running")).to_contain_text("No poll is running")
    PollRun.objects.create(mailbox=boxes["sales"])
    PollRun.objects.create(mailbox=boxes["foreign"])
    # Waits for the next refresh (every 5 s); the bound is only how long to wait.
    expect(page.locator("#running")).to_contain_text("Sales inbox", timeout=30_000)
    expect(page.locator("#running")).not_to_contain_text("FOREIGN")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)

    # The list: the domain's five, the exact time on hover, a search.
    page.get_by_role("link", name="All mailboxes").click()
    rows = page.locator("table.mailboxes tbody tr")
    expect(rows).to_have_count(5)
    checked = page.locator(
        f'tr[data-mailbox="{boxes["sales"].pk}"] td span[title]'
    ).first
    expect(checked).to_have_text("3\xa0minutes ago")
    assert "(UTC)" in (checked.get_attribute("title") or "")
    page.screenshot(path=str(SCREENSHOTS / "mailbox-list.png"), full_page=True)

    page.get_by_label("Search").fill("provider")
    page.get_by_role("button", name="Show").click()
    expect(rows).to_have_count(2)

    # Bulk pause of the ticked one, back on the same search.
    page.get_by_label("Select Support").check()
    page.get_by_label("With the ticked mailboxes:").select_option("pause")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_text("1 mailbox(es) paused.")).to_be_visible()
    expect(rows).to_have_count(2)
    expect(page.locator(f'tr[data-mailbox="{boxes["support"].pk}"]')).to_have_class(
        "state-disabled"
    )
    assert not Mailbox.objects.get(pk=boxes["support"].pk).enabled
    assert Mailbox.objects.get(pk=boxes["sales"].pk).enabled
    assert csp_violations == []
