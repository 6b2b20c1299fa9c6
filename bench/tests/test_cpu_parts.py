"""The per-part CPU accounting of bench/throughput.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench import cpu_parts


@pytest.mark.parametrize(
    ("comm", "cmdline", "part"),
    [
        ("imap", "dovecot/imap", "dovecot"),
        ("dovecot", "/usr/sbin/dovecot -F -c /tmp/x/dovecot.conf", "dovecot"),
        ("postgres", "postgres: postgres postgres 127.0.0.1(5) idle", "postgres"),
        (
            "python",
            "python -m celery -A fetchweb worker --queues polls",
            "celery workers",
        ),
        (
            "python",
            "python -m celery -A fetchweb beat --loglevel warning",
            "celery beat",
        ),
        ("redis-server", "/usr/bin/redis-server 127.0.0.1:6000", "redis"),
        ("python", "python manage.py idle", "idle process"),
        ("bash", "bash", "other"),
    ],
)
def test_processes_are_told_apart(comm: str, cmdline: str, part: str) -> None:
    assert cpu_parts._part(comm, cmdline) == part


def test_a_reaped_child_counts_for_its_parent() -> None:
    before = cpu_parts.snapshot()
    used_before = os.times()
    subprocess.run(
        [sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True
    )
    used = os.times()
    spent = cpu_parts.between(before, cpu_parts.snapshot())
    child = (used.children_user - used_before.children_user) + (
        used.children_system - used_before.children_system
    )
    assert child > 0
    # This process is "other"; its reaped child's CPU is in it, to the tick.
    assert spent["other"] >= child - 2 / os.sysconf("SC_CLK_TCK")


def test_only_the_processes_under_the_root_count() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"]
    ) as child:
        try:
            under_child = cpu_parts.snapshot(root=child.pid)
            under_us = cpu_parts.snapshot()
        finally:
            child.kill()
    assert set(under_child) == {child.pid}
    assert {os.getpid(), child.pid} <= set(under_us)
    assert os.getppid() not in under_us
