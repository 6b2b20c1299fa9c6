"""A private, throw-away PostgreSQL cluster for one test session.

``initdb`` into a temporary directory, ``postgres`` on a free 127.0.0.1 port with
its unix socket in that directory, trust authentication and no fsync. PostgreSQL
refuses to run as root, so when we are root both run as the ``postgres`` system
user (the Debian package creates it) and the directory is handed to that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.ports import LOOPBACK, free_port

# A Debian/Ubuntu install keeps the server binaries off PATH, one dir per version.
_DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
_START_TIMEOUT = 30.0
_ATTEMPTS = 3  # a free port can be taken by someone else before postgres binds it


class PostgresError(RuntimeError):
    """The private cluster could not be created or started."""


def find_bindir() -> Path:
    """Where ``initdb`` and ``postgres`` live.

    ``FETCHWEB_PG_BINDIR`` wins; then the newest ``/usr/lib/postgresql/N/bin``;
    then whatever ``initdb`` is on PATH.
    """
    if explicit := os.environ.get("FETCHWEB_PG_BINDIR"):
        return Path(explicit)
    if _DEBIAN_PG_ROOT.is_dir():
        versions = sorted(
            (p for p in _DEBIAN_PG_ROOT.iterdir() if (p / "bin" / "initdb").exists()),
            key=lambda p: int(p.name) if p.name.isdigit() else 0,
        )
        if versions:
            return versions[-1] / "bin"
    if found := shutil.which("initdb"):
        return Path(found).parent
    raise PostgresError(
        "PostgreSQL server binaries not found: install postgresql, set "
        "FETCHWEB_PG_BINDIR, DATABASE_URL, or FETCHWEB_TEST_DB=sqlite"
    )


def _run_as() -> dict[str, Any]:
    """Popen keywords that drop root to the ``postgres`` user (empty when not root).

    ``Popen(user=...)`` rather than ``runuser``: the child is postgres itself, so
    our signals reach the postmaster directly and no PAM session is opened.
    """
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresError(
            "running as root, and PostgreSQL refuses root: create a `postgres` "
            "user (the postgresql package does) or run the tests as another user"
        ) from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@dataclass
class PostgresCluster:
    """A running private cluster; ``url`` is what goes into ``DATABASE_URL``."""

    base: Path
    port: int
    process: subprocess.Popen[bytes]
    startup_seconds: float
    version: str
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"postgres://postgres@{LOOPBACK}:{self.port}/postgres"

    @property
    def log_file(self) -> Path:
        return self.base / "postgres.log"

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @classmethod
    def start(cls, bindir: Path | None = None) -> PostgresCluster:
        """Create and start a cluster; the caller must :meth:`stop` it."""
        began = time.monotonic()
        bindir = bindir or find_bindir()
        run_as = _run_as()
        base = Path(tempfile.mkdtemp(prefix="fetchweb-pg-"))
        try:
            if run_as:
                os.chown(base, run_as["user"], run_as["group"])
            _initdb(bindir, base, run_as)
            for attempt in range(_ATTEMPTS):
                port = free_port()
                process = _launch(bindir, base, port, run_as)
                if _wait_ready(base, process):
                    version = (base / "data" / "PG_VERSION").read_text().strip()
                    return cls(base, port, process, time.monotonic() - began, version)
                log = (base / "postgres.log").read_text(errors="replace")
                _stop_process(process)
                if "could not bind" not in log or attempt == _ATTEMPTS - 1:
                    raise PostgresError(f"postgres did not start:\n{log[-3000:]}")
        except BaseException:
            shutil.rmtree(base, ignore_errors=True)
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Shut the server down and delete its directory; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        _stop_process(self.process)
        shutil.rmtree(self.base, ignore_errors=True)


def _initdb(bindir: Path, base: Path, run_as: dict[str, Any]) -> None:
    command = [
        str(bindir / "initdb"),
        "--pgdata", str(base / "data"),
        "--username", "postgres",
        "--auth", "trust",
        "--encoding", "UTF8",
        "--locale", "C",
        # The cluster dies with the session: syncing to disk is wasted time.
        "--no-sync",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=base, capture_output=True, check=False, **run_as)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")
        raise PostgresError(f"initdb failed ({done.returncode}):\n{output}")


def _launch(
    bindir: Path, base: Path, port: int, run_as: dict[str, Any]
) -> subprocess.Popen[bytes]:
    settings = {
        "listen_addresses": LOOPBACK,
        "port": str(port),
        "unix_socket_directories": str(base),
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "200",  # live tests add Celery workers to Django's pool
        "log_min_messages": "warning",
    }
    args = [f"--{name.replace('_', '-')}={value}" for name, value in settings.items()]
    log = (base / "postgres.log").open("ab")
    try:
        # Own session: a Ctrl-C in the terminal must not kill the server before
        # pytest has finished with it; we stop it ourselves.
        return subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(base / "data"), *args],
            cwd=base,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **run_as,
        )
    finally:
        log.close()


def _wait_ready(base: Path, process: subprocess.Popen[bytes]) -> bool:
    """Wait for the postmaster to report "ready" in postmaster.pid (as pg_ctl -w does).

    Returns False if the postmaster exits first.
    """
    pidfile = base / "data" / "postmaster.pid"
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(FileNotFoundError):
            lines = pidfile.read_text().splitlines()
            # Line 8 holds the postmaster status since PostgreSQL 10.
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return True
        time.sleep(0.02)
    _stop_process(process)
    raise PostgresError(f"postgres not ready after {_START_TIMEOUT:.0f}s")


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    # SIGINT is the "fast" shutdown: backends are aborted, nothing is waited for.
    for sig, grace in ((signal.SIGINT, 10.0), (signal.SIGQUIT, 5.0)):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue
    process.kill()
    process.wait()
