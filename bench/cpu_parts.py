"""CPU seconds spent by each part of the machine between two moments.

Read from /proc: each process's own CPU plus what its reaped children used,
so short-lived processes count for the parent that waited for them (Dovecot's
imap and login processes for its master, PostgreSQL's backends for the
postmaster). A process that exits between the two readings is lost with its
own CPU, unless its parent reaps it: the parts measured here are long-lived.
Only the processes under the harness count (its servers, workers and tools),
whatever else the machine runs beside the benchmark.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

_HZ = os.sysconf("SC_CLK_TCK")
_DOVECOT = {"dovecot", "imap", "imap-login", "pop3", "pop3-login", "auth", "anvil",
            "log", "config", "stats", "lmtp", "indexer", "indexer-worker"}  # fmt: skip


def _part(comm: str, cmdline: str) -> str:
    if "celery" in cmdline:
        return "celery beat" if " beat" in cmdline else "celery workers"
    if comm.startswith("postgres") or "postgres" in cmdline.split(" ", 1)[0]:
        return "postgres"
    if comm.startswith("redis"):
        return "redis"
    if comm in _DOVECOT or cmdline.startswith("/usr/sbin/dovecot"):
        return "dovecot"
    if "manage.py idle" in cmdline:
        return "idle process"
    if "bench.listener" in cmdline:
        return "bench listener"
    return "other"


Snapshot = dict[int, tuple[str, float]]


def snapshot(root: int | None = None) -> Snapshot:
    """pid -> (part, own + reaped children's CPU seconds) of ``root`` (this
    process by default) and every process under it."""
    seen: dict[int, tuple[int, str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        seen[int(entry.name)] = (int(fields[1]), _part(comm, cmdline), ticks / _HZ)
    top = os.getpid() if root is None else root
    return {
        pid: (part, cpu)
        for pid, (_, part, cpu) in seen.items()
        if _under(pid, top, seen)
    }


def _under(pid: int, root: int, seen: dict[int, tuple[int, str, float]]) -> bool:
    while pid > 1:
        if pid == root:
            return True
        parent = seen.get(pid)
        if parent is None:
            return False
        pid = parent[0]
    return pid == root


def between(before: Snapshot, after: Snapshot) -> defaultdict[str, float]:
    """CPU seconds per part from ``before`` to ``after``."""
    spent: defaultdict[str, float] = defaultdict(float)
    for pid, (part, cpu) in after.items():
        earlier = before.get(pid)
        start = earlier[1] if earlier is not None and earlier[0] == part else 0.0
        spent[part] += cpu - start
    return spent
