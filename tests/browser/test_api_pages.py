"""Issue 15 item 1 in Chromium: the token page, and the API docs page under a
Content-Security-Policy that allows no inline script or style."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from accounts.models import ApiToken
from tests.browser.test_admin_pages import _log_in
from tests.factories import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class ApiPagesTests:
    def test_a_token_is_made_shown_once_and_revoked(self, page, live_server):
        make_user("anna@example.org")
        _log_in(page, live_server, "anna@example.org")
        page.get_by_role("link", name="API tokens").click()
        page.get_by_label("Name").fill("backup script")
        page.get_by_role("button", name="Make a token").click()
        shown = page.locator("#new-token").inner_text()
        assert shown.startswith("fw_")
        token = ApiToken.objects.get(name="backup script")
        assert token.prefix in shown
        page.goto(f"{live_server.url}/account/tokens/")
        expect(page.locator("#new-token")).to_have_count(0)
        page.get_by_role("button", name="Revoke").click()
        expect(page.get_by_text("The token was revoked.")).to_be_visible()
        token.refresh_from_db()
        assert token.revoked_at is not None

    def test_the_docs_page_works_under_a_strict_csp(self, page, live_server):
        refused: list[str] = []
        page.on(
            "console",
            lambda m: (
                refused.append(m.text)
                if "Content Security Policy" in m.text or "Refused to" in m.text
                else None
            ),
        )

        def with_csp(route):
            response = route.fetch()
            route.fulfill(
                response=response,
                headers={**response.headers, "content-security-policy": CSP},
            )

        page.route("**/api/v1/**", with_csp)
        page.route("**/static/**", with_csp)
        page.goto(f"{live_server.url}/api/v1/docs/")
        expect(page.locator(".opblock").first).to_be_visible()
        assert page.locator(".opblock").count() > 20
        expect(page.get_by_text("/api/v1/mailboxes/{pk}/poll/")).to_be_visible()
        assert refused == []
