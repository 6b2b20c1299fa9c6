"""Issue 13 item 4 in Chromium: a domain administrator adds a mailbox from a
provider preset (the select fills the server settings at once, under the CSP;
without JavaScript its "Fill in" button does the same), then sets the mailbox up
for a whole domain in the multidrop editor. Saves docs/screenshots/
mailbox-form.png and multidrop-editor.png."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect

from retrieval import services
from retrieval.models import Mailbox
from tests.browser.test_admin_pages import _log_in
from tests.factories import make_domain, make_user

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _csp_violations(page) -> list[str]:
    seen: list[str] = []
    page.on(
        "console",
        lambda msg: (
            seen.append(msg.text) if "Content Security Policy" in msg.text else None
        ),
    )
    return seen


def test_add_a_mailbox_from_a_preset_then_edit_its_multidrop(
    page, live_server, settings
):
    settings.FETCH_ALLOW_PRIVATE_HOSTS = True  # no DNS for imap.gmail.com here
    dana = make_user("dana@tenant.example")
    domain = make_domain("tenant.example", admins=(dana,))
    ann = make_user("ann@tenant.example", domain=domain)
    violations = _csp_violations(page)
    _log_in(page, live_server, dana.email)

    page.goto(f"{live_server.url}/mailboxes/new/")
    expect(page.locator("#preset-fill")).to_be_hidden()  # the script fills at once
    page.select_option("#preset", "gmail-imap")
    expect(page.locator("#id_host")).to_have_value("imap.gmail.com")
    expect(page.locator("#id_port")).to_have_value("993")
    expect(page.locator("#id_protocol")).to_have_value("imap")
    expect(page.locator("#id_tls_mode")).to_have_value("implicit")
    expect(page.locator("#preset-note")).to_contain_text("app password")
    page.select_option("#id_owner", str(ann.pk))
    page.fill("#id_name", "Ann's Gmail")
    page.fill("#id_username", "ann.tenant@gmail.com")
    page.fill("#id_new_password", "an-app-password")
    expect(page.locator("details.advanced")).not_to_have_attribute("open", "")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "mailbox-form.png"), full_page=True)
    page.get_by_role("button", name="Add the mailbox").click()
    expect(page.locator(".messages")).to_contain_text("was added")
    mailbox = Mailbox.objects.get(name="Ann's Gmail")
    assert (mailbox.host, mailbox.port, mailbox.tls_mode, mailbox.owner) == (
        "imap.gmail.com",
        993,
        "implicit",
        ann,
    )
    assert mailbox.get_password() == "an-app-password"

    page.get_by_role("link", name="Multidrop settings").click()
    page.fill("#id_envelope", "X-Original-To")
    page.fill("#id_qvirtual", "catchall+")
    page.fill("#id_aka", "tenant.example")
    page.fill("#id_smtpaddress", "tenant.example")
    page.fill("#id_postmaster", "postmaster")
    page.fill("#id_rules", "ann\nbenjamin -> ben\n*")
    page.screenshot(path=str(SCREENSHOTS / "multidrop-editor.png"), full_page=True)
    page.get_by_role("button", name="Save the multidrop settings").click()
    expect(page.locator(".messages")).to_contain_text("multidrop settings were saved")
    mailbox.refresh_from_db()
    assert services.multidrop_of(mailbox=mailbox) == services.Multidrop(
        envelope="X-Original-To",
        aka=("tenant.example",),
        qvirtual="catchall+",
        smtpaddress="tenant.example",
        postmaster="postmaster",
        rules=(("ann", ""), ("benjamin", "ben"), ("*", "")),
    )

    # A value out of the domain is refused in words on the page.
    page.get_by_role("link", name="Multidrop settings").click()
    page.fill("#id_localdomains", "elsewhere.example")
    page.get_by_role("button", name="Save the multidrop settings").click()
    expect(page.locator("#multidrop-form")).to_contain_text(
        "elsewhere.example is not this mailbox's domain (tenant.example)"
    )
    assert violations == []


@contextlib.contextmanager
def new_mailbox_page_without_script(browser, live_server) -> Iterator[Any]:
    """The "Add a mailbox" page of a fresh user, in a browser without JavaScript."""
    make_user("solo@example.org")
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        _log_in(page, live_server, "solo@example.org")
        page.goto(f"{live_server.url}/mailboxes/new/")
        yield page
    finally:
        context.close()


def test_without_javascript_fill_in_reloads_with_the_preset(
    browser, live_server, settings
):
    with new_mailbox_page_without_script(browser, live_server) as page:
        page.select_option("#preset", "fastmail-pop3")
        page.get_by_role("button", name="Fill in", exact=True).click()
        expect(page.locator("#id_host")).to_have_value("pop.fastmail.com")
        expect(page.locator("#id_port")).to_have_value("995")
        expect(page.locator("#id_protocol")).to_have_value("pop3")
        expect(page.locator("#preset-note")).to_contain_text("Fastmail")
        assert "preset=fastmail-pop3" in page.url
