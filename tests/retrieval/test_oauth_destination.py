# The fixtures shared with test_oauth.py are imported, and named as arguments:
# ruff: noqa: F811
"""Issue 16: OAuth2 for the mailbox delivered into (delivery kind "IMAP
mailbox"): a grant per mailbox and purpose, connected from the mailbox page,
refreshed by the poll, "reconnect needed" when revoked.

Real parts: the suite's Dovecot (the source, password login), the OAuth2
Dovecot (the destination: its XOAUTH2 logins are checked by the local
authorization server's introspection, tests/support/oauth_dovecot.py) and that
authorization server (tests/support/oauth_server.py), all on loopback.
"""

from __future__ import annotations

import urllib.parse
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from retrieval import services
from retrieval.crypto import DecryptionError
from retrieval.engine.report import ExitCode
from retrieval.models import Mailbox, OAuthGrant
from tests.factories import make_mailbox, make_user
from tests.retrieval.test_oauth import (  # the fixtures and steps of the source's tests
    _callback,
    _consent,
    _poll,
    _wait_until_expired,
    alerts,  # noqa: F401
    provider,  # noqa: F401
    remote,  # noqa: F401
)

pytestmark = pytest.mark.django_db

MESSAGE = (
    b"From: old@example.net\r\nSubject: into the oauth mailbox\r\n"
    b"Date: Fri, 04 Dec 2026 09:00:00 +0000\r\n"
    b"Message-ID: <dest-oauth@example.net>\r\n\r\nAll of it.\r\n"
)
DESTINATION = OAuthGrant.Purpose.DESTINATION


@pytest.fixture
def ca_bundle(tmp_path, dovecot, oauth_dovecot) -> str:
    """The mailbox's CA bundle serves both of its servers: here two Dovecots
    with a CA each."""
    bundle = tmp_path / "both.pem"
    bundle.write_bytes(
        Path(dovecot.ca_file).read_bytes() + Path(oauth_dovecot.ca_file).read_bytes()
    )
    return str(bundle)


def _mailbox(owner, dovecot, mailuser, oauth_dovecot, remote_name, ca_file, **extra):
    """Fetch from the suite's Dovecot with a password; deliver into the OAuth2
    Dovecot with XOAUTH2 and no password (the grant gives the token)."""
    values = {
        "protocol": "imap",
        "host": dovecot.host,
        "port": dovecot.imaps_port,
        "tls_mode": "implicit",
        "ca_file": ca_file,
        "username": mailuser.name,
        "auth": "password",
        "delivery_kind": "imap",
        "destination_host": oauth_dovecot.host,
        "destination_port": oauth_dovecot.imaps_port,
        "destination_tls_mode": "implicit",
        "destination_auth": "xoauth2",
        "destination_username": remote_name,
        **extra,
    }
    return make_mailbox(owner, password=mailuser.password, **values)


def _query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def _connect_destination(client, server, mailbox, username: str) -> OAuthGrant:
    response = client.post(
        reverse("retrieval:oauth-destination-connect", args=[mailbox.pk]),
        {"provider": "generic"},
    )
    assert response.status_code == 302, response.content
    query = _query(response.url)
    assert query["login_hint"] == mailbox.destination_username
    answer = _callback(client, _consent(server, query, username=username))
    assert answer.status_code == 302
    return OAuthGrant.objects.get(mailbox=mailbox, purpose=DESTINATION)


@pytest.fixture
def setup(client, provider, dovecot, mailuser, oauth_dovecot, remote, ca_bundle):
    user = make_user()
    mailbox = _mailbox(user, dovecot, mailuser, oauth_dovecot, remote, ca_bundle)
    client.force_login(user)
    return user, mailbox


