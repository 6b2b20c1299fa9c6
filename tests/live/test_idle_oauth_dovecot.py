"""The IDLE process with an OAuth2 mailbox (issue 16 item 2): the spec it builds
refreshes an expired access token first, and the IDLE login is AUTHENTICATE
XOAUTH2 against the OAuth2 Dovecot, whose passdb asks the local authorization
server. New mail then comes through a push poll that logs in the same way."""

from __future__ import annotations

import secrets
import smtplib
from datetime import timedelta

import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from django.utils import timezone

from retrieval import oauth, tasks
from retrieval.models import OAuthGrant, PollRun
from retrieval.push.supervisor import Supervisor
from retrieval.services import oauth as oauth_services
from tests.factories import make_mailbox, make_user
from tests.live.test_idle_dovecot import _memory_cache  # noqa: F401 - the fixture
from tests.push.support import WAIT, Running, wait_until

pytestmark = [
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("concurrent_db", "_memory_cache"),
]


def connect(mailbox, server, username: str) -> None:
    """What the consent page's "Allow" and the callback do, without a browser."""
    verifier = secrets.token_urlsafe(48)
    code = server.grant_code(
        username=username,
        redirect_uri=oauth.redirect_uri(),
        challenge=create_s256_code_challenge(verifier),
    )
    oauth_services.oauth_consent_finish(
        mailbox=mailbox,
        consent=oauth_services.PendingConsent(mailbox.pk, "generic", verifier),
        code=code,
    )


def test_idle_logs_in_with_a_refreshed_token_and_new_mail_is_fetched(
    oauth_dovecot, oauth_server, smtp_listener, settings, monkeypatch
):
    settings.FETCH_OAUTH_PROVIDERS = {"generic": oauth_server.provider()}
    monkeypatch.setattr(
        tasks.poll_mailbox, "delay", lambda *args: tasks.poll_mailbox.apply(args)
    )
    name = f"idle{secrets.token_hex(4)}"
    oauth_dovecot.add_user(name, secrets.token_urlsafe(12))
    owner = make_user("root@example.org", superuser=True)
    mailbox = make_mailbox(
        owner,
        protocol="imap",
        host=oauth_dovecot.host,
        port=oauth_dovecot.imaps_port,
        tls_mode="implicit",
        ca_file=oauth_dovecot.ca_file,
        username=name,
        auth="xoauth2",
        delivery_host="127.0.0.1",
        delivery_port=smtp_listener.port,
        recipient="alice@example.org",
        timeout=10,
        options={"user": {"idle": True}},
    )
    connect(mailbox, oauth_server, name)
    OAuthGrant.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    calls = oauth_server.refresh_calls
    with Running(Supervisor(interval=0.5, backoff=(0.2, 2.0))) as running:
        wait_until(lambda: running.idling() == {mailbox.pk})
        assert oauth_server.refresh_calls == calls + 1
        raw = (
            f"From: sender@example.net\r\nTo: {name}@localhost\r\n"
            "Subject: pushed\r\nMessage-ID: <oauth-push@example.net>\r\n\r\nBody.\r\n"
        ).encode()
        with smtplib.LMTP(
            oauth_dovecot.host, oauth_dovecot.lmtp_port, timeout=WAIT
        ) as lmtp:
            lmtp.sendmail("sender@example.net", [f"{name}@localhost"], raw)
        received = smtp_listener.wait_for(1, timeout=WAIT)
        assert received[0].data.endswith(raw)
        runs = PollRun.objects.filter(mailbox=mailbox)
        assert {r.trigger for r in runs} == {PollRun.Trigger.PUSH}
    # The push poll used the token refreshed for IDLE: one refresh in all.
    assert oauth_server.refresh_calls == calls + 1
    assert "AUTHENTICATE XOAUTH2" in runs.get().transcript
