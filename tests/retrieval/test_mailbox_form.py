"""The mailbox form (issue 13 item 4): provider presets, validation in words,
the write-only password, the folded advanced options, for every role."""

from __future__ import annotations

import html
import re

import pytest
from django.urls import reverse

from retrieval import presets, services
from retrieval.models import Mailbox
from tests.factories import make_mailbox
from tests.retrieval.test_views import (
    PUBLIC,
    SECRET,
    _as,
    _edit_data,
    _errors,
    _form,
    _quick_settings,
    trio,
)

__all__ = ["_quick_settings", "trio"]

pytestmark = pytest.mark.django_db

ADD = reverse("retrieval:mailbox-add")

# The providers' published values, written out again: a typo in presets.py fails.
PUBLISHED = {
    "imap": ("imap", "", 993),
    "pop3": ("pop3", "", 995),
    "gmail-imap": ("imap", "imap.gmail.com", 993),
    "gmail-pop3": ("pop3", "pop.gmail.com", 995),
    "outlook-imap": ("imap", "outlook.office365.com", 993),
    "outlook-pop3": ("pop3", "outlook.office365.com", 995),
    "yahoo-imap": ("imap", "imap.mail.yahoo.com", 993),
    "yahoo-pop3": ("pop3", "pop.mail.yahoo.com", 995),
    "gmx-imap": ("imap", "imap.gmx.net", 993),
    "gmx-pop3": ("pop3", "pop.gmx.net", 995),
    "icloud-imap": ("imap", "imap.mail.me.com", 993),
    "fastmail-imap": ("imap", "imap.fastmail.com", 993),
    "fastmail-pop3": ("pop3", "pop.fastmail.com", 995),
}


def _initial(response, name):
    return response.context["form"][name].value()


# --- presets -------------------------------------------------------------------------


def test_the_presets_are_the_providers_published_settings():
    assert {p.key: (p.protocol, p.host, p.port) for p in presets.PRESETS} == PUBLISHED
    assert {p.tls_mode for p in presets.PRESETS} == {"implicit"}
    assert not any(p.key.startswith("icloud-pop") for p in presets.PRESETS)
    oauth = {p.key: p.oauth_provider for p in presets.PRESETS if p.oauth_provider}
    assert oauth == {
        "gmail-imap": "google",
        "gmail-pop3": "google",
        "outlook-imap": "microsoft",
        "outlook-pop3": "microsoft",
    }


@pytest.mark.parametrize("key", sorted(PUBLISHED))
@pytest.mark.parametrize("role", ["alice", "bob", "root"])
def test_each_preset_fills_in_the_form(client, trio, key, role):
    chosen = presets.preset(key)
    assert chosen is not None
    response = _as(client, getattr(trio, role)).get(ADD, {"preset": key})
    assert response.status_code == 200
    protocol, host, port = PUBLISHED[key]
    assert _initial(response, "protocol") == protocol
    assert _initial(response, "host") == host
    assert _initial(response, "port") == port
    assert _initial(response, "tls_mode") == "implicit"
    page = html.unescape(response.content.decode())
    assert chosen.note in page
    assert f'value="{key}" ' in page and "selected" in page


def test_the_select_carries_every_preset_for_the_script(client, trio):
    page = _as(client, trio.alice).get(ADD).content.decode()
    for item in presets.PRESETS:
        assert f'data-host="{item.host}" data-port="{item.port}"' in page
    assert "js/mailbox-presets.js" in page
    assert "<script>" not in page  # the CSP allows files only


def test_an_unknown_preset_is_ignored(client, trio):
    response = _as(client, trio.alice).get(ADD, {"preset": "nope"})
    assert response.status_code == 200
    assert _initial(response, "host") in (None, "")


def test_the_note_follows_a_stored_provider(client, trio):
    trio.mailbox.host = "imap.gmail.com"
    trio.mailbox.set_password("new")
    trio.mailbox.save()
    url = reverse("retrieval:mailbox-edit", args=[trio.mailbox.pk])
    page = _as(client, trio.alice).get(url).content.decode()
    assert "app password" in page and "Connect a Google account" in page


