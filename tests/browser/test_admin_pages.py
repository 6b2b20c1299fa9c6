from __future__ import annotations

import pytest

from retrieval.models import Mailbox
from tests.factories import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery"
REMOTE_SECRET = "remote-Secret-42"


def _log_in(page, live_server, email):
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")


class LoginPageTests:
    def test_it_says_in_words_when_the_password_is_wrong(self, page, live_server):
        make_user("alice@example.org")
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", "alice@example.org")
        page.fill("#id_password", "wrong")
        page.click("button[type=submit]")
        assert page.get_by_text("did not match").is_visible()

    def test_it_logs_in_and_out(self, page, live_server):
        make_user("alice@example.org")
        _log_in(page, live_server, "alice@example.org")
        assert page.get_by_role("heading", name="Mailboxes").is_visible()
        page.get_by_role("button", name="Log out").click()
        assert page.url.endswith("/login/")


class AdminMailboxTests:
    def test_a_superuser_adds_a_mailbox_and_the_password_never_comes_back(
        self, page, live_server
    ):
        admin = make_user("root@example.org", superuser=True)
        _log_in(page, live_server, "root@example.org")
        page.goto(f"{live_server.url}/admin/retrieval/mailbox/add/")
        page.select_option("#id_owner", str(admin.pk))
        page.select_option("#id_protocol", "pop3")
        page.fill("#id_host", "pop.example.org")
        page.fill("#id_username", "alice")
        page.fill("#id_new_password", REMOTE_SECRET)
        page.click("input[name=_continue]")
        assert "was added successfully" in page.locator(".messagelist").inner_text()

        mailbox = Mailbox.objects.get(host="pop.example.org")
        assert mailbox.get_password() == REMOTE_SECRET
        assert REMOTE_SECRET not in mailbox.password_encrypted
        html = page.content()
        assert REMOTE_SECRET not in html
        assert "set (encrypted)" in html
        # Saving the form again with the field empty keeps the stored password.
        page.click("input[name=_continue]")
        mailbox.refresh_from_db()
        assert mailbox.get_password() == REMOTE_SECRET
