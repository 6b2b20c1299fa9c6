"""esmtpname / esmtppassword: SMTP AUTH to a real listener that requires it.

The listener is Postfix (tests/support/postfix.py in SASL mode) checking
logins against the fixture Dovecot's users through Dovecot's SASL socket, as
a mail host set up that way does; what it accepts it relays into Dovecot's
catch-all mailbox. Postfix's own log says which mechanism and which user it
saw, so every test checks the login from the listener's side too.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from typing import TYPE_CHECKING

import pytest

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode, MessageStatus, PollReport
from retrieval.engine.run import poll
from retrieval.rcfile import Environment, parse_text
from retrieval.rcfile.specs import to_mailbox_specs
from tests.support.dovecot import MailUser
from tests.support.postfix import CATCHALL, Postfix, SaslSetup, have_postfix

if TYPE_CHECKING:
    from collections.abc import Iterator

    from retrieval.engine.spec import MailboxSpec
    from tests.support.dovecot import Dovecot

pytestmark = pytest.mark.live

MESSAGE = (
    b"From: sender@example.net\r\nTo: alice@client.example\r\n"
    b"Subject: relayed after SMTP AUTH\r\nMessage-ID: <auth@example.net>\r\n\r\n"
    b"body\r\n"
)
AUTH_LINE = re.compile(r"^C: AUTH (\S+)", re.M)


@pytest.fixture(scope="module")
def mx(dovecot: Dovecot) -> Iterator[Postfix]:
    if not have_postfix():
        pytest.skip("Postfix is not installed (bin/install-system-deps installs it)")
    sasl = SaslSetup(dovecot.auth_socket, dovecot.cert_file, dovecot.key_file)
    server = Postfix.start(dovecot.lmtp_port, sasl)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def account(dovecot: Dovecot) -> MailUser:
    """The identity the listener authenticates (esmtpname/esmtppassword)."""
    user = MailUser(f"relay{secrets.token_hex(4)}", secrets.token_urlsafe(12))
    dovecot.add_user(user.name, user.password)
    return user


@pytest.fixture
def catchall(dovecot: Dovecot, mx: Postfix) -> str:
    dovecot.add_user(CATCHALL, secrets.token_urlsafe(12))
    dovecot.doveadm("expunge", "-u", CATCHALL, "mailbox", "INBOX", "all")
    return CATCHALL


def spec_for(
    dovecot: Dovecot,
    mailuser: MailUser,
    port: int,
    esmtp: str,
) -> MailboxSpec:
    text = (
        f"poll 127.0.0.1 proto imap service {dovecot.imaps_port} {esmtp}\n"
        f"  user {mailuser.name} pass {mailuser.password} ssl "
        f"sslcertfile {dovecot.ca_file}\n"
        f"  smtphost 127.0.0.1/{port} smtpname alice@client.example\n"
    )
    (spec,) = to_mailbox_specs(parse_text(text, "rc"), Environment.fixed("joe"))
    return spec


def run(spec: MailboxSpec) -> tuple[PollReport, str]:
    transcript = ListTranscript()
    report = poll(spec, ledger=MemoryLedger(), transcript=transcript)
    return report, transcript.text()


def relayed(dovecot: Dovecot, mx: Postfix, count: int) -> list[bytes]:
    mx.wait_for_queue(0)
    deadline = time.monotonic() + 10
    while len(found := dovecot.messages(CATCHALL)) < count:
        assert time.monotonic() < deadline, mx.log_text()[-2000:]
        time.sleep(0.02)
    return found


def listener_saw(mx: Postfix, account: MailUser) -> list[str]:
    """The mechanisms Postfix logged a successful login of ``account`` with."""
    return re.findall(
        rf"sasl_method=(\S+), sasl_username={re.escape(account.name)}\b",
        mx.log_text(),
    )


@pytest.mark.parametrize(
    ("listener", "mechanism"),
    [("tls", "CRAM-MD5"), ("plain", "PLAIN"), ("login", "LOGIN")],
)
def test_the_login_goes_over_starttls_with_the_best_mechanism_offered(
    dovecot: Dovecot,
    mx: Postfix,
    catchall: str,
    mailuser: MailUser,
    account: MailUser,
    listener: str,
    mechanism: str,
) -> None:
    dovecot.put(mailuser.name, MESSAGE)
    esmtp = f"esmtpname {account.name} esmtppassword {account.password}"
    spec = spec_for(dovecot, mailuser, mx.auth_ports[listener], esmtp)

    report, text = run(spec)

    assert report.exit_code is ExitCode.SUCCESS, report.error
    (stored,) = relayed(dovecot, mx, 1)
    assert b"\nMessage-ID: <auth@example.net>\n" in stored  # Postfix adds a Date
    assert dovecot.messages(mailuser.name) == []
    assert listener_saw(mx, account) == [mechanism]
    # STARTTLS first (the listener offers AUTH only over TLS), then AUTH.
    upgrade = text.index("C: STARTTLS")
    assert upgrade < text.index("TLS established: TLS", upgrade) < text.index("C: AUTH")
    assert AUTH_LINE.findall(text) == [mechanism]
    assert f"ESMTP login as {account.name} ({mechanism}) accepted" in text
    assert account.password not in text


def test_on_this_host_a_listener_without_tls_gets_the_login_in_clear(
    dovecot: Dovecot,
    mx: Postfix,
    catchall: str,
    mailuser: MailUser,
    account: MailUser,
) -> None:
    """What fetchmail always does; the password does not leave the host."""
    dovecot.put(mailuser.name, MESSAGE)
    esmtp = f"esmtpname {account.name} esmtppassword {account.password}"
    report, text = run(spec_for(dovecot, mailuser, mx.auth_ports["cleartext"], esmtp))
    assert report.exit_code is ExitCode.SUCCESS, report.error
    assert len(relayed(dovecot, mx, 1)) == 1
    assert "offers no STARTTLS: ESMTP login in clear" in text
    assert listener_saw(mx, account) == ["CRAM-MD5"]
    assert account.password not in text


def test_a_refused_login_delivers_nothing_and_deletes_nothing(
    dovecot: Dovecot,
    mx: Postfix,
    catchall: str,
    mailuser: MailUser,
    account: MailUser,
) -> None:
    dovecot.put(mailuser.name, MESSAGE)
    esmtp = f"esmtpname {account.name} esmtppassword wrong-{account.password}"

    report, text = run(spec_for(dovecot, mailuser, mx.auth_ports["tls"], esmtp))

    assert report.exit_code is ExitCode.SMTP
    assert f"refused the ESMTP login of {account.name!r}" in report.error
    assert "535" in report.error
    assert "MAIL FROM" not in text
    assert len(dovecot.messages(mailuser.name)) == 1
    assert dovecot.messages(CATCHALL) == []
    assert listener_saw(mx, account) == []


def test_without_esmtppassword_the_listener_refuses_and_the_mail_stays(
    dovecot: Dovecot,
    mx: Postfix,
    catchall: str,
    mailuser: MailUser,
) -> None:
    dovecot.put(mailuser.name, MESSAGE)
    report, text = run(spec_for(dovecot, mailuser, mx.auth_ports["tls"], ""))
    assert report.messages[0].status is MessageStatus.REFUSED
    assert report.messages[0].listener_reply.startswith("554")
    assert "C: AUTH" not in text
    assert len(dovecot.messages(mailuser.name)) == 1  # softbounce keeps it


class CertificateTests:
    """``listener_verify``: no rcfile keyword sets it (fetchmail has no TLS to
    the listener at all); the engine's default is to check the certificate
    unless the listener is on this host."""

    @pytest.fixture
    def esmtp(self, account: MailUser) -> str:
        return f"esmtpname {account.name} esmtppassword {account.password}"

    def verified(self, spec: MailboxSpec, ca_file: str) -> MailboxSpec:
        delivery = dataclasses.replace(
            spec.delivery, listener_verify=True, listener_ca_file=ca_file
        )
        return dataclasses.replace(spec, delivery=delivery)

    def test_a_checked_certificate_from_the_right_ca_passes(
        self,
        dovecot: Dovecot,
        mx: Postfix,
        catchall: str,
        mailuser: MailUser,
        esmtp: str,
    ) -> None:
        dovecot.put(mailuser.name, MESSAGE)
        spec = spec_for(dovecot, mailuser, mx.auth_ports["tls"], esmtp)
        report, _ = run(self.verified(spec, dovecot.ca_file))
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert len(relayed(dovecot, mx, 1)) == 1

    def test_a_certificate_that_does_not_verify_gets_no_password(
        self,
        dovecot: Dovecot,
        mx: Postfix,
        catchall: str,
        mailuser: MailUser,
        esmtp: str,
    ) -> None:
        dovecot.put(mailuser.name, MESSAGE)
        spec = spec_for(dovecot, mailuser, mx.auth_ports["tls"], esmtp)
        report, text = run(self.verified(spec, dovecot.wrong_ca_file))
        assert report.exit_code is ExitCode.SMTP
        assert "certificate could not be verified" in report.error
        assert "C: AUTH" not in text
        assert len(dovecot.messages(mailuser.name)) == 1

    def test_a_required_check_refuses_a_listener_without_starttls(
        self,
        dovecot: Dovecot,
        mx: Postfix,
        catchall: str,
        mailuser: MailUser,
        esmtp: str,
    ) -> None:
        dovecot.put(mailuser.name, MESSAGE)
        spec = spec_for(dovecot, mailuser, mx.auth_ports["cleartext"], esmtp)
        report, text = run(self.verified(spec, dovecot.ca_file))
        assert report.exit_code is ExitCode.SMTP
        assert "does not offer STARTTLS" in report.error
        assert "C: AUTH" not in text