@pytest.mark.parametrize("key", ["gmail-imap", "outlook-pop3", "icloud-imap"])
def test_a_mailbox_added_from_a_preset_is_saved_with_its_values(
    client, trio, settings, key
):
    settings.FETCH_ALLOW_PRIVATE_HOSTS = True  # no DNS here
    protocol, host, port = PUBLISHED[key]
    response = _as(client, trio.alice).post(
        ADD,
        _form(protocol=protocol, host=host, port=str(port), username="me@example.com"),
    )
    assert response.status_code == 302, _errors(response)
    mailbox = Mailbox.objects.get(username="me@example.com")
    assert (mailbox.protocol, mailbox.host, mailbox.port, mailbox.tls_mode) == (
        protocol,
        host,
        port,
        "implicit",
    )


# --- validation in words -------------------------------------------------------------

REFUSED = [
    ({"port": "0"}, "port", "The port must be between 1 and 65535."),
    ({"port": "65536"}, "port", "The port must be between 1 and 65535."),
    ({"port": "imap"}, "port", "The port must be a whole number between 1 and 65535."),
    (
        {"port": "993", "tls_mode": "starttls"},
        "tls_mode",
        "STARTTLS on port 993 will not work: 993 is for IMAP with TLS from the "
        "start (IMAPS). Choose “TLS from the start”, or port 143 for STARTTLS.",
    ),
    (
        {"port": "995", "protocol": "pop3", "tls_mode": "starttls"},
        "tls_mode",
        "STARTTLS on port 995 will not work: 995 is for POP3 with TLS from the "
        "start (POP3S). Choose “TLS from the start”, or port 110 for STARTTLS.",
    ),
    (
        {"port": "143", "tls_mode": "implicit"},
        "tls_mode",
        "TLS from the start on port 143 will not work: 143 is plain IMAP, where "
        "TLS begins with STARTTLS. Choose STARTTLS, or port 993.",
    ),
    (
        {"port": "110", "protocol": "pop3", "tls_mode": "implicit"},
        "tls_mode",
        "TLS from the start on port 110 will not work: 110 is plain POP3, where "
        "TLS begins with STARTTLS. Choose STARTTLS, or port 995.",
    ),
    (
        {"port": "995", "protocol": "imap"},
        "port",
        "Port 995 is for POP3 with TLS from the start (POP3S), not IMAP: leave "
        "Port empty, or enter 993.",
    ),
    (
        {"port": "993", "protocol": "pop3"},
        "port",
        "Port 993 is for IMAP with TLS from the start (IMAPS), not POP3: leave "
        "Port empty, or enter 995.",
    ),
    (
        {"host": "imap.example.org:993"},
        "host",
        "Put the port number in the Port field, not after the server name.",
    ),
    (
        {"host": "not a host"},
        "host",
        "This is not a server name: enter one such as imap.example.org, or an "
        "IP address.",
    ),
    ({"limit": "-1"}, "limit", "Enter a size of 0 bytes or more."),
    ({"fetchlimit": "-2"}, "fetchlimit", "Enter a number of messages, 0 or more."),
    (
        {"sslfingerprint": "AB:CD"},
        "sslfingerprint",
        "The certificate fingerprint must be an MD5 (32 hex digits, as fetchmail "
        "prints it) or SHA-256 (64 hex digits) value.",
    ),
    (
        {"poll_interval": "5"},
        "poll_interval",
        "Poll at most once every 60 seconds: enter 60 or more.",
    ),
]


@pytest.mark.parametrize(("data", "field", "words"), REFUSED)
def test_each_refusal_is_said_in_words_on_its_field(client, trio, data, field, words):
    response = _as(client, trio.alice).post(ADD, _form(**data))
    assert response.context["form"].errors[field] == [words]
    assert not Mailbox.objects.filter(username="someone").exists()
    page = response.content.decode()
    assert "The mailbox was not saved" in page
    if field in ("limit", "fetchlimit", "sslfingerprint"):
        # A refused advanced option unfolds its section.
        assert '<details class="advanced" open>' in page


def test_no_encryption_on_a_tls_port_is_refused_for_a_superuser_too(client, trio):
    response = _as(client, trio.root).post(
        ADD, _form(port="995", protocol="pop3", tls_mode="none")
    )
    assert response.context["form"].errors["tls_mode"] == [
        "No encryption on port 995 will not work: 995 is for POP3 with TLS from "
        "the start (POP3S). Choose “TLS from the start”, or port 110 for STARTTLS."
    ]


