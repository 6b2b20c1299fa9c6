"""Issue 16 items 1 and 2: OAuth2 consent, tokens, refresh, reconnect needed.

Real parts: the local authorization server (tests/support/oauth_server.py, on
loopback) and a real Dovecot whose XOAUTH2/OAUTHBEARER logins are checked by
that server's introspection endpoint (``passdb { driver = oauth2 }``,
tests/support/oauth_dovecot.py), a real SMTP listener for delivery.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from datetime import timedelta

import pytest
import requests
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from django.core import mail
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from retrieval import services, tasks
from retrieval.engine.report import ExitCode
from retrieval.models import Mailbox, OAuthGrant, PollRun
from retrieval.services import oauth as oauth_services
from tests.factories import make_mailbox, make_user

pytestmark = pytest.mark.django_db

MESSAGE = b"From: a@example.org\r\nSubject: over oauth\r\n\r\nbody\r\n"


@pytest.fixture
def provider(settings, oauth_server):
    settings.FETCH_OAUTH_PROVIDERS = {"generic": oauth_server.provider()}
    settings.FETCH_BASE_URL = "http://testserver"
    settings.FETCH_OAUTH_REDIRECT_URI = ""
    settings.FETCH_ALLOW_PRIVATE_HOSTS = True
    return oauth_server


@pytest.fixture
def alerts(monkeypatch):
    queued: list[tuple] = []
    monkeypatch.setattr(tasks.send_alert, "delay", lambda *a: queued.append(a))
    return queued


@pytest.fixture
def remote(oauth_dovecot):
    """A fresh account on the OAuth2 Dovecot (its password is never used)."""
    import secrets

    name = f"oauth{secrets.token_hex(5)}"
    oauth_dovecot.add_user(name, secrets.token_urlsafe(12))
    return name


def _mailbox(
    owner, dovecot, username, smtp_listener, *, protocol="imap", auth="xoauth2"
):
    return make_mailbox(
        owner,
        protocol=protocol,
        host=dovecot.host,
        port=dovecot.imaps_port if protocol == "imap" else dovecot.pop3s_port,
        tls_mode="implicit",
        ca_file=dovecot.ca_file,
        username=username,
        auth=auth,
        delivery_kind="smtp",
        delivery_host=smtp_listener.host,
        delivery_port=smtp_listener.port,
    )


def _begin(client, mailbox) -> dict[str, str]:
    """Press "Connect": the query of the provider's consent URL."""
    response = client.post(
        reverse("retrieval:oauth-connect", args=[mailbox.pk]), {"provider": "generic"}
    )
    assert response.status_code == 302, response.content
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(response.url).query))


