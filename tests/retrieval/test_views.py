"""The mailbox pages: tenancy, CSRF, what each role may set, and what is shown.

The tenancy trio: alice owns a mailbox in her domain, bob administers that
domain, charlie is an outsider. Every page and every POST endpoint is tried as
charlie (404, nothing revealed) besides the owner and the administrator.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from retrieval.models import Mailbox, MessageResult, MultidropRule, PollRun, SeenMessage
from retrieval.services import probes
from retrieval.tasks import poll_mailbox
from tests.factories import make_domain, make_mailbox, make_user

pytestmark = pytest.mark.django_db

SECRET = "Sekr1t-Canary-93"
PUBLIC = "1.1.1.1"  # a public address literal: the policy passes it without DNS


@pytest.fixture(autouse=True)
def _quick_settings(settings):
    """A fresh cache per test for the rate limits (never a shared Redis), and a
    fast password hasher for the people the tests create."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": uuid.uuid4().hex,
        }
    }


@pytest.fixture
def trio():
    class Trio:
        domain = make_domain("example.org")
        alice = make_user("alice@example.org", domain=domain)
        bob = make_user("bob@example.org", domain=domain)
        charlie = make_user("charlie@elsewhere.example")
        root = make_user("root@example.net", superuser=True)
        mailbox = make_mailbox(
            alice,
            password=SECRET,
            domain=domain,
            name="alice-mail",
            host=PUBLIC,
            username="alice.remote",
        )
        run = PollRun.objects.create(
            mailbox=mailbox,
            outcome=PollRun.Outcome.ERROR,
            exit_code=3,
            finished_at=timezone.now(),
            greeting="* OK <imap> ready",
            transcript="S: * OK ready\nC: A1 LOGIN alice.remote ********\n"
            "S: <script>alert(1)</script>",
            error="Wrong user name or password (the server said: no).",
        )

    Trio.domain.admins.add(Trio.bob)
    return Trio


@pytest.fixture
def eager_probes(monkeypatch, django_capture_on_commit_callbacks):
    """POST to a test button and follow the answer, with the queued connection
    test run in between, as a worker of the "interactive" queue would."""
    from retrieval.tasks import probe_connection

    monkeypatch.setattr(probe_connection, "delay", probe_connection)

    def post(client: Client, url: str):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(url)
        if response.status_code != 302:
            return response
        return client.get(response["Location"], follow=True)

    return post


def _as(client: Client, user) -> Client:
    client.force_login(user)
    return client


