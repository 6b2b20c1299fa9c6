"""ETRN and ODMR against a stock Postfix: STARTTLS offered with a self-signed
certificate, as Debian's package sets it up (issue 10, item 8).

ETRN carries no secret and fetchmail never upgrades it, so without a TLS
option in the rcfile we ask in clear and the self-signed certificate is never
looked at; fetchmail 6.4 with the same rcfile is run alongside and gives the
same exit codes (``etrn.c``: 250 started is 0, 459 "node not allowed" is 3).
A TLS option named in the rcfile (``sslcertck``) still means a verified
STARTTLS, which this certificate fails before ETRN is sent.

ODMR sends a password, so it keeps the POP3/IMAP rule: STARTTLS, verified; the
self-signed certificate ends the session before AUTH.
"""

from __future__ import annotations

import smtplib
import subprocess
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.live.test_cli_dovecot import run_cli, write_rcfile
from tests.rcfile.oracle import FETCHMAIL, Oracle, have_fetchmail
from tests.support.postfix import HELD_DOMAIN, Postfix, have_postfix

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.support.dovecot import Dovecot
    from tests.support.smtp_listener import SmtpListener

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def stock_postfix(dovecot: Dovecot) -> Iterator[Postfix]:
    if not have_postfix():
        pytest.skip("Postfix is not installed (bin/install-system-deps installs it)")
    server = Postfix.start(dovecot.lmtp_port, self_signed=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def fetchmail_home() -> Iterator[Oracle]:
    if not have_fetchmail():
        pytest.skip("the fetchmail binary is not installed")
    home = Oracle()
    yield home
    home.close()


def rcfile(postfix: Postfix, protocol: str, domain: str, options: str = "") -> str:
    return (
        f"poll {postfix.host} proto {protocol} port {postfix.port}\n"
        f'    user "client" pass "Canary-odmr-7" fetchdomains {domain} {options}\n'
    )


def ours(tmp_path: Path, rc: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = write_rcfile(tmp_path / "ours.rc", rc)
    return run_cli("-f", str(path), "-i", str(tmp_path / "ours.ids"), *args)


def theirs(home: Oracle, rc: str) -> subprocess.CompletedProcess[str]:
    path = home.write(rc.encode(), "etrn.rc")
    kwargs: dict[str, Any] = {}
    if home.as_root:
        kwargs = {"user": home.pw.pw_uid, "group": home.pw.pw_gid, "extra_groups": []}
    return subprocess.run(
        [FETCHMAIL, "-f", str(path), "--nosyslog", "-d0", "-i", f"{home.dir}/ids"],
        cwd=home.dir,
        env=home.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kwargs,
    )


def hold_two(postfix: Postfix, listener: SmtpListener, tag: str) -> list[str]:
    postfix.hold_for(listener.host, listener.port)
    rcpts = [f"joe-{tag}@{HELD_DOMAIN}", f"ann-{tag}@{HELD_DOMAIN}"]
    for n, rcpt in enumerate(rcpts):
        postfix.send(
            f"Subject: held {tag} {n}\r\n\r\nx\r\n".encode(),
            mail_from="sam@outside.example",
            rcpt_tos=[rcpt],
        )
    deadline = time.monotonic() + 10
    while sorted(postfix.held()) != sorted(rcpts):
        assert time.monotonic() < deadline, "Postfix did not hold the mail"
        time.sleep(0.05)
    return rcpts


def test_the_fixture_offers_starttls_with_a_self_signed_certificate(
    stock_postfix: Postfix,
) -> None:
    with smtplib.SMTP(stock_postfix.host, stock_postfix.port, timeout=10) as smtp:
        smtp.ehlo("probe.test")
        assert smtp.has_extn("starttls") and smtp.has_extn("etrn")


def test_etrn_flushes_the_queue_in_clear_like_fetchmail(
    stock_postfix: Postfix,
    smtp_listener: SmtpListener,
    fetchmail_home: Oracle,
    tmp_path: Path,
) -> None:
    rc = rcfile(stock_postfix, "etrn", HELD_DOMAIN)
    codes = {}
    for name, run in (
        ("fetchmail", lambda: theirs(fetchmail_home, rc)),
        ("ours", lambda: ours(tmp_path, rc, "-v")),
    ):
        rcpts = hold_two(stock_postfix, smtp_listener, name)
        done = run()
        codes[name] = done.returncode
        assert done.returncode == 0, (name, done.stdout + done.stderr)
        got = smtp_listener.wait_for(len(rcpts) * (1 + (name == "ours")))
        assert set(rcpts) <= {r for m in got for r in m.rcpt_tos}
        stock_postfix.wait_for_queue(0)
    assert codes == {"fetchmail": 0, "ours": 0}


def test_a_refused_domain_exits_3_like_fetchmail(
    stock_postfix: Postfix, fetchmail_home: Oracle, tmp_path: Path
) -> None:
    rc = rcfile(stock_postfix, "etrn", "unrelated.example")
    theirs_done = theirs(fetchmail_home, rc)
    ours_done = ours(tmp_path, rc)
    assert theirs_done.returncode == ours_done.returncode == 3, (
        theirs_done.stdout + theirs_done.stderr,
        ours_done.stdout + ours_done.stderr,
    )
    assert "not allowed" in ours_done.stdout + ours_done.stderr


def test_etrn_with_sslcertck_still_verifies_and_asks_nothing(
    stock_postfix: Postfix, tmp_path: Path
) -> None:
    rc = rcfile(stock_postfix, "etrn", HELD_DOMAIN, "sslcertck")
    done = ours(tmp_path, rc, "-v")
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "certificate" in output and "ETRN held" not in output


def test_etrn_with_the_certificate_configured_goes_over_tls(
    stock_postfix: Postfix, smtp_listener: SmtpListener, tmp_path: Path
) -> None:
    # Pinning the self-signed certificate as its own CA is how an
    # administrator who wants TLS here gets it.
    rc = rcfile(
        stock_postfix,
        "etrn",
        HELD_DOMAIN,
        f'sslcertck sslcertfile "{stock_postfix.cert_file}" '
        f'sslcommonname "mx.isp.example"',
    )
    rcpts = hold_two(stock_postfix, smtp_listener, "tls")
    done = ours(tmp_path, rc, "-v")
    assert done.returncode == 0, done.stdout + done.stderr
    got = smtp_listener.wait_for(len(rcpts))
    assert set(rcpts) <= {r for m in got for r in m.rcpt_tos}
    stock_postfix.wait_for_queue(0)


def test_odmr_refuses_the_self_signed_certificate_before_auth(
    stock_postfix: Postfix, tmp_path: Path
) -> None:
    rc = rcfile(stock_postfix, "odmr", HELD_DOMAIN)
    done = ours(tmp_path, rc, "-v")
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "certificate" in output
    assert "AUTH" not in output.split("STARTTLS", 1)[-1]
    assert "Canary-odmr-7" not in output
