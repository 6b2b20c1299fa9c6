"""The service's own parts for the service benchmarks (bench/idle.py,
bench/throughput.py): a private PostgreSQL and Redis (the test suite's
launchers, tests/support/), Django set up in this process on them (to create
the mailboxes through the ORM), and Celery workers, beat and ``manage.py idle``
as child processes with the same environment.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bench.tools import REPO
from tests.support.postgres import PostgresCluster
from tests.support.redis import RedisServer

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from accounts.models import User
    from tests.support.dovecot import Dovecot

OWNER = "bench@example.org"
T = TypeVar("T")


class Stack:
    """PostgreSQL + Redis + Django in this process; :meth:`spawn` starts the
    service's processes, :meth:`stop` ends everything."""

    def __init__(self, work: Path, **settings: str) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.pg = PostgresCluster.start()
        try:
            self.redis = RedisServer.start(work / "redis")
        except BaseException:
            self.pg.stop()
            raise
        try:
            self._set_up(settings)
        except BaseException:
            # A SIGTERM during migrate: the caller never gets the stack to stop.
            self.redis.stop()
            self.pg.stop()
            raise

    def _set_up(self, settings: dict[str, str]) -> None:
        work = self.work
        self.env = {
            **os.environ,
            "DATABASE_URL": self.pg.url,
            "REDIS_URL": self.redis.url,
            "DJANGO_SETTINGS_MODULE": "fetchweb.settings",
            "SECRET_KEY": os.environ.get(
                "SECRET_KEY", "bench-only-secret-key-not-for-production-use"
            ),
            "FETCH_LOG_LEVEL": "WARNING",
            "HOME": str(work),
            **settings,
        }
        os.environ.update(self.env)
        sys.path.insert(0, str(REPO))
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)

    def owner(self) -> User:
        from accounts.models import User

        found = User.objects.filter(email=OWNER).first()
        return found or User.objects.create_superuser(OWNER, "bench-only-password")

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """``python ARGS`` from the repository, its output in WORK/NAME.log."""
        with (self.work / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, *args],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                # A group of its own (Celery's pool processes with it): stop()
                # can kill all of it, and a terminal's ^C or timeout(1) reaches
                # the harness alone, which stops the service in order.
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def celery(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        return self.spawn(name, "-m", "celery", "-A", "fetchweb", *args)

    def end(self, process: subprocess.Popen[bytes]) -> None:
        """Stop one of the processes between measurements (SIGTERM: Celery
        finishes its tasks)."""
        stop_processes([process], grace=120)

    def stop(self) -> None:
        """Everything, at once and within STOP_GRACE seconds for the service's
        processes: the run is over (or interrupted), no task needs finishing."""
        try:
            stop_processes(self.processes, grace=STOP_GRACE)
        finally:
            from django.db import connections

            connections.close_all()
            self.redis.stop()
            self.pg.stop()


STOP_GRACE = 10.0  # seconds for the service's processes to exit on SIGTERM


def stop_processes(processes: list[subprocess.Popen[bytes]], grace: float) -> None:
    """SIGTERM to each process (a Celery worker's main process then ends its
    pool in order), one deadline ``grace`` seconds away for all of them, then
    SIGKILL to every process group: the pool children too, which outlive a main
    process killed alone.

    Before, each process had 60 s of its own, one after the other, and only the
    main process was killed: a worker and the IDLE process slow to end held the
    harness for minutes after a SIGTERM.
    """
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
    for process in processes:
        _kill_group(process)  # whatever is left of the group
        process.wait()


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB: now, and its peak."""
    fields = {}
    with Path(f"/proc/{pid}/status").open() as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.split()[0] if value.split() else "0"
    return int(fields.get("VmRSS", 0)), int(fields.get("VmHWM", 0))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (not its children) has used."""
    with Path(f"/proc/{pid}/stat").open() as stat:
        parts = stat.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def bench_message(n: int, user: str, tag: str) -> tuple[str, bytes]:
    """A small text message to ``user`` with a Message-ID unique to (n, user)."""
    mid = f"<{tag}-{n}.{user}@bench.example>"
    body = "".join(f"line {i} of message {n}\r\n" for i in range(30))
    raw = (
        f"From: sender@bench.example\r\nTo: {user}@localhost\r\n"
        f"Subject: {tag} {n}\r\nMessage-ID: {mid}\r\n\r\n{body}"
    ).encode()
    return mid, raw


def start_listener(work: Path, messages: list[tuple[str, bytes]]) -> tuple[Any, Path]:
    """The bench listener (bench/listener.py) checking against ``messages``;
    returns it and its records file (one JSON line per message received)."""
    from bench.env import _Helper
    from bench.verify import Expected, Manifest

    manifest = work / "manifest.json"
    Manifest({mid: Expected.of(raw) for mid, raw in messages}).dump(manifest)
    records = work / "records.jsonl"
    helper = _Helper(
        [
            sys.executable,
            "-m",
            "bench.listener",
            "--manifest",
            str(manifest),
            "--records",
            str(records),
        ],
        work / "listener.log",
    )
    return helper, records


def add_mailboxes(
    stack: Stack,
    dovecot: Dovecot,
    users: list[str],
    *,
    password: str,
    deliver_to: int,
    interval: int,
    idle: bool = False,
) -> None:
    """One IMAP (implicit TLS) mailbox per Dovecot user, delivering to the bench
    listener on port ``deliver_to``, not due for a day."""
    from django.utils import timezone

    from retrieval.models import Mailbox

    owner = stack.owner()
    later = timezone.now() + timedelta(days=1)
    rows = []
    for user in users:
        mailbox = Mailbox(
            owner=owner,
            name=user,
            protocol=Mailbox.Protocol.IMAP,
            host=dovecot.host,
            port=dovecot.imaps_port,
            ca_file=dovecot.ca_file,
            username=user,
            delivery_host="127.0.0.1",
            delivery_port=deliver_to,
            recipient="sink@bench.example",
            poll_interval=interval,
            next_poll_at=later,
            options={"user": {"idle": True}} if idle else {},
        )
        mailbox.set_password(password)
        rows.append(mailbox)
    Mailbox.objects.bulk_create(rows, batch_size=500)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """The options every service benchmark takes."""
    parser.add_argument("--seed", default="fetchweb-bench")
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--keep-tmp", action="store_true")


def stop_on_signals() -> None:
    """The first SIGTERM or SIGINT unwinds the harness (SystemExit, 143 or 130),
    so that every ``finally`` stops its servers; later ones while it unwinds
    are only noted. Raised again, they would abandon the cleanup half-way and
    leave PostgreSQL, Redis and Dovecot running: the cleanup is bounded
    (:data:`STOP_GRACE`, then SIGKILL) instead."""
    stopping: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if stopping:
            print(
                f"signal {signum}: already stopping, the servers first",
                file=sys.stderr,
                flush=True,
            )
            return
        stopping.append(signum)
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def in_workdir(name: str, keep: bool, run: Callable[[Path], T]) -> tuple[T, str]:
    """``run(work)`` in a fresh directory (removed after unless ``keep``);
    returns its result and the load average before it started."""
    # A SIGTERM (timeout, kill PID) unwinds like an error: the servers and the
    # service's processes are stopped, not left behind.
    stop_on_signals()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    work = Path(tempfile.mkdtemp(prefix=f"fetchweb-bench-{name}-"))
    work.chmod(0o711)  # Dovecot's and fetchmail's users traverse it
    try:
        return run(work), load
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