def _consent(server, query: dict[str, str], *, username: str, decision="allow") -> str:
    """The person's answer on the provider's page: where it sends the browser."""
    answer = requests.post(
        f"{server.url}/authorize",
        data={**query, "username": username, "decision": decision},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def _callback(client, location: str):
    parts = urllib.parse.urlsplit(location)
    assert parts.path == reverse("retrieval:oauth-callback")
    return client.get(parts.path, dict(urllib.parse.parse_qsl(parts.query)))


def _connect(client, server, mailbox, username: str):
    query = _begin(client, mailbox)
    response = _callback(client, _consent(server, query, username=username))
    assert response.status_code == 302
    assert response.url == reverse("retrieval:mailbox-detail", args=[mailbox.pk])
    return OAuthGrant.objects.get(mailbox=mailbox)


def _edit_pending(client, state: str, **changes) -> None:
    """Change the consent kept in the session (None removes the key)."""
    session = client.session
    pending = session[oauth_services.SESSION_KEY]
    for key, value in changes.items():
        if value is None:
            del pending[state][key]
        else:
            pending[state][key] = value
    session[oauth_services.SESSION_KEY] = pending
    session.save()


def _wait_until_expired(server, token: str) -> None:
    """Until the provider itself says the token has expired: Dovecot would
    refuse it now."""
    deadline = time.monotonic() + 60
    while server.active(token) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def _poll(mailbox, trigger="manual"):
    summary = services.mailbox_poll(mailbox_id=mailbox.pk, trigger=trigger)
    return summary, PollRun.objects.filter(mailbox=mailbox).order_by("-pk").first()


class ConsentTests:
    def test_the_consent_url_has_state_and_an_s256_challenge(self, client, provider):
        user = make_user()
        mailbox = make_mailbox(user, auth="xoauth2")
        client.force_login(user)
        query = _begin(client, mailbox)
        pending = client.session[oauth_services.SESSION_KEY][query["state"]]
        assert query["code_challenge_method"] == "S256"
        assert query["code_challenge"] == create_s256_code_challenge(
            pending["verifier"]
        )
        assert query["redirect_uri"] == "http://testserver" + reverse(
            "retrieval:oauth-callback"
        )
        assert query["client_id"] == provider.provider()["client_id"]
        assert query["login_hint"] == mailbox.username
        assert pending["mailbox"] == mailbox.pk and pending["user"] == user.pk

    @pytest.mark.parametrize(
        ("protocol", "auth"),
        [
            ("imap", "xoauth2"),
            ("pop3", "xoauth2"),
            ("imap", "oauthbearer"),
            ("pop3", "oauthbearer"),
        ],
    )
    def test_connect_then_a_poll_logs_in_to_dovecot_with_the_token(
        self, client, provider, oauth_dovecot, remote, smtp_listener, protocol, auth
    ):
        user = make_user()
        mailbox = _mailbox(
            user, oauth_dovecot, remote, smtp_listener, protocol=protocol, auth=auth
        )
        client.force_login(user)
        grant = _connect(client, provider, mailbox, remote)
        access, refresh = grant.get_access_token(), grant.get_refresh_token()
        assert provider.active(access) == remote
        # Encrypted at rest, bound to the mailbox.
        for token in (access, refresh):
            assert token and token not in grant.access_token_encrypted
            assert token not in grant.refresh_token_encrypted
        mailbox.refresh_from_db()
        assert mailbox.auth == auth  # a token mechanism chosen before stays
        oauth_dovecot.put(remote, MESSAGE)
        asked = provider.introspections
        summary, run = _poll(mailbox)
        assert (summary.outcome, summary.delivered) == ("success", 1), run.error
        # Dovecot asked the provider about the token: a real OAuth2 login.
        assert provider.introspections > asked
        assert (
            f"AUTHENTICATE {auth.upper()}" in run.transcript
            or "AUTH " + auth.upper() in run.transcript
        )
        assert [m.data.endswith(b"body\r\n") for m in smtp_listener.messages] == [True]
        assert oauth_dovecot.messages(remote) == [] or protocol == "pop3"
        # Never in the record of the poll, nor on the page.
        page = client.get(reverse("retrieval:mailbox-detail", args=[mailbox.pk]))
        for text in (run.transcript, run.error, page.content.decode()):
            assert access not in text and refresh not in text
        assert "Connected to Test provider" in page.content.decode()

    def test_the_page_lets_the_connect_form_redirect_to_the_provider(
        self, client, provider
    ):
        user = make_user()
        mailbox = make_mailbox(user, auth="xoauth2")
        client.force_login(user)
        page = client.get(reverse("retrieval:mailbox-detail", args=[mailbox.pk]))
        policy = page["Content-Security-Policy"]
        (form_action,) = [d for d in policy.split("; ") if d.startswith("form-action")]
        assert form_action == f"form-action 'self' {provider.url}"
        assert "Connect a Test provider account" in page.content.decode()

    def test_a_password_mailbox_switches_to_xoauth2(self, client, provider):
        user = make_user()
        mailbox = make_mailbox(user, auth="any", password="old")
        client.force_login(user)
        _connect(client, provider, mailbox, "someone")
        mailbox.refresh_from_db()
        assert mailbox.auth == Mailbox.Auth.XOAUTH2

    def test_openid_discovery_finds_the_endpoints(self, client, provider, settings):
        settings.FETCH_OAUTH_PROVIDERS = {
            "generic": provider.provider(
                authorize_url="",
                token_url="",
                revocation_url="",
                discovery_url=f"{provider.url}/.well-known/openid-configuration",
            )
        }
        user = make_user()
        mailbox = make_mailbox(user, auth="xoauth2")
        client.force_login(user)
        grant = _connect(client, provider, mailbox, "someone")
        assert provider.active(grant.get_access_token()) == "someone"

    def test_a_denied_consent_changes_nothing(self, client, provider):
        user = make_user()
        mailbox = make_mailbox(user, auth="any")
        client.force_login(user)
        location = _consent(
            provider, _begin(client, mailbox), username="x", decision="deny"
        )
        response = _callback(client, location)
        assert response.status_code == 302
        assert not OAuthGrant.objects.exists()
        page = client.get(response.url).content.decode()
        assert "did not grant access (access_denied)" in page

    def test_disconnect_revokes_at_the_provider_and_forgets(self, client, provider):
        user = make_user()
        mailbox = make_mailbox(user, auth="xoauth2")
        client.force_login(user)
        grant = _connect(client, provider, mailbox, "someone")
        access = grant.get_access_token()
        response = client.post(reverse("retrieval:oauth-disconnect", args=[mailbox.pk]))
        assert response.status_code == 302
        assert not OAuthGrant.objects.exists()
        assert provider.active(access) is None

    def test_another_account_drops_the_grant(self, client, provider):
        user = make_user()
        mailbox = make_mailbox(user, auth="xoauth2")
        client.force_login(user)
        _connect(client, provider, mailbox, "someone")
        mailbox.host = "imap.elsewhere.example"
        mailbox.save()
        assert not OAuthGrant.objects.exists()


class RefusalTests:
    def test_a_state_this_session_did_not_start_is_refused(self, client, provider):
        user = make_user()
        mailbox = make_mailbox(user, auth="xoauth2")
        client.force_login(user)
        query = _begin(client, mailbox)
        location = _consent(provider, query, username="x")
        forged = location.replace(query["state"], "forged-state")
        calls = provider.token_calls
        response = _callback(client, forged)
        assert response.status_code == 400
        assert "does not belong to a consent" in response.content.decode()
        assert provider.token_calls == calls  # the code was never exchanged
        assert not OAuthGrant.objects.exists()

    def test_a_state_is_used_once(self, client, provider):
        user = make_user()
        mailbox = make_mailbox(user, auth="xoauth2")
        client.force_login(user)
        location = _consent(provider, _begin(client, mailbox), username="x")
        assert _callback(client, location).status_code == 302
        assert _callback(client, location).status_code == 400

    def test_a_consent_without_its_pkce_verifier_is_refused(self, client, provider):
        user = make_user()
        mailbox = make_mailbox(user, auth="xoauth2")
        client.force_login(user)
        query = _begin(client, mailbox)
        _edit_pending(client, query["state"], verifier=None)
        response = _callback(client, _consent(provider, query, username="x"))
        assert response.status_code == 400
        assert "no PKCE verifier" in response.content.decode()
        assert not OAuthGrant.objects.exists()

    def test_the_provider_refuses_a_code_with_another_verifier(self, client, provider):
        user = make_user()
        mailbox = make_mailbox(user, auth="xoauth2")
        client.force_login(user)
        query = _begin(client, mailbox)
        _edit_pending(client, query["state"], verifier="x" * 64)
        response = _callback(client, _consent(provider, query, username="x"))
        assert response.status_code == 302
        assert not OAuthGrant.objects.exists()
        page = client.get(response.url).content.decode()
        assert "PKCE verification failed" in page

    def test_another_users_mailbox_cannot_be_connected(self, client, provider):
        alice, bob = make_user(), make_user()
        mailbox = make_mailbox(alice, auth="xoauth2")
        client.force_login(bob)
        response = client.post(
            reverse("retrieval:oauth-connect", args=[mailbox.pk]),
            {"provider": "generic"},
        )
        assert response.status_code == 404
        # Alice's consent, answered into Bob's session: not his.
        client.force_login(alice)
        location = _consent(provider, _begin(client, mailbox), username="x")
        client.force_login(bob)
        assert _callback(client, location).status_code == 400
        assert not OAuthGrant.objects.exists()

    def test_a_consent_recorded_for_another_person_is_refused(self, client, provider):
        alice, bob = make_user(), make_user()
        mailbox = make_mailbox(alice, auth="xoauth2")
        client.force_login(alice)
        query = _begin(client, mailbox)
        _edit_pending(client, query["state"], user=bob.pk)
        response = _callback(client, _consent(provider, query, username="x"))
        assert response.status_code == 400
        assert not OAuthGrant.objects.exists()

    def test_an_unknown_provider_is_refused_on_the_page(self, client, provider):
        user = make_user()
        mailbox = make_mailbox(user, auth="xoauth2")
        client.force_login(user)
        response = client.post(
            reverse("retrieval:oauth-connect", args=[mailbox.pk]),
            {"provider": "google"},
        )
        assert response.status_code == 302
        assert response.url == reverse("retrieval:mailbox-detail", args=[mailbox.pk])


class RefreshTests:
    def test_a_poll_after_expiry_refreshes_first(
        self, client, provider, settings, oauth_dovecot, remote, smtp_listener
    ):
        """Access tokens live 5 s here; the poll refreshes 2 s before expiry."""
        settings.FETCH_OAUTH_REFRESH_MARGIN = 2
        provider.access_lifetime = 5
        try:
            user = make_user()
            mailbox = _mailbox(user, oauth_dovecot, remote, smtp_listener)
            client.force_login(user)
            first = _connect(client, provider, mailbox, remote).get_access_token()
        finally:
            provider.access_lifetime = 3600
        _wait_until_expired(provider, first)
        calls = provider.refresh_calls
        oauth_dovecot.put(remote, MESSAGE)
        summary, run = _poll(mailbox)
        assert (summary.outcome, summary.delivered) == ("success", 1), run.error
        assert provider.refresh_calls == calls + 1
        grant = OAuthGrant.objects.get(mailbox=mailbox)
        assert grant.get_access_token() != first
        assert grant.refreshes == 1 and grant.get_refresh_token()
        # The fresh token is used as it is by the next poll: no refresh.
        summary, run = _poll(mailbox)
        assert summary.outcome == "nomail", run.error
        assert provider.refresh_calls == calls + 1

    def test_a_revoked_grant_needs_a_reconnect_with_an_alert(
        self,
        client,
        provider,
        settings,
        oauth_dovecot,
        remote,
        smtp_listener,
        alerts,
        django_capture_on_commit_callbacks,
    ):
        user = make_user()
        mailbox = _mailbox(user, oauth_dovecot, remote, smtp_listener)
        client.force_login(user)
        _connect(client, provider, mailbox, remote)
        provider.revoke_all(remote)  # the user removed fetchweb at the provider
        OAuthGrant.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
        with django_capture_on_commit_callbacks(execute=True):
            summary, run = _poll(mailbox)
        assert run.exit_code == ExitCode.AUTHFAIL
        assert "no longer accepts" in run.error
        mailbox.refresh_from_db()
        assert mailbox.health == Mailbox.Health.REAUTH
        assert [a[1] for a in alerts] == ["reconnect"]
        grant = OAuthGrant.objects.get(mailbox=mailbox)
        assert grant.access_token_encrypted == grant.refresh_token_encrypted == ""
        # The alert mail, as the task sends it.
        services.alert_send(mailbox_id=mailbox.pk, event="reconnect", reason=run.error)
        assert "reconnect needed" in mail.outbox[-1].subject
        # Off the schedule, and new mail does not poll it either.
        Mailbox.objects.filter(pk=mailbox.pk).update(next_poll_at=None)
        assert mailbox.pk not in services.mailboxes_claim_due()
        assert _poll(mailbox, trigger="schedule")[0].outcome == "skipped"
        # A second failing poll alerts no more.
        with django_capture_on_commit_callbacks(execute=True):
            _poll(mailbox)
        assert len(alerts) == 1
        # The page says so, with a one-click reconnect that works.
        page = client.get(reverse("retrieval:mailbox-detail", args=[mailbox.pk]))
        text = page.content.decode()
        assert "Reconnect needed" in text and ">Reconnect</button>" in text
        with django_capture_on_commit_callbacks(execute=True):
            _connect(client, provider, mailbox, remote)
        mailbox.refresh_from_db()
        assert mailbox.health == Mailbox.Health.OK
        assert (mailbox.failure_count, mailbox.permanent_failures) == (0, 0)
        assert mailbox.pk in services.mailboxes_claim_due()  # polled at once
        assert [a[1] for a in alerts] == ["reconnect", "recovered"]
        oauth_dovecot.put(remote, MESSAGE)
        summary, run = _poll(mailbox)
        assert (summary.outcome, summary.delivered) == ("success", 1), run.error

    def test_a_provider_that_is_down_is_a_temporary_failure(
        self, client, provider, settings, unused_port
    ):
        user = make_user()
        mailbox = make_mailbox(user, auth="xoauth2", host="127.0.0.1")
        client.force_login(user)
        _connect(client, provider, mailbox, "someone")
        OAuthGrant.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
        settings.FETCH_OAUTH_PROVIDERS = {
            "generic": provider.provider(
                token_url=f"http://127.0.0.1:{unused_port}/token"
            )
        }
        _, run = _poll(mailbox)
        assert run.exit_code == ExitCode.SOCKET
        assert "could not be refreshed" in run.error
        mailbox.refresh_from_db()
        assert mailbox.health == Mailbox.Health.FAILING
        assert OAuthGrant.objects.get().get_refresh_token()


@pytest.mark.django_db(transaction=True)
class TwoWorkersTests:
    def test_two_workers_refreshing_at_once_make_one_refresh(self, client, provider):
        if connection.vendor != "postgresql":
            pytest.skip("the row lock is watched in pg_stat_activity (PostgreSQL)")
        user = make_user()
        mailbox = make_mailbox(user, auth="xoauth2")
        client.force_login(user)
        _connect(client, provider, mailbox, "someone")
        OAuthGrant.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
        calls = provider.refresh_calls
        got: list[str] = []
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                got.append(oauth_services.oauth_access_token(mailbox=mailbox) or "")
            except BaseException as exc:
                errors.append(exc)
            finally:
                connection.close()

        provider.refresh_gate.clear()  # the provider holds the first refresh
        threads = [threading.Thread(target=worker) for _ in range(2)]
        try:
            for thread in threads:
                thread.start()
            # One worker is at the provider, the other waits for the row lock.
            deadline = time.monotonic() + 60
            while not (provider.refresh_calls == calls + 1 and _lock_waiters() == 1):
                assert time.monotonic() < deadline, (
                    provider.refresh_calls,
                    _lock_waiters(),
                )
                time.sleep(0.05)
        finally:
            provider.refresh_gate.set()
            for thread in threads:
                thread.join(60)
        assert not errors, errors
        assert provider.refresh_calls == calls + 1
        assert (
            len(got) == 2 and got[0] == got[1] and provider.active(got[0]) == "someone"
        )
        assert OAuthGrant.objects.get().refreshes == 1


def _lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return int(cursor.fetchone()[0])
