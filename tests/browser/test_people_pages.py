"""Issue 13 item 6 in Chromium: a domain administrator invites someone, who opens
the mailed link, chooses a password and signs in; the administrator is confined
to their domain. Screenshots of the people, domain and audit pages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core import mail
from playwright.sync_api import expect

from accounts.models import DeliveryTarget, User
from retrieval import services
from tests.browser.test_admin_pages import _log_in
from tests.factories import make_domain, make_mailbox, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CHOSEN = "Invitee-Chose-This-42"


def test_an_invited_person_sets_a_password_and_signs_in(
    page, browser, live_server, csp_violations
):
    one = make_domain("one.example")
    two = make_domain("two.example")
    admin = make_user("admin@one.example", domain=one, full_name="Ada Admin")
    one.admins.add(admin)
    make_user("alice@one.example", domain=one, full_name="Alice")
    bob = make_user("bob@two.example", domain=two, full_name="Bob")
    make_mailbox(bob, domain=two, name="BOB-BOX", host="1.1.1.1")

    _log_in(page, live_server, "admin@one.example")
    page.get_by_role("link", name="People").click()
    rows = page.locator("table.people tbody tr")
    expect(rows).to_have_count(2)  # alice and the administrator, not bob
    expect(page.locator("table.people")).not_to_contain_text("bob@two.example")

    page.get_by_role("link", name="Invite someone").click()
    page.fill("#id_email", "newcomer@one.example")
    page.fill("#id_full_name", "New Comer")
    # Their only domain is the only choice.
    assert page.locator("#id_domain option").all_inner_texts() == ["one.example"]
    page.get_by_role("button", name="Send the invitation").click()
    expect(page.locator(".messages")).to_contain_text("An invitation was mailed")
    expect(page.locator("#person-state")).to_contain_text("invited")

    assert [m.to for m in mail.outbox] == [["newcomer@one.example"]]
    link = re.search(r"https?://\S+/account/reset/\S+/", str(mail.outbox[0].body))
    assert link, mail.outbox[0].body
    assert link.group(0).startswith(live_server.url)

    # The invitee, in their own browser, opens the link.
    invitee = browser.new_context().new_page()
    invitee.set_default_timeout(15_000)
    invitee.goto(link.group(0))
    invitee.fill("#id_new_password1", CHOSEN)
    invitee.fill("#id_new_password2", CHOSEN)
    invitee.get_by_role("button").filter(has_text=re.compile("password", re.I)).click()
    expect(invitee.get_by_role("heading", name="Password set")).to_be_visible()
    invitee.get_by_role("link", name="Log in").click()
    invitee.fill("#id_username", "newcomer@one.example")
    invitee.fill("#id_password", CHOSEN)
    invitee.click("button[type=submit]")
    expect(invitee.locator("header nav")).to_contain_text("newcomer@one.example")
    # No people pages for them: they administer nothing.
    expect(invitee.get_by_role("link", name="People")).to_have_count(0)
    # The link worked once.
    invitee.goto(link.group(0))
    expect(invitee.locator("main")).to_contain_text("it has been used already")
    invitee.context.close()

    # Someone invited who has not chosen a password yet: their row offers to
    # send the invitation again (in the screenshot), and it goes.
    page.goto(f"{live_server.url}/people/invite/")
    page.fill("#id_email", "later@one.example")
    page.fill("#id_full_name", "Not Yet")
    page.get_by_role("button", name="Send the invitation").click()
    expect(page.locator(".messages")).to_contain_text("An invitation was mailed")

    # Confined: another domain's person is not there, by list or by id.
    page.goto(f"{live_server.url}/people/")
    expect(rows).to_have_count(4)
    resend = rows.filter(has_text="later@one.example").get_by_role(
        "button", name="Resend invitation"
    )
    expect(resend).to_have_count(1)
    # Only for them: the others have chosen their password.
    expect(page.get_by_role("button", name="Resend invitation")).to_have_count(1)
    page.screenshot(path=str(SCREENSHOTS / "people.png"), full_page=True)
    resend.click()
    expect(page.locator(".messages")).to_contain_text("mailed again")
    assert [m.to for m in mail.outbox][-2:] == [["later@one.example"]] * 2
    response = page.goto(f"{live_server.url}/people/{bob.pk}/")
    assert response is not None and response.status == 404
    page.goto(f"{live_server.url}/domains/")
    expect(page.locator("table.domains")).to_contain_text("one.example")
    expect(page.locator("table.domains")).not_to_contain_text("two.example")
    page.goto(f"{live_server.url}/domains/{two.pk}/defaults/")
    assert "BOB-BOX" not in page.content()
    assert User.objects.get(email="newcomer@one.example").check_password(CHOSEN)
    assert csp_violations == []


def test_domain_defaults_and_the_superusers_pages(page, browser, live_server):
    """A domain administrator sets their domain's defaults from the superuser's
    list of delivery targets; the superuser sees every domain with its
    administrators and defaults, and the audit log of what was done."""
    make_user("root@operator.example", superuser=True)
    services.delivery_target_save(
        target=DeliveryTarget(
            name="Tenant LMTP", kind="lmtp", host="lmtp.internal", port=24
        )
    )
    for name, admin in (("one.example", "ada"), ("two.example", "ben")):
        domain = make_domain(name)
        domain.admins.add(make_user(f"{admin}@{name}", domain=domain))

    _log_in(page, live_server, "ada@one.example")
    page.get_by_role("link", name="Domains").click()
    page.get_by_role("link", name="Defaults").click()
    page.select_option(
        "#id_default_delivery", label="Tenant LMTP (lmtp lmtp.internal:24)"
    )
    page.fill("#id_default_postmaster", "postmaster@one.example")
    page.fill("#id_default_poll_interval", "600")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".messages")).to_contain_text("were saved")
    page.get_by_role("button", name="Log out").click()

    _log_in(page, live_server, "root@operator.example")
    page.get_by_role("link", name="Domains").click()
    rows = page.locator("table.domains tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("Tenant LMTP")
    expect(rows.first).to_contain_text("ada@one.example")
    expect(rows.nth(1)).to_contain_text("the installation's")
    page.screenshot(path=str(SCREENSHOTS / "domains.png"), full_page=True)
    page.get_by_role("link", name="Audit log").click()
    audit = page.locator("table.audit")
    expect(audit).to_contain_text("default_poll_interval: - -> 600")
    expect(audit).to_contain_text("ada@one.example")
    page.screenshot(path=str(SCREENSHOTS / "audit-log.png"), full_page=True)