class DestinationGrantTests:
    def test_a_poll_appends_into_the_oauth_dovecot_with_the_grant(
        self,
        client,
        provider,
        setup,
        dovecot,
        mailuser,
        oauth_dovecot,
        remote,
    ):
        _, mailbox = setup
        grant = _connect_destination(client, provider, mailbox, remote)
        access, refresh = grant.get_access_token(), grant.get_refresh_token()
        assert provider.active(access) == remote
        # The source's login is untouched: still its password, no grant.
        mailbox.refresh_from_db()
        assert (mailbox.auth, mailbox.destination_auth) == ("password", "xoauth2")
        assert not OAuthGrant.objects.filter(purpose=OAuthGrant.Purpose.SOURCE)
        dovecot.put(mailuser.name, MESSAGE)
        asked = provider.introspections

        summary, run = _poll(mailbox)

        assert (summary.outcome, summary.delivered) == ("success", 1), run.error
        # Dovecot asked the provider about the token: a real XOAUTH2 login.
        assert provider.introspections > asked
        assert oauth_dovecot.messages(remote) == [MESSAGE.replace(b"\r\n", b"\n")]
        assert dovecot.messages(mailuser.name) == []
        page = client.get(reverse("retrieval:mailbox-detail", args=[mailbox.pk]))
        text = page.content.decode()
        for shown in (run.transcript, run.error, text):
            assert access not in shown and refresh not in shown
        assert 'id="oauth-destination-state">Connected to Test provider' in text

    def test_the_destination_token_is_refreshed_after_expiry(
        self,
        client,
        provider,
        settings,
        setup,
        dovecot,
        mailuser,
        oauth_dovecot,
        remote,
    ):
        settings.FETCH_OAUTH_REFRESH_MARGIN = 2
        _, mailbox = setup
        provider.access_lifetime = 5
        try:
            first = _connect_destination(
                client, provider, mailbox, remote
            ).get_access_token()
        finally:
            provider.access_lifetime = 3600
        _wait_until_expired(provider, first)
        calls = provider.refresh_calls
        dovecot.put(mailuser.name, MESSAGE)

        summary, run = _poll(mailbox)

        assert (summary.outcome, summary.delivered) == ("success", 1), run.error
        assert provider.refresh_calls == calls + 1
        grant = OAuthGrant.objects.get(mailbox=mailbox, purpose=DESTINATION)
        assert grant.get_access_token() != first and grant.refreshes == 1
        assert len(oauth_dovecot.messages(remote)) == 1

    def test_a_revoked_destination_grant_needs_a_reconnect_and_keeps_the_source(
        self,
        client,
        provider,
        setup,
        dovecot,
        mailuser,
        oauth_dovecot,
        remote,
        alerts,
        django_capture_on_commit_callbacks,
    ):
        _, mailbox = setup
        _connect_destination(client, provider, mailbox, remote)
        provider.revoke_all(remote)
        OAuthGrant.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
        dovecot.put(mailuser.name, MESSAGE)

        with django_capture_on_commit_callbacks(execute=True):
            summary, run = _poll(mailbox)

        assert run.exit_code == ExitCode.AUTHFAIL
        assert "delivered into" in run.error and "no longer accepts" in run.error
        mailbox.refresh_from_db()
        assert mailbox.health == Mailbox.Health.REAUTH
        assert [a[1] for a in alerts] == ["reconnect"]
        # Nothing was fetched, so nothing deleted at the source.
        assert dovecot.messages(mailuser.name) == [MESSAGE]
        assert oauth_dovecot.messages(remote) == []
        text = client.get(
            reverse("retrieval:mailbox-detail", args=[mailbox.pk])
        ).content.decode()
        assert (
            "Reconnect needed" in text and "Reconnect the destination</button>" in text
        )
        assert reverse("retrieval:oauth-destination-connect", args=[mailbox.pk]) in text

        with django_capture_on_commit_callbacks(execute=True):
            _connect_destination(client, provider, mailbox, remote)
        mailbox.refresh_from_db()
        assert mailbox.health == Mailbox.Health.OK
        summary, run = _poll(mailbox)
        assert (summary.outcome, summary.delivered) == ("success", 1), run.error
        assert len(oauth_dovecot.messages(remote)) == 1
        assert dovecot.messages(mailuser.name) == []


class GrantPerPurposeTests:
    def test_each_purpose_has_its_grant_and_disconnects_alone(
        self,
        client,
        provider,
        setup,
    ):
        _, mailbox = setup
        Mailbox.objects.filter(pk=mailbox.pk).update(auth="xoauth2")
        mailbox.refresh_from_db()
        _connect_destination(client, provider, mailbox, "dest-person")
        response = client.post(
            reverse("retrieval:oauth-connect", args=[mailbox.pk]),
            {"provider": "generic"},
        )
        query = _query(response.url)
        _callback(client, _consent(provider, query, username="source-person"))
        grants = {g.purpose: g for g in OAuthGrant.objects.filter(mailbox=mailbox)}
        assert set(grants) == {"source", "destination"}
        assert provider.active(grants["source"].get_access_token()) == "source-person"
        assert (
            provider.active(grants["destination"].get_access_token()) == "dest-person"
        )
        client.post(
            reverse("retrieval:oauth-destination-disconnect", args=[mailbox.pk])
        )
        assert [g.purpose for g in OAuthGrant.objects.filter(mailbox=mailbox)] == [
            "source"
        ]

    def test_a_token_copied_to_the_other_purpose_does_not_decrypt(
        self,
        client,
        provider,
        setup,
    ):
        _, mailbox = setup
        destination = _connect_destination(client, provider, mailbox, "someone")
        copied = OAuthGrant(
            mailbox=mailbox,
            purpose=OAuthGrant.Purpose.SOURCE,
            provider="generic",
            access_token_encrypted=destination.access_token_encrypted,
            refresh_token_encrypted=destination.refresh_token_encrypted,
        )
        for read in (copied.get_access_token, copied.get_refresh_token):
            with pytest.raises(DecryptionError):
                read()

    def test_another_destination_account_drops_only_its_grant(
        self,
        client,
        provider,
        setup,
    ):
        _, mailbox = setup
        _connect_destination(client, provider, mailbox, "someone")
        mailbox.destination_username = "somebody-else"
        services.mailbox_save(mailbox=mailbox)
        assert not OAuthGrant.objects.filter(mailbox=mailbox).exists()

    def test_without_a_connected_account_the_poll_says_connect(
        self,
        provider,
        setup,
    ):
        _, mailbox = setup
        summary, run = _poll(mailbox)
        assert summary.outcome != "success"
        assert "no account is connected" in run.error
