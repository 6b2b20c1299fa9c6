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


class ConnectionTestPageTests:
    def test_the_page_follows_the_test_until_it_is_done(
        self, page, live_server, monkeypatch
    ):
        from retrieval.models import ConnectionTest
        from retrieval.services import probes
        from retrieval.tasks import probe_connection
        from tests.factories import make_mailbox

        # The worker, held back: the test runs the task when the page is waiting.
        queued = []
        monkeypatch.setattr(probe_connection, "delay", queued.append)
        monkeypatch.setattr(
            probes,
            "mailbox_login_check",
            lambda *, mailbox, progress=None: (
                probes.LoginCheck(ok=True, greeting="* OK fake ready", error=""),
                "S: * OK fake ready",
            ),
        )
        alice = make_user("alice@example.org")
        mailbox = make_mailbox(alice, name="alices", host="1.1.1.1")
        _log_in(page, live_server, "alice@example.org")
        page.goto(f"{live_server.url}/mailboxes/{mailbox.pk}/")
        page.get_by_role("button", name="Test connection").click()

        expect(
            page.get_by_role("heading", name="Connection test of alices")
        ).to_be_visible()
        expect(page.locator("#connection-test")).to_contain_text("waiting for a worker")
        assert len(queued) == 1
        probe_connection(queued[0])
        assert ConnectionTest.objects.get().ok is True
        # No reload: static/js/poll-status.js fetches the status part again.
        expect(page.locator("#connection-test")).to_contain_text(
            "Connected and logged in to 1.1.1.1"
        )
        expect(page.locator("pre.greeting")).to_have_text("* OK fake ready")