def test_an_unusual_port_is_the_persons_choice(client, trio, settings):
    settings.FETCH_ALLOW_PRIVATE_HOSTS = True  # any port, for this test
    response = _as(client, trio.alice).post(
        ADD, _form(port="10993", tls_mode="starttls")
    )
    assert response.status_code == 302, _errors(response)


def test_a_stored_mismatch_is_left_alone_until_the_server_settings_change(client, trio):
    """Like the other rules on values: a mailbox saved before stays editable."""
    Mailbox.objects.filter(pk=trio.mailbox.pk).update(port=993, tls_mode="starttls")
    trio.mailbox.refresh_from_db()
    url = reverse("retrieval:mailbox-edit", args=[trio.mailbox.pk])
    response = _as(client, trio.alice).post(
        url, _edit_data(trio.mailbox, name="renamed")
    )
    assert response.status_code == 302, _errors(response)
    response = client.post(url, _edit_data(trio.mailbox, port="995"))
    assert "not IMAP" in _errors(response)


# --- the write-only password and the folded options -----------------------------------


@pytest.mark.parametrize("role", ["alice", "bob", "root"])
def test_the_password_is_write_only(client, trio, role):
    url = reverse("retrieval:mailbox-edit", args=[trio.mailbox.pk])
    page = _as(client, getattr(trio, role)).get(url).content.decode()
    field = re.search(r'<input type="password"[^>]*name="new_password"[^>]*>', page)
    assert field is not None and "value=" not in field.group(0)
    assert SECRET not in page
    assert "A password is stored; it is never shown." in page


@pytest.mark.parametrize("role", ["alice", "bob", "root"])
def test_advanced_options_are_folded(client, trio, role):
    page = _as(client, getattr(trio, role)).get(ADD).content.decode()
    basic, _, advanced = page.partition('<details class="advanced">')
    assert "<summary>Advanced options</summary>" in advanced
    for name in (
        "keep",
        "fetchall",
        "folders",
        "limit",
        "fetchlimit",
        "sslfingerprint",
    ):
        assert f'name="{name}"' in advanced and f'name="{name}"' not in basic
    for name in ("host", "port", "tls_mode", "username", "new_password"):
        assert f'name="{name}"' in basic
    assert ('name="delivery_host"' in advanced) is (role == "root")


PIN = "ab" * 32


def test_limits_and_the_pin_reach_the_poll(client, trio):
    url = reverse("retrieval:mailbox-edit", args=[trio.mailbox.pk])
    response = _as(client, trio.alice).post(
        url,
        _edit_data(trio.mailbox, limit="500000", fetchlimit="20", sslfingerprint=PIN),
    )
    assert response.status_code == 302, _errors(response)
    trio.mailbox.refresh_from_db()
    assert trio.mailbox.options["user"] == {
        "limit": 500000,
        "fetchlimit": 20,
        "sslfingerprint": PIN,
    }
    spec = services.mailbox_spec(trio.mailbox)
    assert (spec.limit, spec.fetchlimit) == (500000, 20)
    assert spec.server.tls.fingerprint == PIN
    page = client.get(url).content.decode()
    assert 'value="500000"' in page and PIN in page
    # Emptied, they are gone (not stored as 0 or "").
    response = client.post(url, _edit_data(trio.mailbox))
    assert response.status_code == 302, _errors(response)
    trio.mailbox.refresh_from_db()
    assert "user" not in trio.mailbox.options


def test_another_persons_mailbox_stays_out_of_reach(client, trio):
    other = make_mailbox(trio.charlie, host=PUBLIC)
    url = reverse("retrieval:mailbox-edit", args=[other.pk])
    assert _as(client, trio.bob).get(url, {"preset": "gmail-imap"}).status_code == 404


def test_a_preset_on_the_edit_page_fills_the_form_and_saves_nothing(client, trio):
    url = reverse("retrieval:mailbox-edit", args=[trio.mailbox.pk])
    response = _as(client, trio.bob).get(url, {"preset": "yahoo-pop3"})
    assert _initial(response, "host") == "pop.mail.yahoo.com"
    assert _initial(response, "protocol") == "pop3"
    assert _initial(response, "port") == 995
    assert "Yahoo: create an app password" in response.content.decode()
    trio.mailbox.refresh_from_db()
    assert trio.mailbox.host == PUBLIC  # only a POST saves
