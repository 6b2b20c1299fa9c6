"""Issue 11 in Chromium: the add form's owner, and the connection test's status."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from retrieval.models import Mailbox
from tests.browser.test_admin_pages import _log_in
from tests.factories import make_domain, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


class AddOwnerTests:
    def test_a_domain_administrators_new_mailbox_is_theirs_unless_they_choose(
        self, page, live_server
    ):
        domain = make_domain("example.org")
        # aaron comes first in the Owner list: what the browser chose before.
        make_user("aaron@example.org", domain=domain)
        bob = make_user("bob@example.org", domain=domain)
        domain.admins.add(bob)
        _log_in(page, live_server, "bob@example.org")
        page.goto(f"{live_server.url}/mailboxes/new/")
        expect(page.locator("#id_owner")).to_have_value(str(bob.pk))
        page.get_by_label("Name", exact=True).fill("bobs")
        page.get_by_label("Host", exact=True).fill("1.1.1.1")
        page.get_by_label("User name").fill("bob")
        page.get_by_label("Password", exact=True).fill("remote-Secret-42")
        page.get_by_role("button", name="Add the mailbox").click()

        expect(page.get_by_role("heading", name="bobs")).to_be_visible()
        assert Mailbox.objects.get(name="bobs").owner == bob
