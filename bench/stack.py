"""The service's own parts for the service benchmarks (bench/idle.py,
bench/throughput.py): a private PostgreSQL and Redis (the test suite's
launchers, tests/support/), Django set up in this process on them (to create
the mailboxes through the ORM), and Celery workers, beat and ``manage.py idle``
as child processes with the same environment.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
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
            )
        self.processes.append(process)
        return process

    def celery(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        return self.spawn(name, "-m", "celery", "-A", "fetchweb", *args)

    def end(self, process: subprocess.Popen[bytes]) -> None:
        """Stop one of the processes (SIGTERM: Celery finishes its tasks)."""
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        from django.db import connections

        connections.close_all()
        self.redis.stop()
        self.pg.stop()


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


def in_workdir(name: str, keep: bool, run: Callable[[Path], T]) -> tuple[T, str]:
    """``run(work)`` in a fresh directory (removed after unless ``keep``);
    returns its result and the load average before it started."""
    # A SIGTERM (timeout, kill PID) unwinds like an error: the servers and the
    # service's processes are stopped, not left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    work = Path(tempfile.mkdtemp(prefix=f"fetchweb-bench-{name}-"))
    work.chmod(0o711)  # Dovecot's and fetchmail's users traverse it
    try:
        return run(work), load
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