def _form(**overrides) -> dict[str, str]:
    data = {
        "name": "",
        "enabled": "on",
        "poll_interval": "300",
        "protocol": "imap",
        "host": PUBLIC,
        "port": "",
        "tls_mode": "implicit",
        "verify_tls": "on",
        "auth": "any",
        "username": "someone",
        "new_password": SECRET,
        "folders": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def _edit_data(mailbox: Mailbox, *, superuser=False, **overrides) -> dict[str, str]:
    """What the edit form posts back unchanged (a superuser's form has more)."""
    data = {
        "name": mailbox.name,
        "enabled": "on" if mailbox.enabled else None,
        "poll_interval": str(mailbox.poll_interval),
        "protocol": mailbox.protocol,
        "host": mailbox.host,
        "port": str(mailbox.port or ""),
        "tls_mode": mailbox.tls_mode,
        "verify_tls": "on" if mailbox.verify_tls else None,
        "auth": mailbox.auth,
        "username": mailbox.username,
        "new_password": "",
        "folders": "\n".join(mailbox.folders),
        "keep": "on" if mailbox.keep else None,
        "fetchall": "on" if mailbox.fetchall else None,
    }
    if superuser:
        data |= {
            "ca_file": mailbox.ca_file,
            "timeout": str(mailbox.timeout),
            "delivery_kind": mailbox.delivery_kind,
            "delivery_host": mailbox.delivery_host,
            "delivery_port": str(mailbox.delivery_port),
            "recipient": mailbox.recipient,
            "mda": "",
        }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def _errors(response) -> str:
    assert response.status_code == 200, response.status_code
    return " ".join(
        str(e) for errors in response.context["form"].errors.values() for e in errors
    )


def _urls(mailbox: Mailbox, run: PollRun) -> dict[str, str]:
    return {
        "detail": reverse("retrieval:mailbox-detail", args=[mailbox.pk]),
        "edit": reverse("retrieval:mailbox-edit", args=[mailbox.pk]),
        "rules": reverse("retrieval:mailbox-rules", args=[mailbox.pk]),
        "poll": reverse("retrieval:mailbox-poll", args=[mailbox.pk]),
        "test": reverse("retrieval:mailbox-test", args=[mailbox.pk]),
        "delete": reverse("retrieval:mailbox-delete", args=[mailbox.pk]),
        "run": reverse("retrieval:run-detail", args=[mailbox.pk, run.pk]),
    }


PAGES = ("detail", "edit", "rules", "delete", "run")
POSTS = ("edit", "rules", "poll", "test", "delete")


class TenancyTests:
    @pytest.mark.parametrize("page", PAGES)
    def test_an_outsider_gets_404_on_every_page(self, client, trio, page):
        url = _urls(trio.mailbox, trio.run)[page]
        response = _as(client, trio.charlie).get(url)
        assert response.status_code == 404
        assert b"alice" not in response.content

    @pytest.mark.parametrize("action", POSTS)
    def test_an_outsider_gets_404_on_every_post_and_changes_nothing(
        self, client, trio, monkeypatch, action
    ):
        queued = []
        monkeypatch.setattr(poll_mailbox, "delay", lambda *a: queued.append(a))
        url = _urls(trio.mailbox, trio.run)[action]
        data = _edit_data(trio.mailbox, host="9.9.9.9", new_password="x")
        response = _as(client, trio.charlie).post(url, data | {"rules": "*"})
        assert response.status_code == 404
        trio.mailbox.refresh_from_db()
        assert trio.mailbox.host == PUBLIC and trio.mailbox.get_password() == SECRET
        assert not queued and not trio.mailbox.rules.exists()

    def test_an_unknown_id_is_a_404_too(self, client, trio):
        url = reverse("retrieval:mailbox-detail", args=[trio.mailbox.pk + 1000])
        assert _as(client, trio.root).get(url).status_code == 404

    def test_a_run_is_reached_only_through_its_own_mailbox(self, client, trio):
        own = make_mailbox(trio.charlie, host=PUBLIC)
        url = reverse("retrieval:run-detail", args=[own.pk, trio.run.pk])
        assert _as(client, trio.charlie).get(url).status_code == 404

    @pytest.mark.parametrize("page", ("detail", "edit", "delete", "run"))
    def test_the_owner_and_the_domain_administrator_reach_the_pages(
        self, client, trio, page
    ):
        url = _urls(trio.mailbox, trio.run)[page]
        for user in (trio.alice, trio.bob, trio.root):
            assert _as(client, user).get(url).status_code == 200, user

    def test_rules_are_for_domain_administrators_and_superusers(self, client, trio):
        url = _urls(trio.mailbox, trio.run)["rules"]
        assert _as(client, trio.alice).get(url).status_code == 403
        assert _as(client, trio.bob).get(url).status_code == 200
        assert _as(client, trio.root).get(url).status_code == 200
        detail = _urls(trio.mailbox, trio.run)["detail"]
        assert b"Multidrop settings</a>" not in _as(client, trio.alice).get(detail).content
        assert b"Multidrop settings</a>" in _as(client, trio.bob).get(detail).content

    def test_a_superusers_mailbox_is_read_only_to_a_domain_administrator(
        self, client, trio, monkeypatch
    ):
        queued = []
        monkeypatch.setattr(poll_mailbox, "delay", lambda *a: queued.append(a))
        theirs = make_mailbox(trio.root, domain=trio.domain, host="127.0.0.1")
        run = PollRun.objects.create(mailbox=theirs)
        urls = _urls(theirs, run)
        _as(client, trio.bob)
        page = client.get(urls["detail"])
        assert page.status_code == 200
        assert b"may look at it but not change it" in page.content
        assert b"Poll now" not in page.content
        assert client.get(urls["edit"]).status_code == 403
        assert client.get(urls["run"]).status_code == 200
        for action in POSTS:
            response = client.post(urls[action], _edit_data(theirs, host=PUBLIC))
            assert response.status_code == 403, action
        assert not queued
        assert Mailbox.objects.get(pk=theirs.pk).host == "127.0.0.1"

    def test_anonymous_visitors_are_sent_to_the_login_page(self, client, trio):
        for name, url in _urls(trio.mailbox, trio.run).items():
            response = client.get(url)
            assert response.status_code == 302, name
            assert response.url.startswith(reverse("login"))
        assert client.post(_urls(trio.mailbox, trio.run)["poll"]).status_code == 302


class CsrfTests:
    @pytest.mark.parametrize("action", POSTS)
    def test_every_post_needs_the_csrf_token(self, trio, monkeypatch, action):
        queued = []
        monkeypatch.setattr(poll_mailbox, "delay", lambda *a: queued.append(a))
        client = _as(Client(enforce_csrf_checks=True), trio.bob)
        url = _urls(trio.mailbox, trio.run)[action]
        data = _edit_data(trio.mailbox, name="renamed") | {"rules": "*"}
        assert client.post(url, data).status_code == 403
        assert Mailbox.objects.filter(pk=trio.mailbox.pk, name="alice-mail").exists()
        assert not queued and not MultidropRule.objects.exists()

    def test_add_needs_the_csrf_token(self, trio):
        client = _as(Client(enforce_csrf_checks=True), trio.alice)
        assert client.post(reverse("retrieval:mailbox-add"), _form()).status_code == 403
        assert Mailbox.objects.count() == 1

    def test_buttons_refuse_get(self, client, trio):
        _as(client, trio.alice)
        for action in ("poll", "test"):
            assert client.get(_urls(trio.mailbox, trio.run)[action]).status_code == 405


class PageContentTests:
    def test_the_detail_page_sums_up_the_settings_and_the_last_polls(
        self, client, trio
    ):
        page = _as(client, trio.alice).get(_urls(trio.mailbox, trio.run)["detail"])
        text = page.content.decode()
        assert "Password</dt><dd>set</dd>" in text
        assert f"IMAP at {PUBLIC}, port 993 (the usual one)" in text
        assert "Failed" in text and "3 AUTHFAIL" in text
        assert (
            reverse("retrieval:run-detail", args=[trio.mailbox.pk, trio.run.pk]) in text
        )
        assert "Wrong user name or password" in text

    def test_it_says_when_no_password_is_stored(self, client, trio):
        trio.mailbox.set_password("")
        trio.mailbox.save()
        page = _as(client, trio.alice).get(_urls(trio.mailbox, trio.run)["detail"])
        assert "Password</dt><dd>not set</dd>" in page.content.decode()

    def test_the_poll_page_shows_greeting_transcript_error_and_messages(
        self, client, trio
    ):
        MessageResult.objects.create(
            run=trio.run,
            uid="4711",
            message_id="<m1@example.net>",
            size=1234,
            recipients=["alice@example.org", "bob@example.org"],
            status="delivered",
            listener_reply="250 2.0.0 Ok: queued as ABC",
            deleted=True,
        )
        MessageResult.objects.create(
            run=trio.run, uid="4712", status="deferred", listener_reply="451 later"
        )
        page = _as(client, trio.alice).get(_urls(trio.mailbox, trio.run)["run"])
        text = page.content.decode()
        assert "* OK &lt;imap&gt; ready" in text
        assert (
            "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script>" not in text
        )
        assert "3 (AUTHFAIL): the server refused the user name or password" in text
        assert "Wrong user name or password (the server said: no)." in text
        assert "&lt;m1@example.net&gt;" in text and "1234" in text
        assert "alice@example.org, bob@example.org" in text
        assert "250 2.0.0 Ok: queued as ABC" in text and "451 later" in text
        assert "<td>deleted</td>" in text and "<td>kept</td>" in text

    def test_the_password_never_appears_in_any_page(self, client, trio, settings):
        settings.FETCH_ALLOW_PRIVATE_HOSTS = False
        urls = _urls(trio.mailbox, trio.run)
        for user in (trio.alice, trio.bob, trio.root):
            _as(client, user)
            for page in PAGES:
                assert SECRET not in client.get(urls[page]).content.decode()
        # Nor when a form comes back with errors, nor in a connection test.
        _as(client, trio.alice)
        refused = client.post(
            urls["edit"], _edit_data(trio.mailbox, new_password=SECRET, port="99999")
        )
        assert "The port must be between 1 and 65535" in refused.content.decode()
        assert SECRET not in refused.content.decode()
        added = client.post(
            reverse("retrieval:mailbox-add"),
            _form(host="10.1.2.3", new_password=SECRET),
        )
        assert SECRET not in added.content.decode()


class AddTests:
    def test_a_user_adds_a_mailbox_that_delivers_where_the_administrator_said(
        self, client, trio, settings
    ):
        settings.FETCH_DEFAULT_DELIVERY_KIND = "lmtp"
        settings.FETCH_DEFAULT_DELIVERY_HOST = "/run/dovecot/lmtp"
        settings.FETCH_DEFAULT_DELIVERY_PORT = 24
        response = _as(client, trio.alice).post(
            reverse("retrieval:mailbox-add"),
            _form(
                name="work",
                folders="INBOX\r\nLists/fetchweb\r\n\r\n",
                # Crafted fields this form does not have: all ignored.
                owner=str(trio.charlie.pk),
                delivery_host="evil.example",
                delivery_port="2525",
                mda="/bin/sh -c 'curl evil'",
                recipient="charlie@elsewhere.example",
                ca_file="/etc/shadow",
                timeout="1",
            ),
        )
        mailbox = Mailbox.objects.get(name="work")
        assert response.status_code == 302
        assert response.url == reverse("retrieval:mailbox-detail", args=[mailbox.pk])
        assert mailbox.owner == trio.alice and mailbox.domain == trio.domain
        assert (
            mailbox.delivery_kind,
            mailbox.delivery_host,
            mailbox.delivery_port,
        ) == (
            "lmtp",
            "/run/dovecot/lmtp",
            24,
        )
        assert (
            mailbox.recipient == "" and mailbox.ca_file == "" and mailbox.timeout == 120
        )
        assert mailbox.options == {}
        assert mailbox.folders == ["INBOX", "Lists/fetchweb"]
        assert mailbox.get_password() == SECRET
        assert SECRET not in mailbox.password_encrypted

    def test_a_user_choosing_delivery_to_a_program_is_refused(self, client, trio):
        """The kind is the person's (the service, or an IMAP mailbox); a program
        is not among its choices."""
        response = _as(client, trio.alice).post(
            reverse("retrieval:mailbox-add"),
            _form(name="work", delivery_kind="mda", mda="/bin/sh -c 'curl evil'"),
        )
        assert response.status_code == 200
        assert "delivery_kind" in response.context["form"].errors
        assert not Mailbox.objects.filter(name="work").exists()

    def test_a_user_has_no_owner_delivery_or_command_fields(self, client, trio):
        form = _as(client, trio.charlie).get(reverse("retrieval:mailbox-add"))
        text = form.content.decode()
        for name in ("owner", "delivery_host", "mda", "recipient"):
            assert f'name="{name}"' not in text
        assert 'value="mda"' not in text and 'value="lmtp"' not in text
        assert 'value="none"' not in text  # no cleartext offered
        assert 'value="etrn"' not in text and 'value="ssh"' not in text

    @pytest.mark.parametrize(
        ("fields", "words"),
        [
            ({"host": "10.0.0.5"}, "This server address is not allowed"),
            ({"host": "127.0.0.1"}, "This server address is not allowed"),
            ({"host": "[::1]"}, "This server address is not allowed"),
            ({"port": "6379"}, "This server address is not allowed"),
            ({"host": "imap.example.org:993"}, "Put the port number in the Port field"),
            ({"host": "imap example.org"}, "This is not a server name"),
            ({"host": "alice@imap.example.org"}, "Enter only the server's name"),
            ({"port": "70000"}, "The port must be between 1 and 65535."),
            ({"port": "0"}, "The port must be between 1 and 65535."),
            ({"username": "alice\nRETR 1"}, "user name cannot contain a line break"),
            ({"new_password": "pw\r\nDELE 1"}, "password cannot contain a line break"),
            ({"folders": "INBOX\nbad\0name"}, "folder name cannot contain"),
            ({"folders": "INBOX\nINBOX"}, "A folder is listed twice."),
            (
                {"protocol": "pop3", "folders": "Lists"},
                "A POP3 server has only the inbox",
            ),
            ({"poll_interval": "30"}, "Poll at most once every 60 seconds"),
            ({"verify_tls": None}, "Only a superuser may turn off the certificate"),
            ({"tls_mode": "none"}, "Select a valid choice"),
            ({"protocol": "etrn"}, "Select a valid choice"),
            ({"auth": "ssh"}, "Select a valid choice"),
            ({"username": ""}, "This field is required."),
        ],
    )
    def test_a_user_is_refused_in_words(self, client, trio, settings, fields, words):
        settings.FETCH_ALLOW_PRIVATE_HOSTS = False
        response = _as(client, trio.alice).post(
            reverse("retrieval:mailbox-add"), _form(**fields)
        )
        assert words in _errors(response)
        assert "The mailbox was not saved" in response.content.decode()
        assert Mailbox.objects.count() == 1

    def test_a_lab_may_allow_private_hosts_and_cleartext(self, client, trio, settings):
        settings.FETCH_ALLOW_PRIVATE_HOSTS = True
        response = _as(client, trio.alice).post(
            reverse("retrieval:mailbox-add"),
            _form(host="127.0.0.1", port="1143", tls_mode="none", name="lab"),
        )
        assert response.status_code == 302
        assert Mailbox.objects.get(name="lab").tls_mode == "none"

    def test_a_domain_administrator_adds_a_mailbox_for_a_member(self, client, trio):
        response = _as(client, trio.bob).post(
            reverse("retrieval:mailbox-add"),
            _form(owner=str(trio.alice.pk), name="for-alice"),
        )
        assert response.status_code == 302
        mailbox = Mailbox.objects.get(name="for-alice")
        assert mailbox.owner == trio.alice and mailbox.domain == trio.domain

    def test_a_domain_administrator_chooses_only_among_members(self, client, trio):
        trio.root.domain = trio.domain
        trio.root.save()
        _as(client, trio.bob)
        for outsider in (trio.charlie, trio.root):
            response = client.post(
                reverse("retrieval:mailbox-add"), _form(owner=str(outsider.pk))
            )
            assert "Select a valid choice" in _errors(response)
        page = client.get(reverse("retrieval:mailbox-add")).content.decode()
        assert "alice@example.org" in page and "charlie@" not in page
        assert "root@" not in page
        assert Mailbox.objects.count() == 1

    def test_a_superuser_sets_what_users_may_not(self, client, trio, tmp_path):
        ca = tmp_path / "ca.pem"
        ca.write_text("-----BEGIN CERTIFICATE-----\n")
        response = _as(client, trio.root).post(
            reverse("retrieval:mailbox-add"),
            _form(
                owner=str(trio.root.pk),
                name="root-mail",
                host="127.0.0.1",
                port="10993",
                tls_mode="none",
                verify_tls=None,
                ca_file=str(ca),
                timeout="30",
                poll_interval="20",
                delivery_kind="mda",
                delivery_host="localhost",
                delivery_port="25",
                mda="/usr/bin/procmail -d %T",
                recipient="",
            ),
        )
        assert response.status_code == 302, _errors(response)
        mailbox = Mailbox.objects.get(name="root-mail")
        assert mailbox.owner == trio.root and not mailbox.verify_tls
        assert mailbox.delivery_kind == "mda"
        assert mailbox.options == {"user": {"mda": "/usr/bin/procmail -d %T"}}

    @pytest.mark.parametrize(
        ("fields", "words"),
        [
            (
                {"ca_file": "/nonexistent/ca.pem"},
                "There is no such file on this server.",
            ),
            (
                {"delivery_host": "mx one"},
                "The listener address cannot contain spaces.",
            ),
            ({"recipient": "not-an-address"}, "Enter a valid email address."),
            ({"delivery_kind": "mda"}, "Delivery to a program needs the command"),
            ({"poll_interval": "5"}, "Poll at most once every 10 seconds"),
            ({"delivery_port": "0"}, "greater than or equal to 1"),
        ],
    )
    def test_a_superuser_is_refused_in_words_too(self, client, trio, fields, words):
        data = _form(owner=str(trio.root.pk), host="127.0.0.1") | {
            "ca_file": "",
            "timeout": "120",
            "delivery_kind": "smtp",
            "delivery_host": "localhost",
            "delivery_port": "25",
            "recipient": "",
            "mda": "",
        }
        response = _as(client, trio.root).post(
            reverse("retrieval:mailbox-add"), data | fields
        )
        assert words in _errors(response)
        assert Mailbox.objects.count() == 1

    def test_a_superuser_cannot_give_a_users_mailbox_a_superusers_rights(
        self, client, trio, settings
    ):
        settings.FETCH_ALLOW_PRIVATE_HOSTS = False
        response = _as(client, trio.root).post(
            reverse("retrieval:mailbox-add"),
            _form(
                owner=str(trio.alice.pk),
                host="127.0.0.1",
                delivery_kind="mda",
                delivery_host="localhost",
                delivery_port="25",
                mda="/usr/bin/procmail",
                timeout="120",
            ),
        )
        errors = _errors(response)
        assert "This server address is not allowed" in errors
        assert "Only a mailbox owned by a superuser may deliver to a program" in errors


class EditTests:
    def test_an_empty_password_keeps_the_stored_one(self, client, trio):
        response = _as(client, trio.alice).post(
            _urls(trio.mailbox, trio.run)["edit"], _edit_data(trio.mailbox, name="x")
        )
        assert response.status_code == 302
        trio.mailbox.refresh_from_db()
        assert trio.mailbox.name == "x" and trio.mailbox.get_password() == SECRET

    def test_a_new_password_replaces_it_and_remove_clears_it(self, client, trio):
        url = _urls(trio.mailbox, trio.run)["edit"]
        _as(client, trio.alice)
        client.post(url, _edit_data(trio.mailbox, new_password="n3w"))
        trio.mailbox.refresh_from_db()
        assert trio.mailbox.get_password() == "n3w"
        client.post(url, _edit_data(trio.mailbox, clear_password="on"))
        trio.mailbox.refresh_from_db()
        assert not trio.mailbox.has_password

    def test_new_and_remove_together_are_refused(self, client, trio):
        response = _as(client, trio.alice).post(
            _urls(trio.mailbox, trio.run)["edit"],
            _edit_data(trio.mailbox, new_password="n3w", clear_password="on"),
        )
        assert "not both" in _errors(response)

    def test_ownership_cannot_be_reassigned(self, client, trio):
        for user in (trio.alice, trio.bob, trio.root):
            data = _edit_data(trio.mailbox, superuser=user.is_superuser)
            response = _as(client, user).post(
                _urls(trio.mailbox, trio.run)["edit"],
                data | {"owner": str(trio.charlie.pk), "domain": "999"},
            )
            assert response.status_code == 302, _errors(response)
            trio.mailbox.refresh_from_db()
            assert trio.mailbox.owner == trio.alice
            assert trio.mailbox.domain == trio.domain

    def test_the_stored_password_is_not_sent_to_a_new_server(self, client, trio):
        url = _urls(trio.mailbox, trio.run)["edit"]
        _as(client, trio.bob)
        response = client.post(url, _edit_data(trio.mailbox, host="9.9.9.9"))
        assert "type the password again" in _errors(response)
        # The heading still names the stored mailbox, not the refused values.
        assert "alice-mail" in response.content.decode()
        SeenMessage.objects.create(mailbox=trio.mailbox, uid="1")
        response = client.post(
            url, _edit_data(trio.mailbox, host="9.9.9.9", new_password="n3w")
        )
        assert response.status_code == 302
        trio.mailbox.refresh_from_db()
        assert trio.mailbox.host == "9.9.9.9"
        # Another server's UIDs: the old ledger would delete its new messages unseen.
        assert not SeenMessage.objects.filter(mailbox=trio.mailbox).exists()

    def test_the_ledger_stays_when_the_account_stays(self, client, trio):
        SeenMessage.objects.create(mailbox=trio.mailbox, uid="1")
        _as(client, trio.alice).post(
            _urls(trio.mailbox, trio.run)["edit"],
            _edit_data(trio.mailbox, port="993", keep="on"),
        )
        assert SeenMessage.objects.filter(mailbox=trio.mailbox).exists()

    def test_what_a_superuser_set_stays_until_changed(self, client, trio):
        Mailbox.objects.filter(pk=trio.mailbox.pk).update(
            verify_tls=False, poll_interval=15, tls_mode="none", delivery_port=2525
        )
        trio.mailbox.refresh_from_db()
        url = _urls(trio.mailbox, trio.run)["edit"]
        response = _as(client, trio.alice).post(
            url, _edit_data(trio.mailbox, name="renamed")
        )
        assert response.status_code == 302
        trio.mailbox.refresh_from_db()
        assert trio.mailbox.name == "renamed" and trio.mailbox.delivery_port == 2525
        assert not trio.mailbox.verify_tls and trio.mailbox.tls_mode == "none"
        response = client.post(url, _edit_data(trio.mailbox, poll_interval="20"))
        assert "Poll at most once every 60 seconds" in _errors(response)

    def test_a_user_cannot_turn_off_the_certificate_check(self, client, trio):
        response = _as(client, trio.alice).post(
            _urls(trio.mailbox, trio.run)["edit"],
            _edit_data(trio.mailbox, verify_tls=None),
        )
        assert "Only a superuser may turn off" in _errors(response)

    def test_a_superuser_switches_delivery_away_from_a_program(self, client, trio):
        mailbox = make_mailbox(
            trio.root,
            host="127.0.0.1",
            delivery_kind="mda",
            options={"user": {"mda": "/usr/bin/procmail"}},
        )
        data = _edit_data(mailbox, superuser=True) | {
            "delivery_kind": "smtp",
            "mda": "/usr/bin/procmail",
        }
        response = _as(client, trio.root).post(
            reverse("retrieval:mailbox-edit", args=[mailbox.pk]), data
        )
        assert response.status_code == 302, _errors(response)
        mailbox.refresh_from_db()
        assert mailbox.delivery_kind == "smtp" and mailbox.options == {}


class RulesTests:
    def test_a_domain_administrator_saves_rules_in_order(self, client, trio):
        url = _urls(trio.mailbox, trio.run)["rules"]
        response = _as(client, trio.bob).post(
            url, {"rules": "jdoe -> joe\r\njane\r\n\r\nJoe@Example.org -> joe\n*\n"}
        )
        assert response.status_code == 302
        rules = list(trio.mailbox.rules.values_list("position", "remote", "local"))
        assert rules == [
            (0, "jdoe", "joe"),
            (1, "jane", ""),
            (2, "Joe@Example.org", "joe"),
            (3, "*", ""),
        ]
        page = client.get(url).content.decode()
        assert "jdoe -&gt; joe\njane\nJoe@Example.org -&gt; joe\n*" in page
        detail = client.get(_urls(trio.mailbox, trio.run)["detail"]).content.decode()
        assert "jdoe → joe" in detail

    def test_saving_again_replaces_the_list(self, client, trio):
        url = _urls(trio.mailbox, trio.run)["rules"]
        _as(client, trio.bob)
        client.post(url, {"rules": "a\nb"})
        client.post(url, {"rules": "b -> c"})
        assert list(trio.mailbox.rules.values_list("remote", "local")) == [("b", "c")]
        client.post(url, {"rules": ""})
        assert not trio.mailbox.rules.exists()

    @pytest.mark.parametrize(
        ("text", "words"),
        [
            ("joe\n* -> x", "Line 2: * takes no local name"),
            ("a -> b -> c", "Line 1: write one “->” per rule."),
            ("joe\njane\nJOE -> x", "Line 3: JOE is listed twice."),
            ("jo e", "Line 1: “jo e” is not a mail name"),
            ("jo=e", "Line 1: “jo=e” is not a mail name"),
            ("joe -> ", "Line 1: a name is missing"),
            ("-> joe", "Line 1: a name is missing"),
            ("jo*e", "is not a mail name"),
        ],
    )
    def test_bad_rules_are_refused_in_words(self, client, trio, text, words):
        response = _as(client, trio.bob).post(
            _urls(trio.mailbox, trio.run)["rules"], {"rules": text}
        )
        assert words in _errors(response)
        assert not trio.mailbox.rules.exists()


class PollNowTests:
    def test_it_queues_a_manual_poll_after_commit(
        self, client, trio, monkeypatch, django_capture_on_commit_callbacks
    ):
        queued = []
        monkeypatch.setattr(poll_mailbox, "delay", lambda *a: queued.append(a))
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = _as(client, trio.alice).post(
                _urls(trio.mailbox, trio.run)["poll"], follow=True
            )
        assert len(callbacks) == 1
        assert queued == [(trio.mailbox.pk, "manual")]
        assert "A poll was queued" in response.content.decode()

    def test_it_is_rate_limited_per_person_and_mailbox(
        self, client, trio, monkeypatch, django_capture_on_commit_callbacks
    ):
        queued = []
        monkeypatch.setattr(poll_mailbox, "delay", lambda *a: queued.append(a))
        url = _urls(trio.mailbox, trio.run)["poll"]
        with django_capture_on_commit_callbacks(execute=True):
            _as(client, trio.alice).post(url)
            again = client.post(url, follow=True)
            _as(client, trio.bob).post(url)
        assert "wait a few seconds" in again.content.decode()
        assert queued == [(trio.mailbox.pk, "manual")] * 2  # alice once, bob once

    def test_the_connection_test_is_rate_limited_too(
        self, client, trio, monkeypatch, eager_probes
    ):
        calls = []

        def fake(*, mailbox, progress=None):
            calls.append(mailbox.pk)
            return probes.LoginCheck(ok=True, greeting="+OK", error=""), ""

        monkeypatch.setattr(probes, "mailbox_login_check", fake)
        url = _urls(trio.mailbox, trio.run)["test"]
        first = eager_probes(_as(client, trio.alice), url)
        assert "Connected and logged in" in first.content.decode()
        again = client.post(url, follow=True)
        assert "wait a few seconds" in again.content.decode()
        assert calls == [trio.mailbox.pk]


class ConnectionTestTests:
    @pytest.fixture
    def dovecot_mailbox(self, trio, dovecot, mailuser):
        return make_mailbox(
            trio.root,
            password=mailuser.password,
            protocol="imap",
            host=dovecot.host,
            port=dovecot.imaps_port,
            tls_mode="implicit",
            ca_file=dovecot.ca_file,
            username=mailuser.name,
        )

    def test_it_logs_in_to_a_real_server_and_fetches_nothing(
        self, client, trio, dovecot, mailuser, dovecot_mailbox, eager_probes
    ):
        dovecot.put(mailuser.name, b"Subject: stays\r\n\r\nbody\r\n")
        response = eager_probes(
            _as(client, trio.root),
            reverse("retrieval:mailbox-test", args=[dovecot_mailbox.pk]),
        )
        text = response.content.decode()
        assert "Connected and logged in" in text
        assert "Dovecot" in text or "OK" in text
        assert mailuser.password not in text and "********" in text
        assert len(dovecot.messages(mailuser.name)) == 1
        assert not PollRun.objects.filter(mailbox=dovecot_mailbox).exists()

    def test_it_says_in_words_when_the_login_fails(
        self, client, trio, dovecot_mailbox, eager_probes
    ):
        dovecot_mailbox.set_password("wrong-password-1")
        dovecot_mailbox.save()
        response = eager_probes(
            _as(client, trio.root),
            reverse("retrieval:mailbox-test", args=[dovecot_mailbox.pk]),
        )
        text = response.content.decode()
        assert "The test failed: Wrong user name or password" in text
        assert "wrong-password-1" not in text

    def test_a_users_mailbox_is_not_connected_to_a_private_address(
        self, client, trio, settings, eager_probes
    ):
        settings.FETCH_ALLOW_PRIVATE_HOSTS = False
        Mailbox.objects.filter(pk=trio.mailbox.pk).update(host="127.0.0.1")
        response = eager_probes(
            _as(client, trio.alice), _urls(trio.mailbox, trio.run)["test"]
        )
        assert "This server address is not allowed" in response.content.decode()


class DeleteTests:
    def test_it_asks_then_deletes(self, client, trio):
        urls = _urls(trio.mailbox, trio.run)
        _as(client, trio.alice)
        page = client.get(urls["delete"]).content.decode()
        assert "Delete alice-mail?" in page and 'method="post"' in page
        assert Mailbox.objects.filter(pk=trio.mailbox.pk).exists()
        response = client.post(urls["delete"], follow=True)
        assert response.redirect_chain[-1][0] == reverse("home")
        assert "was deleted" in response.content.decode()
        assert not Mailbox.objects.filter(pk=trio.mailbox.pk).exists()
        assert not PollRun.objects.filter(pk=trio.run.pk).exists()

    def test_it_waits_for_a_running_poll(self, client, trio):
        Mailbox.objects.filter(pk=trio.mailbox.pk).update(
            lease_owner="w1", lease_until=timezone.now() + timedelta(minutes=5)
        )
        response = _as(client, trio.alice).post(
            _urls(trio.mailbox, trio.run)["delete"], follow=True
        )
        assert "being polled right now" in response.content.decode()
        assert Mailbox.objects.filter(pk=trio.mailbox.pk).exists()


class QueryCountTests:
    def test_the_detail_page_does_not_grow_with_polls_or_rules(
        self, client, trio, django_assert_max_num_queries
    ):
        for n in range(30):
            PollRun.objects.create(mailbox=trio.mailbox, exit_code=n % 3)
            MultidropRule.objects.create(
                mailbox=trio.mailbox, position=n, remote=f"u{n}"
            )
        _as(client, trio.bob)
        # 7: the polls are paginated now, and the paginator counts them (one query).
        with django_assert_max_num_queries(7):
            response = client.get(_urls(trio.mailbox, trio.run)["detail"])
        assert response.content.decode().count("/runs/") == 20

    def test_the_poll_page_does_not_grow_with_messages(
        self, client, trio, django_assert_max_num_queries
    ):
        MessageResult.objects.bulk_create(
            MessageResult(run=trio.run, uid=str(n), status="delivered")
            for n in range(250)
        )
        _as(client, trio.alice)
        with django_assert_max_num_queries(6):
            response = client.get(_urls(trio.mailbox, trio.run)["run"])
        assert "Page 1 of 2" in response.content.decode()

    def test_the_mailbox_list_does_not_grow_with_mailboxes(
        self, client, trio, django_assert_max_num_queries
    ):
        for n in range(15):
            mailbox = make_mailbox(trio.alice, domain=trio.domain, host=PUBLIC)
            PollRun.objects.create(mailbox=mailbox, exit_code=n % 2)
        _as(client, trio.bob)
        with django_assert_max_num_queries(7):
            response = client.get(reverse("retrieval:mailbox-list"))
        assert response.content.decode().count("/mailboxes/") >= 16
