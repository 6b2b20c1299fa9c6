"""The service's own parts for the service benchmarks (bench/idle.py,
bench/throughput.py): a private PostgreSQL and Redis (the test suite's
launchers, tests/support/), Django set up in this process on them (to create
the mailboxes through the ORM), and Celery workers, beat and ``manage.py idle``
as child processes with the same environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bench.tools import REPO
from tests.support.postgres import PostgresCluster
from tests.support.redis import RedisServer

if TYPE_CHECKING:
    from accounts.models import User

OWNER = "bench@example.org"


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
