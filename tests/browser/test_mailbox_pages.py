"""The mailbox pages in Chromium: a refusal in words, and a poll of a real Dovecot."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from retrieval import services
from retrieval.models import Mailbox
from retrieval.tasks import poll_mailbox
from tests.browser.test_admin_pages import _log_in
from tests.factories import make_domain, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MESSAGE = (
    b"From: sender@example.net\r\n"
    b"To: root@example.org\r\n"
    b"Subject: through the pages\r\n"
    b"Message-ID: <pages-1@example.net>\r\n"
    b"\r\n"
    b"Hello.\r\n"
)


class MailboxPageTests:
    def test_a_user_adding_a_private_host_is_told_why_in_words(
        self, page, live_server, settings
    ):
        settings.FETCH_ALLOW_PRIVATE_HOSTS = False
        make_user("alice@example.org", domain=make_domain("example.org"))
        _log_in(page, live_server, "alice@example.org")
        page.get_by_role("link", name="Add a mailbox").click()
        page.get_by_label("Host", exact=True).fill("192.168.1.20")
        page.get_by_label("User name").fill("alice")
        page.get_by_label("Password", exact=True).fill("remote-Secret-42")
        page.get_by_role("button", name="Add the mailbox").click()

        expect(page.get_by_role("alert").first).to_contain_text("was not saved")
        expect(page.locator("#id_host_error")).to_contain_text(
            "This server address is not allowed"
        )
        expect(page.locator("#id_host")).to_have_attribute("aria-invalid", "true")
        assert "remote-Secret-42" not in page.content()
        assert not Mailbox.objects.exists()

    def test_a_superuser_adds_a_dovecot_mailbox_polls_it_and_reads_the_poll(
        self, page, live_server, monkeypatch, dovecot, mailuser, smtp_listener
    ):
        # The worker, replaced by a direct call: "Poll now" polls in the request.
        monkeypatch.setattr(
            poll_mailbox,
            "delay",
            lambda pk, trigger: services.mailbox_poll(mailbox_id=pk, trigger=trigger),
        )
        dovecot.put(mailuser.name, MESSAGE)
        make_user("root@example.org", superuser=True)
        _log_in(page, live_server, "root@example.org")
        page.goto(f"{live_server.url}/mailboxes/new/")
        page.get_by_label("Name", exact=True).fill("dovecot-test")
        page.select_option("#id_protocol", "imap")
        page.get_by_label("Host", exact=True).fill(dovecot.host)
        page.get_by_label("Port", exact=True).fill(str(dovecot.imaps_port))
        page.select_option("#id_tls_mode", "implicit")
        page.get_by_text("Advanced options").click()  # folded (issue 13 item 4)
        page.get_by_label("CA file").fill(dovecot.ca_file)
        page.get_by_label("User name").fill(mailuser.name)
        page.get_by_label("Password", exact=True).fill(mailuser.password)
        page.get_by_label("Delivery host").fill("127.0.0.1")
        page.get_by_label("Delivery port").fill(str(smtp_listener.port))
        page.get_by_role("button", name="Add the mailbox").click()

        expect(page.get_by_role("heading", name="dovecot-test")).to_be_visible()
        page.get_by_role("button", name="Poll now").click()
        expect(page.locator(".messages")).to_contain_text("A poll was queued")
        page.locator("table a").first.click()

        expect(page.get_by_role("heading", name="Poll of dovecot-test")).to_be_visible()
        assert "Mail delivered" in page.locator("dl.summary").inner_text()
        assert "0 (SUCCESS)" in page.locator("dl.summary").inner_text()
        assert "Dovecot" in page.locator("pre.greeting").inner_text()
        # The engine's own record of the session, on the page (issue 13 item 7).
        summary = page.locator("dl.summary").inner_text()
        assert "TLSv1." in summary and "cipher" in summary
        assert "no login recorded" not in summary
        # A long transcript is folded: open it.
        fold = page.locator("details.transcript-fold summary")
        if fold.count():
            fold.click()
        transcript = page.locator("pre.transcript").inner_text()
        assert "S: * OK" in transcript and "********" in transcript
        row = page.locator("table.messages-table tbody tr")
        assert row.count() == 1
        cells = row.first.inner_text()
        assert "<pages-1@example.net>" in cells and "delivered" in cells
        assert "250" in cells and "deleted" in cells
        assert mailuser.password not in page.content()
        assert smtp_listener.received == 1 or len(smtp_listener.messages) == 1
        assert dovecot.messages(mailuser.name) == []
