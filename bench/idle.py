"""IDLE benchmark: many IMAP mailboxes held by one ``manage.py idle`` process.

``python -m bench.idle [--mailboxes 50] [--messages 30] [--rate 1.0]
[--workers 2] [--docs docs/benchmarks.md]``; the issue's size is
``--mailboxes 1000 --messages 600 --rate 1`` (1 message a second for 10 minutes).

Real parts: Dovecot (the suite's launcher, with limits raised for many IDLE
sessions and the session log of tests/support/dovecot.py), a private PostgreSQL
and Redis (bench/stack.py), one ``manage.py idle`` process, Celery workers on
the push queue, and the bench listener (bench/listener.py: every message checked
against its source, one record with the time it arrived). Every mailbox is an
IMAP mailbox over TLS with idle on and no scheduled poll due during the run.

Measured:

* time from spawning the IDLE process to every mailbox logged in (Dovecot's own
  log of logins; the session then EXAMINEs and IDLEs);
* the IDLE process's RSS once all are held, and its peak at the end;
* for messages delivered by LMTP to random mailboxes at ``--rate`` a second:
  from Dovecot's LMTP accepting a message (our LMTP client's 250) to the bench
  listener receiving it, p50 / p99 / max, through EXISTS -> push poll queued ->
  a worker's poll -> delivery.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import resource
import smtplib
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bench import sections
from bench.stack import (
    Stack,
    add_common_options,
    add_mailboxes,
    bench_message,
    cpu_seconds,
    in_workdir,
    rss_kb,
    start_listener,
)
from tests.support.dovecot import SESSION_LOG_CONFIG, Dovecot
from tests.support.dovecot_sessions import sessions

if TYPE_CHECKING:
    from collections.abc import Callable

PASSWORD = "bench-idle-secret"
# Many long sessions: one imap process each (Dovecot 2.3 dropped connections at
# process_limit although client_limit was raised), login processes proxying TLS
# for their sessions' lifetime (service_count 0, the "high-performance" mode),
# and the master's limits following.
MANY_SESSIONS_CONFIG = """
default_client_limit = 5000
default_vsz_limit = 1G
service imap {
  process_limit = 2500
}
service imap-login {
  service_count = 0
  client_limit = 2500
  process_min_avail = 2
}
service auth {
  client_limit = 5000
}
service anvil {
  client_limit = 5000
}
"""

# The same limits with Dovecot's default login mode (a login process per
# connection, proxying its TLS for the session's lifetime): what sessions kept
# open between polls need (bench.throughput --keep-sessions) without making
# every login cheaper than the other passes measured.
MANY_SESSIONS_CONFIG_LIMITS = """
default_client_limit = 5000
default_vsz_limit = 1G
service imap {
  process_limit = 2500
}
service imap-login {
  process_limit = 2500
}
service auth {
  client_limit = 5000
}
service anvil {
  client_limit = 5000
}
"""


@dataclass
class Result:
    mailboxes: int
    messages: int
    rate: float
    connected_s: float | None
    rss_held_mb: float
    rss_peak_mb: float
    cpu_s: float
    latencies: list[float]
    received: int
    duplicates: int

    def pct(self, p: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.25)
    return time.time()


INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")


def _inotify_for(sessions: int) -> None:
    """Let every IDLE session of Dovecot watch its mailbox with inotify.

    Each imap process in IDLE takes an inotify instance, and all of them run as
    one user here; past Linux's default of 128 instances per user Dovecot logs
    "Inotify instance limit for user exceeded" and falls back to looking every
    ``mailbox_idle_check_interval`` (30 s), which is what a 1,000-session run
    measured until this was raised. A mail server carrying that many sessions
    raises the limit the same way (Dovecot's documentation says so).
    """
    wanted = sessions + 64
    current = int(INOTIFY_INSTANCES.read_text())
    if current >= wanted:
        return
    try:
        INOTIFY_INSTANCES.write_text(f"{wanted}\n")
    except OSError as exc:
        print(
            f"warning: fs.inotify.max_user_instances is {current} (< {wanted}) and "
            f"could not be raised ({exc}); Dovecot will notice new mail in IDLE only "
            "every 30 s for the sessions past the limit",
            file=sys.stderr,
        )


def run(args: argparse.Namespace, work: Path) -> Result:
    # Every session is a socket here and in Dovecot: raise the soft limit for
    # ourselves and the children.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    _inotify_for(args.mailboxes)
    users = [f"idle{i:04d}" for i in range(args.mailboxes)]
    rng = random.Random(args.seed)
    plan = [bench_message(n, rng.choice(users), "idle") for n in range(args.messages)]

    dovecot = Dovecot(
        work / "dovecot",
        label="bench-idle",
        auth_mechanisms="plain login",
        extra_config=SESSION_LOG_CONFIG + MANY_SESSIONS_CONFIG,
    )
    listener = stack = None
    try:
        dovecot.launch()  # inside: a SIGTERM right after it still stops it
        for user in users:
            dovecot.add_user(user, PASSWORD)
        listener, records = start_listener(work, plan)
        stack = Stack(work / "service", FETCH_IDLE_RECONCILE_SECONDS="2")
        add_mailboxes(
            stack,
            dovecot,
            users,
            password=PASSWORD,
            deliver_to=listener.port,
            interval=86400,  # no scheduled poll in the run
            idle=True,
        )
        stack.celery(
            "worker",
            "worker",
            "--queues",
            "push",
            "--concurrency",
            str(args.workers),
            "--loglevel",
            "warning",
            "--without-gossip",
            "--without-mingle",
        )
        time.sleep(3)  # the worker's pool is up before the clock starts
        started = time.time()
        idle = stack.spawn("idle", "manage.py", "idle")

        def held() -> bool:
            found = sessions(dovecot.log_text())
            open_ = {s.user for s in found if s.method == "PLAIN" and s.end is None}
            return len(open_) >= len(users)

        connected_s: float | None
        try:
            _wait(held, args.connect_timeout, "all mailboxes logged in")
            logins = [s.start for s in sessions(dovecot.log_text())]
            connected_s = (
                max(logins) - datetime.fromtimestamp(started)
            ).total_seconds()
        except TimeoutError:
            connected_s = None
        time.sleep(2)  # EXAMINE and IDLE after the last login
        rss_held, _ = rss_kb(idle.pid)

        accepted: dict[str, float] = {}
        gap = 1.0 / args.rate
        for mid, raw in plan:
            user = raw.split(b"To: ", 1)[1].split(b"@", 1)[0].decode()
            began = time.monotonic()
            with smtplib.LMTP(dovecot.host, dovecot.lmtp_port, timeout=60) as lmtp:
                lmtp.sendmail("sender@bench.example", [f"{user}@localhost"], raw)
            accepted[mid] = time.time()
            time.sleep(max(0.0, gap - (time.monotonic() - began)))

        def arrived() -> bool:
            return records.exists() and len(records.read_text().splitlines()) >= len(
                plan
            )

        with contextlib.suppress(TimeoutError):
            _wait(arrived, 120, "every message at the listener")
        rows = [
            json.loads(line)
            for line in (records.read_text().splitlines() if records.exists() else [])
        ]
        seen: dict[str, float] = {}
        duplicates = 0
        for row in rows:
            if row["mid"] in seen:
                duplicates += 1
            seen.setdefault(row["mid"], row["t"])
        latencies = [seen[mid] - at for mid, at in accepted.items() if mid in seen]
        _, rss_peak = rss_kb(idle.pid)
        cpu = cpu_seconds(idle.pid)
        return Result(
            mailboxes=len(users),
            messages=len(plan),
            rate=args.rate,
            connected_s=connected_s,
            rss_held_mb=rss_held / 1024,
            rss_peak_mb=rss_peak / 1024,
            cpu_s=cpu,
            latencies=latencies,
            received=len(seen),
            duplicates=duplicates,
        )
    finally:
        if stack is not None:
            stack.stop()
        if listener is not None:
            listener.stop()
        dovecot.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def section(result: Result, args: argparse.Namespace, load: str) -> str:
    def ms(value: float | None) -> str:
        return "—" if value is None else f"{1000 * value:.0f} ms"

    connected = (
        "not all within the timeout"
        if result.connected_s is None
        else f"{result.connected_s:.1f} s"
    )
    lines = [
        "## IDLE: many mailboxes in one process (issue 14)",
        "",
        f"One `manage.py idle` process holding {result.mailboxes} IMAP mailboxes "
        "(TLS, Dovecot on loopback), push polls by "
        f"{args.workers} Celery worker processes; {result.messages} messages "
        f"delivered by LMTP to random mailboxes at {result.rate:g}/s. "
        f"Reproduce with `.venv/bin/python -m bench.idle --mailboxes {args.mailboxes} "
        f"--messages {args.messages} --rate {args.rate:g}` (issue size: "
        "`--mailboxes 1000 --messages 600 --rate 1`). Machine load at start: "
        f"{load}.",
        "",
        "| figure | value | issue's target (at 1,000 mailboxes) |",
        "| --- | --- | --- |",
        f"| spawn -> every mailbox logged in (Dovecot's log) | {connected} | 60 s |",
        f"| RSS of the IDLE process, all held / peak | {result.rss_held_mb:.0f} MB / "
        f"{result.rss_peak_mb:.0f} MB | 200 MB |",
        f"| its CPU over the whole run | {result.cpu_s:.1f} s | |",
        f"| LMTP accepted -> listener received, p50 | {ms(result.pct(0.5))} | 1 s |",
        f"| p99 | {ms(result.pct(0.99))} | 3 s |",
        f"| max | {ms(max(result.latencies, default=None))} | |",
        f"| messages received / sent, duplicates | {result.received} / "
        f"{result.messages}, {result.duplicates} | all, 0 |",
        "",
        "The latency covers Dovecot's EXISTS to the IDLE session, the push poll "
        "queued through Redis, a worker's poll (log in, fetch, deliver, delete) and "
        "the delivery to the bench listener.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle")
    parser.add_argument("--mailboxes", type=int, default=50)
    parser.add_argument("--messages", type=int, default=30)
    parser.add_argument("--rate", type=float, default=1.0, help="messages a second")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connect-timeout", type=float, default=300.0)
    add_common_options(parser)
    args = parser.parse_args(argv)
    result, load = in_workdir("idle", args.keep_tmp, lambda work: run(args, work))
    print(
        f"{result.mailboxes} mailboxes: connected in {result.connected_s} s, RSS "
        f"{result.rss_held_mb:.0f}/{result.rss_peak_mb:.0f} MB, latency p50 "
        f"{result.pct(0.5)} p99 {result.pct(0.99)}, {result.received}/"
        f"{result.messages} received, {result.duplicates} duplicates"
    )
    if not args.no_docs:
        sections.write(args.docs, "idle", section(result, args, load))
    ok = result.received == result.messages and result.duplicates == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
