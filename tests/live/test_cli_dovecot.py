"""``python -m retrieval.engine`` as a user runs it, against the real Dovecot.

Each test writes a .fetchmailrc, runs the command in a subprocess (exit status,
standard output and error exactly as a shell or cron sees them), and checks what
reached the suite's SMTP listener and what is left in the mailboxes. No Django.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.dovecot import MailUser

if TYPE_CHECKING:
    from tests.support.dovecot import Dovecot
    from tests.support.smtp_listener import SmtpListener

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[2]

SAMPLES = [
    b"From: a@example.net\r\nTo: b@example.org\r\nSubject: plain\r\n"
    b"Message-ID: <plain@example.net>\r\n\r\nHello.\r\n",
    b"Return-Path: <bounces@example.net>\r\nFrom: c@example.net\r\n"
    b"Subject: dots\r\n\r\n.a line that starts with a dot\r\n..two dots\r\n"
    b".\r\nafter the lone dot\r\n",
    b"From: d@example.net\r\nSubject: 8-bit\r\n"
    b"Content-Type: text/plain; charset=latin-1\r\n\r\ncaf\xe9 \xff\xfe\r\n",
    b"From: e@example.net\r\nSubject: a long line\r\n\r\n"
    + b"x" * 998
    + b"\r\nend\r\n",
]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The command line, from the project root, as a shell would run it."""
    return subprocess.run(
        [sys.executable, "-m", "retrieval.engine", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def without_received(data: bytes) -> bytes:
    """The message minus the first header field, the Received line a tool adds."""
    assert data.startswith(b"Received: "), data[:80]
    end = data.index(b"\r\n")
    while data[end + 2 : end + 3] in (b" ", b"\t"):
        end = data.index(b"\r\n", end + 2)
    return data[end + 2 :]


def write_rcfile(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def entry(
    dovecot: Dovecot,
    user: MailUser,
    listener: SmtpListener,
    *,
    protocol: str,
    port: int,
    options: str = "",
    password: str | None = None,
) -> str:
    """One rcfile entry over implicit TLS, trusting the fixture's CA."""
    return (
        f"poll localhost proto {protocol} port {port}\n"
        f'    user "{user.name}" pass "{password or user.password}"\n'
        f'    ssl sslcertfile "{dovecot.ca_file}"\n'
        f"    smtphost {listener.host}/{listener.port} {options}\n"
    )


def pop3s(dovecot: Dovecot, user: MailUser, listener: SmtpListener, **kw: str) -> str:
    return entry(
        dovecot, user, listener, protocol="pop3", port=dovecot.pop3s_port, **kw
    )


def imaps(dovecot: Dovecot, user: MailUser, listener: SmtpListener, **kw: str) -> str:
    return entry(
        dovecot, user, listener, protocol="imap", port=dovecot.imaps_port, **kw
    )


@pytest.fixture
def other_user(dovecot: Dovecot) -> MailUser:
    user = MailUser(
        name=f"user{secrets.token_hex(5)}", password=secrets.token_urlsafe(12)
    )
    dovecot.add_user(user.name, user.password)
    return user


def test_two_entries_pop3s_and_imaps_deliver_everything(
    dovecot: Dovecot,
    mailuser: MailUser,
    other_user: MailUser,
    smtp_listener: SmtpListener,
    tmp_path: Path,
) -> None:
    for sample in SAMPLES[:2]:
        dovecot.put(mailuser.name, sample)
    for sample in SAMPLES[2:]:
        dovecot.put(other_user.name, sample)
    rc = write_rcfile(
        tmp_path / "fetchmailrc",
        pop3s(dovecot, mailuser, smtp_listener)
        + imaps(dovecot, other_user, smtp_listener),
    )

    done = run_cli("-f", str(rc))

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert [without_received(r.data) for r in smtp_listener.received] == SAMPLES
    assert dovecot.messages(mailuser.name) == []
    assert dovecot.messages(other_user.name) == []
    octets = sum(map(len, SAMPLES[:2]))
    assert f"2 messages for {mailuser.name} at localhost ({octets} octets)." in (
        done.stdout
    )
    assert f"reading message {other_user.name}@localhost:2 of 2" in done.stdout
    assert "flushed" in done.stdout
    assert (tmp_path / "fetchmailrc.fetchids").exists()  # the default idfile


def test_keep_with_an_idfile_delivers_once_then_exits_1(
    dovecot: Dovecot,
    mailuser: MailUser,
    other_user: MailUser,
    smtp_listener: SmtpListener,
    tmp_path: Path,
) -> None:
    dovecot.put(mailuser.name, SAMPLES[0])
    dovecot.put(other_user.name, SAMPLES[1])
    rc = write_rcfile(
        tmp_path / "rc",
        pop3s(dovecot, mailuser, smtp_listener, options="keep")
        + imaps(dovecot, other_user, smtp_listener, options="keep"),
    )
    idfile = tmp_path / "state" / "ids"
    idfile.parent.mkdir()

    first = run_cli("-f", str(rc), "-i", str(idfile))
    second = run_cli("-f", str(rc), "-i", str(idfile))

    assert first.returncode == 0, first.stderr
    assert second.returncode == 1, second.stderr
    assert len(smtp_listener.received) == 2
    assert f"No mail for {mailuser.name} at localhost" in second.stdout
    assert dovecot.messages(mailuser.name) == [SAMPLES[0]]
    assert dovecot.messages(other_user.name) == [SAMPLES[1]]
    recorded = json.loads(idfile.read_text())["mailboxes"]
    assert set(recorded) == {
        f"pop3://{mailuser.name}@localhost",
        f"imap://{other_user.name}@localhost",
    }
    assert idfile.stat().st_mode & 0o777 == 0o600

    # --check counts what a poll would fetch, fetching and deleting nothing.
    dovecot.put(mailuser.name, SAMPLES[2])
    checked = run_cli("-f", str(rc), "-i", str(idfile), "-c")
    assert checked.returncode == 0, checked.stderr
    assert f"2 messages (1 seen) for {mailuser.name} at localhost." in checked.stdout
    assert len(smtp_listener.received) == 2
    third = run_cli("-f", str(rc), "-i", str(idfile))
    assert third.returncode == 0, third.stderr
    assert [without_received(r.data) for r in smtp_listener.received[2:]] == [
        SAMPLES[2]
    ]


def test_a_wrong_password_exits_3(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener, tmp_path: Path
) -> None:
    dovecot.put(mailuser.name, SAMPLES[0])
    wrong = mailuser.password + "-wrong"
    rc = write_rcfile(
        tmp_path / "rc", imaps(dovecot, mailuser, smtp_listener, password=wrong)
    )

    done = run_cli("-f", str(rc), "-v")

    assert done.returncode == 3, done.stderr
    assert f"{mailuser.name} at localhost:" in done.stderr
    assert wrong not in done.stdout + done.stderr
    assert smtp_listener.received == []
    assert dovecot.messages(mailuser.name) == [SAMPLES[0]]


def test_a_closed_port_exits_2(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    tmp_path: Path,
    unused_port: int,
) -> None:
    rc = write_rcfile(
        tmp_path / "rc",
        entry(dovecot, mailuser, smtp_listener, protocol="pop3", port=unused_port),
    )

    done = run_cli("-f", str(rc))

    assert done.returncode == 2, done.stderr
    assert f"localhost:{unused_port}" in done.stderr


def test_a_bad_rcfile_exits_5_with_file_and_line(tmp_path: Path) -> None:
    rc = write_rcfile(
        tmp_path / "rc",
        "# a comment\npoll mail.example.org proto pop3\n    user joe pass x keep\n"
        "poll other.example.org proto imap bogus-keyword\n",
    )

    done = run_cli("-f", str(rc))

    assert done.returncode == 5
    assert done.stderr.startswith(f"{rc}:4:"), done.stderr
    assert done.stdout == ""


def test_verbose_prints_the_transcript_with_the_password_masked(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener, tmp_path: Path
) -> None:
    dovecot.put(mailuser.name, SAMPLES[0])
    rc = write_rcfile(tmp_path / "rc", pop3s(dovecot, mailuser, smtp_listener))

    # "password": the password itself crosses the wire (no CRAM-MD5 challenge).
    done = run_cli("-f", str(rc), "-v", "--auth", "password")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "< +OK Dovecot (Debian) ready." in lines
    assert "> QUIT" in lines
    assert any(line.startswith("* connected to localhost:") for line in lines)
    assert all(line[:2] in ("< ", "> ", "* ") or "retrieval" in line or
               "message" in line for line in lines), lines  # fmt: skip
    secret_lines = [line for line in lines if line.startswith("> ") and "****" in line]
    assert secret_lines, lines
    plain = base64.b64encode(f"\0{mailuser.name}\0{mailuser.password}".encode())
    for leak in (mailuser.password, plain.decode()):
        assert leak not in done.stdout + done.stderr


def test_silent_prints_nothing_and_errors_still_reach_stderr(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    tmp_path: Path,
    unused_port: int,
) -> None:
    dovecot.put(mailuser.name, SAMPLES[0])
    rc = write_rcfile(
        tmp_path / "rc",
        pop3s(dovecot, mailuser, smtp_listener)
        + entry(dovecot, mailuser, smtp_listener, protocol="imap", port=unused_port),
    )

    done = run_cli("-f", str(rc), "-s")

    assert done.returncode == 0  # the first entry delivered
    assert done.stdout == ""
    assert "Could not connect" in done.stderr


@pytest.mark.parametrize(
    ("order", "expected"),
    [(("bad", "empty"), 1), (("empty", "bad"), 3), (("mail", "bad"), 0)],
    ids=["authfail-then-nomail", "nomail-then-authfail", "success-wins"],
)
def test_several_entries_combine_like_fetchmail(
    dovecot: Dovecot,
    mailuser: MailUser,
    other_user: MailUser,
    smtp_listener: SmtpListener,
    tmp_path: Path,
    order: tuple[str, str],
    expected: int,
) -> None:
    """0 if any poll delivered, otherwise the status of the last poll."""
    dovecot.put(other_user.name, SAMPLES[0])
    kinds = {
        "bad": pop3s(dovecot, mailuser, smtp_listener, password="wrong"),
        "empty": imaps(dovecot, mailuser, smtp_listener),
        "mail": imaps(dovecot, other_user, smtp_listener),
    }
    rc = write_rcfile(tmp_path / "rc", "".join(kinds[k] for k in order))

    done = run_cli("-f", str(rc))

    assert done.returncode == expected, done.stdout + done.stderr


def test_server_names_on_the_command_line_select_entries(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener, tmp_path: Path
) -> None:
    dovecot.put(mailuser.name, SAMPLES[0])
    rc = write_rcfile(
        tmp_path / "rc",
        pop3s(dovecot, mailuser, smtp_listener).replace(
            "poll localhost", "skip localhost aka mailhost"
        )
        + "poll unreachable.invalid proto pop3 user nobody pass x\n",
    )

    done = run_cli("-f", str(rc), "MAILHOST", "-k")

    assert done.returncode == 0, done.stderr
    assert len(smtp_listener.received) == 1
    assert dovecot.messages(mailuser.name) == [SAMPLES[0]]  # -k on the command line
