"""The pages work under the Content-Security-Policy (issue 11, item 10): Chromium
reports no violation, and the admin's own scripts still run."""

from __future__ import annotations

import pytest

from tests.factories import make_domain, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery"


def test_no_page_violates_the_policy(page, live_server, csp_violations):
    make_user("root@example.org", superuser=True)
    make_domain("example.org")
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e =>"
        " console.error('Content Security Policy violation: ' + e.violatedDirective"
        " + ' ' + e.blockedURI));"
    )
    response = page.goto(f"{live_server.url}/login/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.fill("#id_username", "root@example.org")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    for path in (
        "/",
        "/mailboxes/",
        "/mailboxes/new/",
        "/admin/",
        "/admin/accounts/domain/add/",
        "/admin/accounts/user/",
        "/admin/retrieval/mailbox/add/",
        "/admin/accounts/auditevent/",
        "/people/",
        "/people/invite/",
        "/domains/",
        "/domains/new/",
        "/delivery-targets/",
        "/audit/",
        "/account/time-zone/",
    ):
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("load")
    # The admin's scripts ran: the two-box widget of Domain.admins was built.
    page.goto(f"{live_server.url}/admin/accounts/domain/add/")
    assert page.locator("#id_admins_from").count() == 1
    assert csp_violations == []
