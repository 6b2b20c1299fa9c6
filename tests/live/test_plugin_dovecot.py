"""fetchmail's plugin recipes against the real Dovecot, from the rcfile on.

* ``openssl s_client`` as the transport to Dovecot's IMAPS and POP3S ports
  (the TLS is the program's; the mailbox says ``sslproto ''``);
* Dovecot's own ``imap`` binary started for one user (``doveadm exec imap
  -u USER``), which greets ``* PREAUTH``: fetchmail's ``ssh host imapd`` recipe
  without the ssh, with ``auth ssh`` and no password at all.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode, PollReport
from retrieval.engine.run import poll
from retrieval.rcfile import Environment, parse_text
from retrieval.rcfile.specs import to_mailbox_specs
from tests.support.dovecot import DOVEADM

if TYPE_CHECKING:
    from tests.support.dovecot import Dovecot, MailUser
    from tests.support.smtp_listener import SmtpListener

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[2]
OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")

LOGIN_SENT = re.compile(r"^C: \S+ (LOGIN|AUTHENTICATE) ", re.M)
MESSAGE = (
    b"From: sender@example.net\r\nSubject: through the plugin\r\n"
    b"Message-ID: <plugin@example.net>\r\n\r\n.a dotted line\r\nbody\r\n"
)


def rcfile(user: MailUser, listener: SmtpListener, server: str, login: str) -> str:
    """One entry: ``server`` options, then the user's (``login``: password, TLS)."""
    return (
        f"poll 127.0.0.1 {server}\n"
        f"  user {user.name} {login}\n"
        f"  smtphost 127.0.0.1/{listener.port} smtpname joe@example.org\n"
    )


NO_STARTTLS = "sslproto ''"  # the program encrypts (or logs in) by itself


def run(text: str) -> tuple[PollReport, str]:
    (spec,) = to_mailbox_specs(parse_text(text, "rc"), Environment.fixed("joe"))
    transcript = ListTranscript()
    report = poll(spec, ledger=MemoryLedger(), transcript=transcript)
    return report, transcript.text()


def s_client(port: int, ca_file: str) -> str:
    return (
        f'service {port} plugin "{OPENSSL} s_client -quiet '
        f'-verify_return_error -CAfile {ca_file} -connect %h:%p"'
    )


@needs_openssl
@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_openssl_s_client_carries_the_session(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    protocol: str,
) -> None:
    dovecot.put(mailuser.name, MESSAGE)
    port = dovecot.imaps_port if protocol == "imap" else dovecot.pop3s_port
    server = f"proto {protocol} " + s_client(port, dovecot.ca_file)

    report, text = run(
        rcfile(
            mailuser, smtp_listener, server, f"pass {mailuser.password} {NO_STARTTLS}"
        )
    )

    assert report.exit_code is ExitCode.SUCCESS, report.error
    (received,) = smtp_listener.messages
    assert received.data.endswith(MESSAGE)
    assert dovecot.messages(mailuser.name) == []
    assert f"s_client -quiet -verify_return_error -CAfile {dovecot.ca_file}" in text
    assert f"-connect 127.0.0.1:{port}" in text
    assert "plugin: command exited with status 0" in text
    assert mailuser.password not in text


@needs_openssl
def test_a_certificate_the_program_rejects_ends_the_poll_with_its_words(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener
) -> None:
    dovecot.put(mailuser.name, MESSAGE)
    server = "proto imap " + s_client(dovecot.imaps_port, dovecot.wrong_ca_file)

    report, text = run(
        rcfile(
            mailuser, smtp_listener, server, f"pass {mailuser.password} {NO_STARTTLS}"
        )
    )

    assert report.exit_code is ExitCode.SOCKET
    assert "plugin command exited with status 1" in report.error
    assert "verify" in report.error.lower()
    assert not LOGIN_SENT.search(text)
    assert smtp_listener.messages == []
    assert len(dovecot.messages(mailuser.name)) == 1


def test_dovecots_imap_as_a_preauthenticated_plugin(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener
) -> None:
    dovecot.put(mailuser.name, MESSAGE)
    server = (
        f'proto imap auth ssh plugin "{DOVEADM} -c {dovecot.config_file} '
        f'exec imap -u {mailuser.name}"'
    )

    report, text = run(rcfile(mailuser, smtp_listener, server, login=NO_STARTTLS))

    assert report.exit_code is ExitCode.SUCCESS, report.error
    assert report.greeting.startswith("* PREAUTH")
    assert not LOGIN_SENT.search(text)
    (received,) = smtp_listener.messages
    assert received.data.endswith(MESSAGE)
    assert dovecot.messages(mailuser.name) == []


def test_without_sslproto_the_tunnel_must_still_offer_starttls(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener
) -> None:
    """fetchmail 6.4 requires STARTTLS unless told otherwise; over a tunnel
    that encrypts by itself the error says what to add."""
    dovecot.put(mailuser.name, MESSAGE)
    server = (
        f'proto imap auth ssh plugin "{DOVEADM} -c {dovecot.config_file} '
        f'exec imap -u {mailuser.name}"'
    )

    report, _ = run(rcfile(mailuser, smtp_listener, server, login=""))

    assert report.exit_code is ExitCode.SOCKET
    assert "PREAUTH" in report.error
    assert "add sslproto ''" in report.error
    assert len(dovecot.messages(mailuser.name)) == 1


@needs_openssl
def test_the_command_line_option_adds_a_plugin(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    tmp_path: Path,
) -> None:
    dovecot.put(mailuser.name, MESSAGE)
    rc = tmp_path / "rc"
    rc.write_text(
        rcfile(
            mailuser,
            smtp_listener,
            f"proto imap service {dovecot.imaps_port}",
            f"pass {mailuser.password} {NO_STARTTLS}",
        )
    )
    rc.chmod(0o600)
    plugin = f"{OPENSSL} s_client -quiet -CAfile {dovecot.ca_file} -connect %h:%p"
    result = subprocess.run(
        [sys.executable, "-m", "retrieval.engine", "-f", str(rc), "--plugin", plugin],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(smtp_listener.messages) == 1
    assert dovecot.messages(mailuser.name) == []
