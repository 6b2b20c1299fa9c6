"""Daemon mode of ``python -m retrieval.engine``: ``-d N``, ``-q``, the PID file.

Each test runs the command as an init script or a shell would, in a
subprocess, against the real Dovecot and SMTP listener; a daemon is always
stopped with ``--quit`` (or killed by the fixture if a test fails first).
Nothing waits for a length of time: the tests wait for events (a message at
the listener, a line in the output, the PID file gone), each with a generous
deadline that only a failure ever reaches.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from retrieval.engine.report import ExitCode

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.support.dovecot import Dovecot, MailUser
    from tests.support.smtp_listener import SmtpListener

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 30.0  # seconds: only a failing test waits this long


def sample(n: int) -> bytes:
    return (
        f"From: sender{n}@example.net\r\nSubject: daemon test {n}\r\n"
        f"Message-ID: <daemon{n}@example.net>\r\n\r\nbody {n}\r\n"
    ).encode()


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "retrieval.engine", *args]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,
        check=False,
    )


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def ended(pid: int) -> bool:
    """Gone, or a zombie waiting for whoever adopted it (not us: it detached)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


class Setup:
    """An rcfile for one Dovecot account delivering to the listener."""

    def __init__(
        self,
        tmp_path: Path,
        dovecot: Dovecot,
        listener: SmtpListener,
        user: MailUser,
    ) -> None:
        self.dovecot = dovecot
        self.listener = listener
        self.user = user
        self.rc = tmp_path / "fetchmailrc"
        self.pidfile = Path(f"{self.rc}.pid")
        self.out = tmp_path / "daemon.out"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.write()

    def entry(self, user: MailUser, extra: str = "") -> str:
        return (
            f"poll 127.0.0.1 proto imap port {self.dovecot.imaps_port} {extra}\n"
            f"  user {user.name} pass {user.password} ssl "
            f"sslcertfile {self.dovecot.ca_file} sslcommonname localhost\n"
            f"  smtphost 127.0.0.1/{self.listener.port} smtpname joe@example.org\n"
        )

    def write(self, text: str = "") -> None:
        self.rc.write_text(text or self.entry(self.user))
        self.rc.chmod(0o600)

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        with self.out.open("ab") as out:
            process = subprocess.Popen(
                command("-f", str(self.rc), *args),
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        return process

    def output(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def daemon_pid(self) -> int:
        return int(self.pidfile.read_text().split()[0])


@pytest.fixture
def setup(
    tmp_path: Path,
    dovecot: Dovecot,
    smtp_listener: SmtpListener,
    mailuser: MailUser,
) -> Iterator[Setup]:
    setup = Setup(tmp_path, dovecot, smtp_listener, mailuser)
    yield setup
    pids = [p.pid for p in setup.processes]
    with contextlib.suppress(FileNotFoundError, ValueError):
        pids.append(setup.daemon_pid())
    for pid in pids:  # a failed test must not leave a daemon behind
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for process in setup.processes:
        process.wait(DEADLINE)


def test_the_daemon_polls_each_cycle_and_stops_on_quit(setup: Setup) -> None:
    setup.dovecot.put(setup.user.name, sample(1))
    daemon = setup.start("-d", "1", "-N", "-v")
    setup.listener.wait_for(1, timeout=DEADLINE)
    wait_until(setup.pidfile.exists, "the PID file")
    assert setup.pidfile.read_text() == f"{daemon.pid}\n1\n"  # fetchmail's format
    setup.dovecot.put(setup.user.name, sample(2))  # for the next cycle
    setup.listener.wait_for(2, timeout=DEADLINE)

    stopped = cli("-f", str(setup.rc), "--quit")

    assert stopped.returncode == ExitCode.SUCCESS, stopped.stderr
    assert f"background daemon at {daemon.pid} killed" in stopped.stdout
    assert daemon.wait(DEADLINE) == 0
    assert not setup.pidfile.exists()
    subjects = [r.data.split(b"Subject: ")[1][:13] for r in setup.listener.messages]
    assert subjects == [b"daemon test 1", b"daemon test 2"]
    assert setup.dovecot.messages(setup.user.name) == []
    out = setup.output()
    assert "starting fetchweb" in out and "polling every 1 seconds" in out
    assert "sleeping at" in out
    assert "daemon stopped after" in out


def test_a_detached_daemon_returns_at_once_and_logs_to_its_file(
    setup: Setup, tmp_path: Path
) -> None:
    log = tmp_path / "fetchweb.log"
    setup.dovecot.put(setup.user.name, sample(1))

    started = cli("-f", str(setup.rc), "-d", "3600", "-L", str(log))

    assert started.returncode == 0, started.stderr
    assert started.stdout == started.stderr == ""
    setup.listener.wait_for(1, timeout=DEADLINE)
    wait_until(setup.pidfile.exists, "the PID file")
    pid = setup.daemon_pid()
    assert setup.pidfile.read_text() == f"{pid}\n3600\n"
    os.kill(pid, 0)  # alive, detached from us

    assert cli("-f", str(setup.rc), "-q").returncode == 0
    wait_until(lambda: not setup.pidfile.exists(), "the PID file to go")
    wait_until(lambda: ended(pid), "the daemon to end")
    text = log.read_text()
    assert "starting fetchweb" in text and "daemon stopped after 1 cycle(s)" in text


def test_a_run_without_arguments_wakes_the_daemon(setup: Setup) -> None:
    setup.dovecot.put(setup.user.name, sample(1))
    daemon = setup.start("-d", "3600", "-N")
    setup.listener.wait_for(1, timeout=DEADLINE)
    wait_until(setup.pidfile.exists, "the PID file")
    setup.dovecot.put(setup.user.name, sample(2))

    woken = cli("-f", str(setup.rc))  # as fetchmail: poll now, in the daemon

    assert woken.returncode == 0, woken.stderr
    assert f"background daemon at {daemon.pid} awakened" in woken.stdout
    setup.listener.wait_for(2, timeout=DEADLINE)  # long before an hour
    assert cli("-f", str(setup.rc), "-q").returncode == 0
    assert daemon.wait(DEADLINE) == 0


def test_a_second_daemon_is_refused(setup: Setup) -> None:
    first = setup.start("-d", "3600", "-N")
    wait_until(setup.pidfile.exists, "the PID file")
    wait_until(lambda: bool(setup.pidfile.read_text()), "the PID")

    second = cli("-f", str(setup.rc), "-d", "60", "-N")

    assert second.returncode == ExitCode.EXCLUDE
    assert f"another fetchweb daemon (process {first.pid})" in second.stderr
    assert cli("-f", str(setup.rc), "--quit").returncode == 0
    assert first.wait(DEADLINE) == 0


def test_an_entry_with_interval_is_polled_every_nth_cycle(
    setup: Setup, dovecot: Dovecot
) -> None:
    from tests.support.dovecot import MailUser

    other = MailUser(f"{setup.user.name}x", "other-secret")
    dovecot.add_user(other.name, other.password)
    setup.write(
        setup.entry(setup.user) + setup.entry(other, extra="interval 3 aka second")
    )
    for n in range(3):
        dovecot.put(other.name, sample(10 + n))
    daemon = setup.start("-d", "1", "-N", "-v")
    wait_until(
        lambda: setup.output().count("interval not reached, not querying") >= 2,
        "two cycles that skip the second entry",
    )
    assert cli("-f", str(setup.rc), "-q").returncode == 0
    assert daemon.wait(DEADLINE) == 0
    # Cycle 0 polled both entries; cycles 1 and 2 only the first.
    assert len(setup.listener.messages) == 3
    assert dovecot.messages(other.name) == []


def test_quit_without_a_daemon_exits_8(setup: Setup) -> None:
    result = cli("-f", str(setup.rc), "--quit")
    assert result.returncode == ExitCode.EXCLUDE
    assert "no other daemon is running" in result.stderr


def test_d0_overrides_set_daemon_and_polls_once(setup: Setup) -> None:
    setup.write("set daemon 1\n" + setup.entry(setup.user))
    setup.dovecot.put(setup.user.name, sample(1))
    result = cli("-f", str(setup.rc), "-d0")
    assert result.returncode == ExitCode.SUCCESS, result.stderr
    assert len(setup.listener.messages) == 1
    assert not setup.pidfile.exists()
