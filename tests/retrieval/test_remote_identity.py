"""One rule for every writer (issue 10, item 3).

Changing a mailbox's server, protocol or user name names another remote account:
its ledger (SeenMessage rows) is dropped, since the old server's UIDs could name
other messages on the new one, which a poll would delete unread; and a stored
password is not sent there unless it is typed again. The rule holds for the pages,
Django's admin, the importer and a plain ``save()`` from a shell.
"""

from __future__ import annotations

import io
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from retrieval.models import AccountBusy, Mailbox, PasswordRequired, SeenMessage
from tests.factories import make_mailbox, make_user

pytestmark = pytest.mark.django_db

SECRET = "Sekr1t-Canary-93"
PUBLIC = "1.1.1.1"  # a public address literal: the policy passes it without DNS


@pytest.fixture(autouse=True)
def _quick_settings(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": uuid.uuid4().hex,
        }
    }


def _with_ledger(mailbox: Mailbox) -> Mailbox:
    SeenMessage.objects.create(mailbox=mailbox, uid="1", message_id="<old@x>")
    return mailbox


def _ledger(mailbox: Mailbox) -> list[str]:
    return list(
        SeenMessage.objects.filter(mailbox=mailbox).values_list("uid", flat=True)
    )


def _form_errors(response) -> str:
    assert response.status_code == 200, response.status_code
    form = (
        response.context["adminform"].form
        if "adminform" in response.context
        else (response.context["form"])
    )
    return " ".join(str(e) for errors in form.errors.values() for e in errors)


# --- a shell: Mailbox.save() --------------------------------------------------------


class ModelSaveTests:
    @pytest.mark.parametrize(
        ("field", "value"),
        [("host", "new.example.net"), ("protocol", "pop3"), ("username", "other")],
    )
    def test_a_changed_account_without_a_new_password_is_refused(self, field, value):
        mailbox = _with_ledger(make_mailbox(password=SECRET, host="old.example.net"))
        before = getattr(mailbox, field)
        setattr(mailbox, field, value)
        with pytest.raises(PasswordRequired, match="password again"):
            mailbox.save()
        mailbox.refresh_from_db()
        assert getattr(mailbox, field) == before
        assert _ledger(mailbox) == ["1"]

    def test_a_new_password_saves_the_new_account_and_drops_the_ledger(self):
        mailbox = _with_ledger(make_mailbox(password=SECRET, host="old.example.net"))
        mailbox.host = "new.example.net"
        mailbox.set_password("n3w")
        mailbox.save()
        mailbox.refresh_from_db()
        assert mailbox.host == "new.example.net" and mailbox.get_password() == "n3w"
        assert _ledger(mailbox) == []

    def test_a_partial_save_of_the_account_stores_the_new_password_too(self):
        mailbox = _with_ledger(make_mailbox(password=SECRET, host="old.example.net"))
        mailbox.host = "new.example.net"
        mailbox.set_password("n3w")
        mailbox.save(update_fields=["host"])
        mailbox.refresh_from_db()
        assert mailbox.host == "new.example.net" and mailbox.get_password() == "n3w"
        assert _ledger(mailbox) == []

    def test_removing_the_password_also_allows_the_change(self):
        mailbox = _with_ledger(make_mailbox(password=SECRET))
        mailbox.username = "other"
        mailbox.set_password("")
        mailbox.save()
        assert _ledger(mailbox) == []

    def test_without_a_stored_password_the_ledger_is_still_dropped(self):
        mailbox = _with_ledger(make_mailbox(host="old.example.net"))
        mailbox.host = "new.example.net"
        mailbox.save()
        assert _ledger(mailbox) == []

    def test_the_same_account_keeps_its_ledger(self):
        mailbox = _with_ledger(make_mailbox(password=SECRET, host="mail.example.net"))
        mailbox.name = "renamed"
        mailbox.port = 1993
        mailbox.host = "MAIL.example.net"  # host names are case-insensitive
        mailbox.save()
        mailbox.save(update_fields=["name"])
        assert _ledger(mailbox) == ["1"]

    def test_no_change_of_account_while_a_poll_holds_the_lease(self):
        """The running poll would record the old server's UIDs after the drop."""
        mailbox = _with_ledger(make_mailbox(password=SECRET, host="old.example.net"))
        _polling(mailbox)
        mailbox.host = "new.example.net"
        mailbox.set_password("n3w")
        with pytest.raises(AccountBusy, match="being polled"):
            mailbox.save()
        mailbox.refresh_from_db()
        assert mailbox.host == "old.example.net" and _ledger(mailbox) == ["1"]
        # Anything else may change meanwhile.
        mailbox.name = "renamed"
        mailbox.save()


