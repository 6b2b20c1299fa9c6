"""SMTP AUTH with an OAuth2 token (DeliverySpec.esmtp_auth, issue 16 item 2).

Postfix in SASL mode (tests/support/postfix.py) asks the OAuth2 Dovecot
(tests/support/oauth_dovecot.py) through Dovecot's SASL socket, and Dovecot asks
the local authorization server (tests/support/oauth_server.py) whether the token
is active: the listener's side of XOAUTH2 / OAUTHBEARER is all real parts.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from typing import TYPE_CHECKING

import pytest
import requests
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode
from retrieval.engine.run import poll
from retrieval.engine.spec import Secret
from retrieval.rcfile import Environment, parse_text
from retrieval.rcfile.specs import to_mailbox_specs
from tests.support.oauth_server import CLIENT_ID, CLIENT_SECRET
from tests.support.postfix import CATCHALL, Postfix, SaslSetup, have_postfix

if TYPE_CHECKING:
    from collections.abc import Iterator

    from retrieval.engine.spec import MailboxSpec
    from tests.support.dovecot import Dovecot
    from tests.support.oauth_server import OAuthServer
    from tests.support.smtp_listener import SmtpListener

pytestmark = pytest.mark.live

MESSAGE = (
    b"From: sender@example.net\r\nTo: alice@client.example\r\n"
    b"Subject: relayed after XOAUTH2\r\nMessage-ID: <xoauth2@example.net>\r\n\r\n"
    b"body\r\n"
)


@pytest.fixture(scope="module")
def mx(oauth_dovecot: Dovecot) -> Iterator[Postfix]:
    if not have_postfix():
        pytest.skip("Postfix is not installed (bin/install-system-deps installs it)")
    sasl = SaslSetup(
        oauth_dovecot.auth_socket, oauth_dovecot.cert_file, oauth_dovecot.key_file
    )
    server = Postfix.start(oauth_dovecot.lmtp_port, sasl)
    try:
        yield server
    finally:
        server.stop()


def token_for(server: OAuthServer, username: str) -> str:
    """An access token, by the code grant with PKCE, as the consent gives one."""
    verifier = secrets.token_urlsafe(48)
    redirect = "http://127.0.0.1/callback"
    code = server.grant_code(
        username=username,
        redirect_uri=redirect,
        challenge=create_s256_code_challenge(verifier),
    )
    answer = requests.post(
        f"{server.url}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect,
            "code_verifier": verifier,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
        timeout=10,
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


SOURCE_PASSWORD = "source-password"


def spec_for(
    dovecot: Dovecot, mx: Postfix, source: str, account: str, token: str, mechanism: str
) -> MailboxSpec:
    """Fetch from ``source`` (a password login), deliver through Postfix logged in
    as ``account`` with ``token``."""
    text = (
        f"poll 127.0.0.1 proto imap service {dovecot.imaps_port}\n"
        f"  user {source} pass {SOURCE_PASSWORD} ssl sslcertfile {dovecot.ca_file}\n"
        f"  smtphost 127.0.0.1/{mx.auth_ports['tls']} smtpname alice@client.example\n"
    )
    (spec,) = to_mailbox_specs(parse_text(text, "rc"), Environment.fixed("joe"))
    return dataclasses.replace(
        spec,
        delivery=dataclasses.replace(
            spec.delivery,
            esmtp_name=account,
            esmtp_password=Secret(token),
            esmtp_auth=mechanism,
        ),
    )


@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
def test_the_listener_login_sends_the_token(
    oauth_dovecot: Dovecot, oauth_server: OAuthServer, mx: Postfix, mechanism: str
) -> None:
    source = f"src{secrets.token_hex(4)}"
    account = f"relay{secrets.token_hex(4)}"
    oauth_dovecot.add_user(source, SOURCE_PASSWORD)
    oauth_dovecot.add_user(account, secrets.token_urlsafe(12))
    oauth_dovecot.add_user(CATCHALL, secrets.token_urlsafe(12))
    oauth_dovecot.doveadm("expunge", "-u", CATCHALL, "mailbox", "INBOX", "all")
    oauth_dovecot.put(source, MESSAGE)
    token = token_for(oauth_server, account)
    spec = spec_for(oauth_dovecot, mx, source, account, token, mechanism)
    asked = oauth_server.introspections
    transcript = ListTranscript()
    report = poll(spec, ledger=MemoryLedger(), transcript=transcript)
    said = transcript.text()
    assert report.exit_code is ExitCode.SUCCESS, report.error
    assert re.findall(r"^C: AUTH (\S+)", said, re.M) == [mechanism.upper()]
    assert f"ESMTP login as {account} ({mechanism.upper()}) accepted" in said
    assert token not in said
    assert oauth_server.introspections > asked  # Dovecot checked the token
    assert re.search(
        rf"sasl_method={mechanism.upper()}, sasl_username={account}\b", mx.log_text()
    ), mx.log_text()[-2000:]
    mx.wait_for_queue(0)
    deadline = time.monotonic() + 10
    while not oauth_dovecot.messages(CATCHALL):
        assert time.monotonic() < deadline, mx.log_text()[-2000:]
        time.sleep(0.02)


def test_a_revoked_token_is_refused_and_nothing_is_deleted(
    oauth_dovecot: Dovecot, oauth_server: OAuthServer, mx: Postfix
) -> None:
    source = f"src{secrets.token_hex(4)}"
    account = f"relay{secrets.token_hex(4)}"
    oauth_dovecot.add_user(source, SOURCE_PASSWORD)
    oauth_dovecot.add_user(account, secrets.token_urlsafe(12))
    oauth_dovecot.put(source, MESSAGE)
    token = token_for(oauth_server, account)
    oauth_server.revoke_all(account)
    spec = spec_for(oauth_dovecot, mx, source, account, token, "xoauth2")
    report = poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())
    assert report.exit_code is ExitCode.SMTP
    assert f"refused the ESMTP login of {account!r}" in report.error
    assert len(oauth_dovecot.messages(source)) == 1


@pytest.mark.parametrize(
    ("mechanism", "words"),
    [
        ("xoauth2", "does not offer XOAUTH2"),
        ("cram-md5", "The ESMTP login mechanism 'cram-md5' is unknown"),
    ],
)
def test_a_token_is_sent_by_its_mechanism_or_not_at_all(
    oauth_dovecot: Dovecot, smtp_listener: SmtpListener, mechanism: str, words: str
) -> None:
    """A listener that does not offer the token's mechanism (this one offers no
    AUTH at all) gets no password-mechanism login instead, and no mail."""
    source = f"src{secrets.token_hex(4)}"
    oauth_dovecot.add_user(source, SOURCE_PASSWORD)
    oauth_dovecot.put(source, MESSAGE)
    text = (
        f"poll 127.0.0.1 proto imap service {oauth_dovecot.imaps_port}\n"
        f"  user {source} pass {SOURCE_PASSWORD} ssl "
        f"sslcertfile {oauth_dovecot.ca_file}\n"
        f"  smtphost 127.0.0.1/{smtp_listener.port}\n"
    )
    (spec,) = to_mailbox_specs(parse_text(text, "rc"), Environment.fixed("joe"))
    delivery = dataclasses.replace(
        spec.delivery,
        esmtp_name="relay",
        esmtp_password=Secret("a-token"),
        esmtp_auth=mechanism,
    )
    transcript = ListTranscript()
    report = poll(
        dataclasses.replace(spec, delivery=delivery),
        ledger=MemoryLedger(),
        transcript=transcript,
    )
    assert report.exit_code is not ExitCode.SUCCESS
    assert words in report.error
    assert "C: AUTH" not in transcript.text()
    assert smtp_listener.messages == []
    assert len(oauth_dovecot.messages(source)) == 1
