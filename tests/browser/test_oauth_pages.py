"""Issue 16 item 1 in Chromium: "Connect" on the mailbox page, the provider's
consent page (the local authorization server), the callback, then a poll of the
OAuth2 Dovecot that logs in with the token and delivers."""

from __future__ import annotations

import secrets

import pytest
from playwright.sync_api import expect

from retrieval import services
from retrieval.models import Mailbox, OAuthGrant
from retrieval.tasks import poll_mailbox
from tests.browser.test_admin_pages import _log_in
from tests.factories import make_domain, make_mailbox, make_user

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    # live_server serves from other threads.
    pytest.mark.usefixtures("concurrent_db"),
]

MESSAGE = (
    b"From: sender@example.net\r\nTo: alice@example.org\r\n"
    b"Subject: after consent\r\nMessage-ID: <consent-1@example.net>\r\n\r\nHello.\r\n"
)


def test_a_user_connects_an_account_and_the_poll_delivers(
    page,
    live_server,
    settings,
    monkeypatch,
    oauth_server,
    oauth_dovecot,
    smtp_listener,
):
    settings.FETCH_OAUTH_PROVIDERS = {"generic": oauth_server.provider()}
    settings.FETCH_BASE_URL = live_server.url
    settings.FETCH_ALLOW_PRIVATE_HOSTS = True
    monkeypatch.setattr(
        poll_mailbox,
        "delay",
        lambda pk, trigger: services.mailbox_poll(mailbox_id=pk, trigger=trigger),
    )
    remote = f"consent{secrets.token_hex(4)}"
    oauth_dovecot.add_user(remote, secrets.token_urlsafe(12))
    oauth_dovecot.put(remote, MESSAGE)
    alice = make_user("alice@example.org", domain=make_domain("example.org"))
    mailbox = make_mailbox(
        alice,
        name="work-mail",
        protocol="imap",
        host=oauth_dovecot.host,
        port=oauth_dovecot.imaps_port,
        tls_mode="implicit",
        ca_file=oauth_dovecot.ca_file,
        username=remote,
        auth="any",
        delivery_host="127.0.0.1",
        delivery_port=smtp_listener.port,
    )
    _log_in(page, live_server, "alice@example.org")
    page.goto(f"{live_server.url}/mailboxes/{mailbox.pk}/")
    expect(page.locator("#oauth-state")).to_contain_text("Not connected")

    page.get_by_role("button", name="Connect a Test provider account").click()
    # The provider's own page, on its own origin.
    expect(page.get_by_role("heading", name="Test provider")).to_be_visible()
    assert page.url.startswith(f"{oauth_server.url}/authorize?")
    expect(page.get_by_label("Account")).to_have_value(remote)  # login_hint
    page.get_by_role("button", name="Allow").click()

    # Back on fetchweb, connected.
    expect(page.get_by_role("heading", name="work-mail")).to_be_visible()
    expect(page.locator(".messages")).to_contain_text("Account connected")
    expect(page.locator("#oauth-state")).to_contain_text("Connected to Test provider")
    grant = OAuthGrant.objects.get(mailbox=mailbox)
    assert grant.get_access_token() not in page.content()
    assert grant.get_refresh_token() not in page.content()
    mailbox.refresh_from_db()
    assert mailbox.auth == Mailbox.Auth.XOAUTH2

    page.get_by_role("button", name="Poll now").click()
    expect(page.locator(".messages")).to_contain_text("A poll was queued")
    page.locator("table a").first.click()
    assert "Mail delivered" in page.locator("dl.summary").inner_text()
    (received,) = smtp_listener.messages
    assert received.data.endswith(MESSAGE)
    assert oauth_dovecot.messages(remote) == []