def _polling(mailbox: Mailbox) -> None:
    until = timezone.now() + timedelta(minutes=5)
    Mailbox.objects.filter(pk=mailbox.pk).update(lease_owner="w", lease_until=until)
    mailbox.refresh_from_db()


# --- the pages' edit view -------------------------------------------------------------


def _page_data(mailbox: Mailbox, **overrides: str) -> dict[str, str]:
    data = {
        "name": mailbox.name,
        "enabled": "on",
        "poll_interval": str(mailbox.poll_interval),
        "protocol": mailbox.protocol,
        "host": mailbox.host,
        "port": "",
        "tls_mode": mailbox.tls_mode,
        "verify_tls": "on",
        "auth": mailbox.auth,
        "username": mailbox.username,
        "new_password": "",
        "folders": "",
    }
    return data | overrides


class PagesTests:
    @pytest.mark.parametrize(
        ("field", "value"), [("username", "other"), ("protocol", "pop3")]
    )
    def test_the_edit_page_asks_for_the_password_and_drops_the_ledger(
        self, client, field, value
    ):
        owner = make_user()
        mailbox = _with_ledger(make_mailbox(owner, password=SECRET, host=PUBLIC))
        url = reverse("retrieval:mailbox-edit", args=[mailbox.pk])
        client.force_login(owner)

        response = client.post(url, _page_data(mailbox, **{field: value}))
        assert "type the password again" in _form_errors(response)
        mailbox.refresh_from_db()
        assert getattr(mailbox, field) != value and _ledger(mailbox) == ["1"]

        response = client.post(
            url, _page_data(mailbox, **{field: value, "new_password": "n3w"})
        )
        assert response.status_code == 302
        mailbox.refresh_from_db()
        assert getattr(mailbox, field) == value and mailbox.get_password() == "n3w"
        assert _ledger(mailbox) == []

    def test_the_edit_page_refuses_a_new_account_during_a_poll(self, client):
        owner = make_user()
        mailbox = _with_ledger(make_mailbox(owner, password=SECRET, host=PUBLIC))
        _polling(mailbox)
        client.force_login(owner)
        response = client.post(
            reverse("retrieval:mailbox-edit", args=[mailbox.pk]),
            _page_data(mailbox, username="other", new_password="n3w"),
        )
        assert "being polled" in _form_errors(response)
        mailbox.refresh_from_db()
        assert mailbox.username != "other" and _ledger(mailbox) == ["1"]


# --- Django's admin -------------------------------------------------------------------


def _admin_data(mailbox: Mailbox, **overrides: str) -> dict[str, str]:
    data = {
        "name": mailbox.name,
        "owner": str(mailbox.owner_id),
        "domain": "",
        "enabled": "on",
        "poll_interval": str(mailbox.poll_interval),
        "protocol": mailbox.protocol,
        "host": mailbox.host,
        "port": "",
        "tls_mode": mailbox.tls_mode,
        "verify_tls": "on",
        "ca_file": "",
        "auth": mailbox.auth,
        "username": mailbox.username,
        "new_password": "",
        "folders": "[]",
        "timeout": str(mailbox.timeout),
        "delivery_kind": mailbox.delivery_kind,
        "delivery_host": mailbox.delivery_host,
        "delivery_port": str(mailbox.delivery_port),
        "recipient": "",
        "options": "{}",
        "rules-TOTAL_FORMS": "0",
        "rules-INITIAL_FORMS": "0",
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
    }
    return data | overrides


