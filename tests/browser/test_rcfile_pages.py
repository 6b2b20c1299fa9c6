"""Issue 13 item 5 in Chromium: a domain administrator uploads a .fetchmailrc for
a user of their domain, reads the preview (one entry refused, with its line),
confirms, and finds the mailbox in the list."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from retrieval.models import Mailbox
from tests.browser.test_admin_pages import _log_in
from tests.factories import make_domain, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
RCFILE = b"""# brought from the old server
set daemon 300
poll "alice-work" via 1.1.1.1 proto imap
    user "alice.remote" there password "Secret-pw-1" ssl keep
poll "alice-old" via 1.0.0.1 proto pop3
    user "alice" there password "Secret-pw-2" ssl
    mda "/usr/bin/procmail -d %T"
"""


def test_a_domain_administrator_imports_for_a_user(page, live_server):
    domain = make_domain("example.org")
    admin = make_user("admin@example.org", domain=domain)
    domain.admins.add(admin)
    alice = make_user("alice@example.org", domain=domain)
    make_user("bob@other.example", domain=make_domain("other.example"))

    _log_in(page, live_server, "admin@example.org")
    page.goto(f"{live_server.url}/mailboxes/")
    page.get_by_role("link", name="Import a .fetchmailrc").click()
    owners = page.locator("#id_owner option").all_inner_texts()
    assert "bob@other.example" not in " ".join(owners)
    page.select_option("#id_owner", label="alice@example.org")
    page.set_input_files(
        "#id_rcfile",
        {"name": "fetchmailrc", "mimeType": "text/plain", "buffer": RCFILE},
    )
    page.get_by_role("button", name="Preview").click()

    preview = page.locator("#preview")
    expect(preview).to_contain_text("Preview: fetchmailrc for alice@example.org")
    expect(preview).to_contain_text("fetchmailrc:3: create a mailbox")
    expect(preview).to_contain_text("options stored:")
    expect(preview).to_contain_text("password: from the file (hidden)")
    expect(preview.locator(".import-refusals")).to_contain_text(
        'fetchmailrc:5: mda "/usr/bin/procmail -d %T": runs a command on this '
        "server; only a superuser may import it"
    )
    assert "Secret-pw" not in page.content()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "import-preview.png"), full_page=True)
    assert not Mailbox.objects.exists()

    page.get_by_role("button", name="Import 1 mailbox(es)").click()
    expect(page.locator(".messages")).to_contain_text(
        "Imported 1 mailbox(es) for alice@example.org: 1 created, 0 updated; "
        "1 refusal(s) left out."
    )
    expect(page.get_by_role("link", name="alice-work")).to_be_visible()
    mailbox = Mailbox.objects.get()
    assert (mailbox.owner, mailbox.domain, mailbox.name) == (
        alice,
        domain,
        "alice-work",
    )
    assert mailbox.get_password() == "Secret-pw-1"
