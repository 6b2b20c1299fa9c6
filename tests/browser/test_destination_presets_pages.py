"""Presets on both sides (issue 16) in Chromium: a person picks Gmail as the
source and Microsoft 365 under "Where messages go"; the script fills both sides
at once under the CSP, the destination's login becomes XOAUTH2 (Microsoft is
configured), no destination password is asked for, and the saved mailbox's page
offers "Connect a Microsoft account to deliver into"."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from retrieval.models import Mailbox
from tests.browser.test_admin_pages import _log_in
from tests.browser.test_mailbox_form_pages import (
    _csp_violations,
    new_mailbox_page_without_script,
)
from tests.factories import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_both_selects_fill_their_side_and_the_page_offers_the_destination_connect(
    page, live_server, settings
):
    settings.FETCH_ALLOW_PRIVATE_HOSTS = True  # no DNS for the providers here
    settings.FETCH_OAUTH_PROVIDERS = {
        "microsoft": {
            "label": "Microsoft",
            "client_id": "fetchweb-test",
            "authorize_url": "https://login.example.com/authorize",
            "token_url": "https://login.example.com/token",
            "scopes": ["offline_access"],
        }
    }
    ann = make_user("ann@example.org")
    violations = _csp_violations(page)
    _log_in(page, live_server, ann.email)

    page.goto(f"{live_server.url}/mailboxes/new/")
    expect(page.locator("#destination-preset-fill")).to_be_hidden()
    page.select_option("#preset", "gmail-pop3")
    page.select_option("#destination-preset", "microsoft")
    expect(page.locator("#id_host")).to_have_value("pop.gmail.com")
    expect(page.locator("#id_delivery_kind")).to_have_value("imap")
    expect(page.locator("#id_destination_host")).to_have_value("outlook.office365.com")
    expect(page.locator("#id_destination_port")).to_have_value("993")
    expect(page.locator("#id_destination_tls_mode")).to_have_value("implicit")
    expect(page.locator("#id_destination_auth")).to_have_value("xoauth2")
    expect(page.locator("#destination-preset-note")).to_contain_text(
        "Connect a Microsoft account"
    )
    page.fill("#id_username", "old.account@gmail.com")
    page.fill("#id_new_password", "an-app-password")
    page.fill("#id_destination_username", "ann@contoso.example")
    page.get_by_role("button", name="Add the mailbox").click()
    expect(page.locator(".messages")).to_contain_text("was added")

    mailbox = Mailbox.objects.get(username="old.account@gmail.com")
    assert (mailbox.destination_host, mailbox.destination_auth) == (
        "outlook.office365.com",
        "xoauth2",
    )
    assert not mailbox.destination_password_encrypted
    expect(page.locator("#oauth-destination-state")).to_contain_text("Not connected")
    expect(
        page.get_by_role("button", name="Connect a Microsoft account to deliver into")
    ).to_be_visible()
    assert violations == []


def test_without_javascript_fill_in_where_messages_go_reloads_with_the_preset(
    browser, live_server
):
    with new_mailbox_page_without_script(browser, live_server) as page:
        page.select_option("#preset", "gmx-imap")
        page.select_option("#destination-preset", "gmail")
        page.get_by_role("button", name="Fill in where messages go").click()
        # One GET form: both sides come back filled.
        expect(page.locator("#id_host")).to_have_value("imap.gmx.net")
        expect(page.locator("#id_delivery_kind")).to_have_value("imap")
        expect(page.locator("#id_destination_host")).to_have_value("imap.gmail.com")
        expect(page.locator("#id_destination_port")).to_have_value("993")
        expect(page.locator("#destination-preset-note")).to_contain_text("Gmail")
        assert "destination_preset=gmail" in page.url