class AdminTests:
    def test_the_admin_change_form_follows_the_same_rule(self, client):
        root = make_user(superuser=True)
        mailbox = _with_ledger(make_mailbox(password=SECRET, host="old.example.net"))
        url = reverse("admin:retrieval_mailbox_change", args=[mailbox.pk])
        client.force_login(root)

        response = client.post(url, _admin_data(mailbox, host="new.example.net"))
        assert "type the password again" in _form_errors(response)
        mailbox.refresh_from_db()
        assert mailbox.host == "old.example.net" and mailbox.get_password() == SECRET
        assert _ledger(mailbox) == ["1"]

        response = client.post(
            url, _admin_data(mailbox, host="new.example.net", new_password="n3w")
        )
        assert response.status_code == 302, _form_errors(response)
        mailbox.refresh_from_db()
        assert mailbox.host == "new.example.net" and mailbox.get_password() == "n3w"
        assert _ledger(mailbox) == []

    def test_an_admin_edit_of_the_same_account_keeps_ledger_and_password(self, client):
        root = make_user(superuser=True)
        mailbox = _with_ledger(make_mailbox(password=SECRET, host="old.example.net"))
        client.force_login(root)
        response = client.post(
            reverse("admin:retrieval_mailbox_change", args=[mailbox.pk]),
            _admin_data(mailbox, name="renamed", poll_interval="600"),
        )
        assert response.status_code == 302, _form_errors(response)
        mailbox.refresh_from_db()
        assert mailbox.name == "renamed" and mailbox.get_password() == SECRET
        assert _ledger(mailbox) == ["1"]


# --- the importer ---------------------------------------------------------------------


def _import(path: Any, owner: str) -> str:
    out = io.StringIO()
    call_command(
        "import_fetchmailrc", str(path), owner=owner, netrc="/nonexistent", stdout=out
    )
    return out.getvalue()


class ImporterTests:
    def test_a_reimport_with_another_host_does_not_inherit_ledger_or_password(
        self, tmp_path
    ):
        """The importer matches rows by remote account (protocol, host, port,
        user): another host is another account, so the old row keeps its own
        ledger and the new host starts with none and no password."""
        alice = make_user("alice@example.org")
        rc = tmp_path / "fetchmailrc"
        rc.write_text(f"poll old.example.net proto imap user joe password {SECRET}\n")
        _import(rc, alice.email)
        old = Mailbox.objects.get(owner=alice)
        _with_ledger(old)

        rc.write_text("poll new.example.net proto imap user joe\n")
        _import(rc, alice.email)

        new = Mailbox.objects.get(owner=alice, host="new.example.net")
        assert new.pk != old.pk
        assert _ledger(new) == [] and not new.has_password
        old.refresh_from_db()
        assert old.host == "old.example.net" and _ledger(old) == ["1"]

    def test_a_reimport_of_the_same_account_keeps_its_ledger(self, tmp_path):
        alice = make_user("alice@example.org")
        rc = tmp_path / "fetchmailrc"
        rc.write_text(f"poll mail.example.net proto imap user joe password {SECRET}\n")
        _import(rc, alice.email)
        mailbox = _with_ledger(Mailbox.objects.get(owner=alice))

        # The host's spelling changes (same server) and the password is absent.
        rc.write_text("poll MAIL.example.net proto imap user joe\n")
        assert "updated mailbox" in _import(rc, alice.email)

        mailbox.refresh_from_db()
        assert mailbox.host == "MAIL.example.net" and mailbox.get_password() == SECRET
        assert _ledger(mailbox) == ["1"]
