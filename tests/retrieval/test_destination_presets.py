"""Presets on both sides (issue 16): "Where messages go" offers Gmail and
Microsoft 365 as the source's select offers providers, with and without
JavaScript (``?destination_preset=KEY``), for every role; where the preset's
OAuth2 provider is configured, the destination logs in with XOAUTH2 (no
password asked) and the mailbox page offers that provider's "Connect" button
for that side."""

from __future__ import annotations

import html

import pytest
from django.urls import reverse

from retrieval import presets
from retrieval.models import Mailbox
from tests.factories import make_mailbox
from tests.retrieval.test_views import _as, _errors, _form, _quick_settings, trio

__all__ = ["_quick_settings", "trio"]

pytestmark = pytest.mark.django_db

ADD = reverse("retrieval:mailbox-add")
# The providers' published values, written out again: a typo in presets.py fails.
PUBLISHED = {
    "gmail": ("imap.gmail.com", 993, "google"),
    "microsoft": ("outlook.office365.com", 993, "microsoft"),
}


def _provider(label: str) -> dict[str, object]:
    # Endpoints nobody calls here: the page only needs the provider known.
    return {
        "label": label,
        "client_id": f"{label.lower()}-client",
        "authorize_url": "https://accounts.example.com/authorize",
        "token_url": "https://accounts.example.com/token",
        "scopes": ["https://mail.google.com/"],
    }


@pytest.fixture
def google(settings):
    settings.FETCH_OAUTH_PROVIDERS = {
        "google": _provider("Google"),
        "microsoft": _provider("Microsoft"),
    }


def _initial(response, name):
    return response.context["form"][name].value()


def test_the_destination_presets_are_the_providers_published_settings():
    assert {
        p.key: (p.host, p.port, p.oauth_provider) for p in presets.DESTINATION_PRESETS
    } == PUBLISHED
    assert {(p.protocol, p.tls_mode) for p in presets.DESTINATION_PRESETS} == {
        ("imap", "implicit")
    }


@pytest.mark.parametrize("key", sorted(PUBLISHED))
@pytest.mark.parametrize("role", ["alice", "bob", "root"])
def test_each_destination_preset_fills_in_where_messages_go(client, trio, key, role):
    response = _as(client, getattr(trio, role)).get(ADD, {"destination_preset": key})
    assert response.status_code == 200
    host, port, _ = PUBLISHED[key]
    assert _initial(response, "delivery_kind") == Mailbox.DeliveryKind.IMAP
    assert _initial(response, "destination_host") == host
    assert _initial(response, "destination_port") == port
    assert _initial(response, "destination_tls_mode") == "implicit"
    # No provider configured: the login stays as it was (a password).
    assert _initial(response, "destination_auth") != Mailbox.Auth.XOAUTH2
    page = html.unescape(response.content.decode())
    assert presets.destination_preset(key).note in page
    assert f'value="{key}" data-delivery-kind="imap"' in page
    assert 'data-auth="xoauth2"' not in page


def test_both_sides_fill_in_at_once(client, trio):
    response = _as(client, trio.alice).get(
        ADD, {"preset": "gmx-pop3", "destination_preset": "gmail"}
    )
    assert (_initial(response, "host"), _initial(response, "protocol")) == (
        "pop.gmx.net",
        "pop3",
    )
    assert _initial(response, "destination_host") == "imap.gmail.com"


def test_a_configured_provider_makes_the_destination_an_oauth2_login(
    client, trio, google
):
    response = _as(client, trio.alice).get(ADD, {"destination_preset": "microsoft"})
    assert _initial(response, "destination_auth") == Mailbox.Auth.XOAUTH2
    page = response.content.decode()
    for key in PUBLISHED:
        assert f'value="{key}" data-delivery-kind="imap"' in page
    assert page.count('data-auth="xoauth2"') == 2


def test_an_unknown_destination_preset_is_ignored(client, trio):
    response = _as(client, trio.alice).get(ADD, {"destination_preset": "nope"})
    assert response.status_code == 200
    assert _initial(response, "destination_host") in (None, "")


def test_an_oauth2_destination_is_saved_without_a_password(client, trio, settings):
    settings.FETCH_ALLOW_PRIVATE_HOSTS = True  # no DNS here
    into = {
        "delivery_kind": "imap",
        "destination_host": "imap.gmail.com",
        "destination_port": "993",
        "destination_tls_mode": "implicit",
        "destination_username": "me@gmail.com",
        "destination_folder": "INBOX",
    }
    refused = _as(client, trio.alice).post(
        ADD, _form(username="pw@example.com", destination_auth="any", **into)
    )
    assert "Type the destination mailbox's password" in _errors(refused)
    response = _as(client, trio.alice).post(
        ADD, _form(username="me@example.com", destination_auth="xoauth2", **into)
    )
    assert response.status_code == 302, _errors(response)
    mailbox = Mailbox.objects.get(username="me@example.com")
    assert (mailbox.destination_host, mailbox.destination_auth) == (
        "imap.gmail.com",
        "xoauth2",
    )
    assert not mailbox.destination_password_encrypted


@pytest.mark.parametrize("role", ["alice", "bob", "root"])
def test_the_mailbox_page_offers_the_presets_provider_for_each_side(
    client, trio, google, role
):
    trio.mailbox.refresh_from_db()
    Mailbox.objects.filter(pk=trio.mailbox.pk).update(
        delivery_kind="imap",
        destination_host="outlook.office365.com",
        destination_username="me@example.com",
        destination_auth="xoauth2",
    )
    url = reverse("retrieval:mailbox-detail", args=[trio.mailbox.pk])
    page = _as(client, getattr(trio, role)).get(url).content.decode()
    destination = page[page.index('id="oauth-destination-heading"') :]
    source = page[page.index('id="oauth-heading"') : page.index("oauth-destination")]
    # The destination is a Microsoft 365 server: that provider's button only.
    assert "Connect a Microsoft account to deliver into" in destination
    assert "Connect a Google account" not in destination
    assert (
        reverse("retrieval:oauth-destination-connect", args=[trio.mailbox.pk])
        in destination
    )
    # The source's server is no provider's: every configured one is offered.
    assert "Connect a Google account" in source
    assert "Connect a Microsoft account" in source


def test_a_gmail_source_is_offered_google_alone(client, trio, google):
    other = make_mailbox(trio.alice, host="imap.gmail.com", auth="xoauth2")
    url = reverse("retrieval:mailbox-detail", args=[other.pk])
    page = _as(client, trio.alice).get(url).content.decode()
    assert "Connect a Google account" in page
    assert "Connect a Microsoft account" not in page
    assert 'id="oauth-destination-heading"' not in page  # delivered by SMTP
