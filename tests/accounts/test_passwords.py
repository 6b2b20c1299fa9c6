"""Everyone changes their password, and resets a forgotten one by mail (issue 13
item 6): /account/password/ and /account/password/reset/ with its one-time link."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEvent, User
from tests.factories import make_user

pytestmark = pytest.mark.django_db

OLD = "correct horse battery"  # tests/factories.py
NEW = "a-fresh-Password-42"


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def _change(client: Client, old: str, new1: str, new2: str | None = None):
    return client.post(
        reverse("accounts:password-change"),
        {"old_password": old, "new_password1": new1, "new_password2": new2 or new1},
    )


def _ask_reset(client: Client, email: str, address: str = "198.51.100.9"):
    return client.post(
        reverse("accounts:password-reset"), {"email": email}, REMOTE_ADDR=address
    )


def _link(message: mail.EmailMessage) -> str:
    found = re.search(r"https?://[^/\s]+(/account/reset/[^\s]+/)", str(message.body))
    assert found, message.body
    return found.group(1)


# --- change -------------------------------------------------------------------------


def test_change_sets_the_password_and_keeps_the_session():
    user = make_user()
    client = Client()
    client.force_login(user)
    response = _change(client, OLD, NEW)
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:password-change-done")
    user.refresh_from_db()
    assert user.check_password(NEW) and not user.check_password(OLD)
    # Still signed in: the next page is the dashboard, not the login page.
    assert _signed_in(client)
    assert client.get(reverse("home")).status_code == 200
    done = client.get(reverse("accounts:password-change-done"))
    assert "Your password was changed" in done.content.decode()


def test_a_wrong_old_password_is_refused_in_words():
    user = make_user()
    client = Client()
    client.force_login(user)
    response = _change(client, "not my password", NEW)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Your old password was entered incorrectly" in page
    user.refresh_from_db()
    assert user.check_password(OLD)


def test_the_password_validators_apply():
    user = make_user()
    client = Client()
    client.force_login(user)
    response = _change(client, OLD, "12345678")
    assert response.status_code == 200
    assert "This password is entirely numeric" in response.content.decode()
    user.refresh_from_db()
    assert user.check_password(OLD)


def test_the_change_pages_need_a_login():
    client = Client()
    for name in ("accounts:password-change", "accounts:password-change-done"):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_the_links_are_on_the_login_page_and_in_the_header():
    anonymous = Client().get(reverse("login")).content.decode()
    assert f'href="{reverse("accounts:password-reset")}"' in anonymous
    assert "Forgot your password?" in anonymous
    client = Client()
    client.force_login(make_user())
    page = client.get(reverse("home")).content.decode()
    assert f'href="{reverse("accounts:password-change")}">Change password<' in page


# --- reset by mail ----------------------------------------------------------------------


def test_reset_mails_a_link_that_works_once():
    user = make_user("forgetful@example.org")
    client = Client()
    response = _ask_reset(client, "forgetful@example.org")
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:password-reset-done")
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["forgetful@example.org"]
    link = _link(message)

    # Django swaps the token for a session marker: follow it to the form.
    form = client.get(link, follow=True)
    assert "Choose a new password" in form.content.decode()
    set_url = form.redirect_chain[-1][0]
    done = client.post(set_url, {"new_password1": NEW, "new_password2": NEW})
    assert done.status_code == 302
    assert done["Location"] == reverse("accounts:password-reset-complete")
    user.refresh_from_db()
    assert user.check_password(NEW)
    assert not _signed_in(client)

    # The same link again, in a fresh browser: refused, password unchanged.
    again = Client().get(link, follow=True)
    assert "This link does not work" in again.content.decode()
    assert "Choose a new password" not in again.content.decode()
    reuse = Client().post(link, {"new_password1": OLD, "new_password2": OLD})
    assert "This link does not work" in reuse.content.decode()
    user.refresh_from_db()
    assert user.check_password(NEW)
    # And the person can sign in with the new password.
    assert Client().login(username="forgetful@example.org", password=NEW)


def test_an_unknown_address_gets_the_same_answer_and_no_mail():
    make_user("known@example.org")
    known = _ask_reset(Client(), "known@example.org", "198.51.100.10")
    unknown = _ask_reset(Client(), "nobody@example.org", "198.51.100.11")
    assert (known.status_code, known["Location"]) == (
        unknown.status_code,
        unknown["Location"],
    )
    assert [m.to for m in mail.outbox] == [["known@example.org"]]
    page = Client().get(unknown["Location"]).content.decode()
    assert "If the address you entered has an account" in page


def test_reset_requests_are_throttled_per_email_address():
    make_user("target@example.org")
    client = Client()
    # Three per hour for one address (from different networks), then refused.
    for n in range(3):
        assert (
            _ask_reset(client, "target@example.org", f"203.0.113.{n}").status_code
            == 302
        )
    refused = _ask_reset(client, "TARGET@example.org", "203.0.113.99")
    assert refused.status_code == 200
    page = refused.content.decode()
    assert "Too many password reset requests for this email address" in page
    assert len(mail.outbox) == 3
    # Another address is not affected.
    assert _ask_reset(client, "other@example.org", "203.0.113.98").status_code == 302


def test_reset_requests_are_throttled_per_client_address():
    client = Client()
    for n in range(5):
        assert _ask_reset(client, f"p{n}@example.org", "192.0.2.7").status_code == 302
    refused = _ask_reset(client, "p9@example.org", "192.0.2.7")
    assert refused.status_code == 200
    assert "Too many password reset requests from your network" in (
        refused.content.decode()
    )
    # Unknown addresses count too (else the limit would tell which ones exist),
    # and another network may still ask.
    assert _ask_reset(client, "p9@example.org", "192.0.2.8").status_code == 302


# --- audit ------------------------------------------------------------------------------


def test_changes_and_resets_are_audited_without_the_password():
    user = make_user("audited@example.org")
    client = Client()
    client.force_login(user)
    _change(client, OLD, NEW)
    change = AuditEvent.objects.filter(
        action=AuditEvent.Action.UPDATE, object_id=str(user.pk)
    ).latest("pk")
    assert change.summary == "password changed"
    assert change.actor_label == "audited@example.org"

    _ask_reset(Client(), "audited@example.org")
    reset_client = Client()
    form = reset_client.get(_link(mail.outbox[0]), follow=True)
    final = "a-second-Password-43"
    reset_client.post(
        form.redirect_chain[-1][0], {"new_password1": final, "new_password2": final}
    )
    events = AuditEvent.objects.filter(
        action=AuditEvent.Action.UPDATE,
        object_type="accounts.user",
        object_id=str(user.pk),
    ).order_by("pk")
    assert [e.summary for e in events] == ["password changed", "password changed"]
    assert events[1].actor_label == "anonymous"  # the bearer of the mailed link
    hashed = User.objects.get(pk=user.pk).password
    for event in AuditEvent.objects.all():
        text = f"{event.summary} {event.object_repr} {event.actor_label}"
        for secret in (OLD, NEW, final, hashed):
            assert secret not in text
