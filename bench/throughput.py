"""Whole-service throughput: Celery workers + beat + PostgreSQL + Redis against
Dovecot (TLS), beside one fetchmail polling the same accounts from one rcfile.

``python -m bench.throughput [--mailboxes 50] [--workers 4] [--interval 60]
[--lateness-minutes 2] [--cost-polls 200] [--docs docs/benchmarks.md]``; the
issue's size is ``--mailboxes 10000 --interval 300 --lateness-minutes 30``.
``--cost-only`` stops after phase 1 and prints it (``--cost-profile FILE``
adds a cProfile of its polls).

Phases, each on the same N accounts (Dovecot, implicit TLS, PLAIN login):

1. **The service's own cost per poll**: ``services.mailbox_poll`` in this
   process against the real PostgreSQL with the engine replaced by one that
   returns "no mail" at once, so what is timed is ours alone: lease (UPDATE),
   advisory lock, host slot, the run row and its recording, counters, next
   poll. CPU of this process per poll (``time.process_time``); PostgreSQL's own
   CPU is not in it.
2. **One pass over N empty mailboxes**: fetchmail (``fetchmail -f RCFILE``, one
   pass, the N accounts in one rcfile, as the bench's unprivileged user) vs the
   service (workers and beat already up, then all N made due at once; from
   that moment to the N-th recorded run). Polls per minute = N / wall.
3. **One pass over N mailboxes holding 1-3 new messages each**: the same, the
   mailboxes refilled before each tool; every message must reach the bench
   listener (which checks it against its source).
With ``--keep-sessions SECONDS --shards N`` the service keeps each mailbox's
IMAP session open between polls (FETCH_KEEP_SESSIONS, no host cap) and runs N
one-process workers, one per shard queue (FETCH_POLL_SHARDS), in place of the
one worker with ``--workers`` pool processes; the workers and beat then stay up
across the passes, and a first pass over the N mailboxes (every one logging
in) comes before the measured ones, which find their sessions kept. Dovecot's
limits are raised for that many sessions at once (its login mode unchanged).

4. **Lateness**: the service alone, every mailbox at ``--interval`` seconds
   (first polls spread over one interval), for ``--lateness-minutes``; for each
   two consecutive polls of a mailbox, gap / interval (the target: every gap
   within interval + 10 %; the schedule's own jitter only makes polls early,
   interval x (0.9 .. 1)).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench import cpu_parts, sections
from bench.idle import MANY_SESSIONS_CONFIG_LIMITS
from bench.job import Job
from bench.stack import (
    Stack,
    add_common_options,
    add_mailboxes,
    bench_message,
    in_workdir,
    start_listener,
)
from bench.tools import Fetchmail, Workspace
from tests.support.dovecot import Dovecot

PASSWORD = "bench-service-secret"


@dataclass
class Pass:
    tool: str
    polls: int
    wall_s: float
    delivered: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # seconds per part

    @property
    def per_minute(self) -> float:
        return 60 * self.polls / self.wall_s if self.wall_s else 0.0


@dataclass
class Figures:
    mailboxes: int
    cost_ms: float = 0.0
    cost_wall_ms: float = 0.0
    cost_statements: int = 0
    passes: dict[str, list[Pass]] = field(default_factory=dict)
    gaps: list[float] = field(default_factory=list)
    lateness_polls: int = 0
    lateness_mailboxes: int = 0  # mailboxes with at least one poll in the window
    lateness_cpu: dict[str, float] = field(default_factory=dict)  # seconds per part
    first_pass: Pass | None = None  # --keep-sessions: the pass that logs in


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _fetchmail_pass(
    work: Path, dovecot: Dovecot, users: list[str], port: int, records: Path
) -> Pass:
    tool = Fetchmail()
    directory = work / f"fetchmail-{time.monotonic_ns()}"
    directory.mkdir()
    job = Job(
        protocol="imap",
        host="localhost",
        port=dovecot.imaps_port,
        tls=True,
        ca_file=dovecot.ca_file,
        users=tuple(users),
        password=PASSWORD,
        keep=False,
        deliver_port=port,
        lmtp=False,
        recipient="sink",
    )
    space = Workspace(
        dir=directory,
        rcfile=directory / "fetchmailrc",
        job=directory / "job.json",
        log=directory / "output.log",
        records=records,
        expected=0,
    )
    job.write(space.rcfile, space.job)
    for path in (space.dir, space.rcfile, space.job):
        os.chown(path, tool.uid or 0, tool.gid if tool.gid is not None else -1)
    before = len(_records(records))
    cpu_before = cpu_parts.snapshot()
    measured = tool.measure(space, timeout=3600)
    cpu = cpu_parts.between(cpu_before, cpu_parts.snapshot())
    # fetchmail is the harness's child: its CPU comes from wait4, not /proc.
    cpu["fetchmail"] = measured.user_s + measured.sys_s
    cpu["other"] = max(0.0, cpu["other"] - cpu["fetchmail"])
    return Pass(
        "fetchmail",
        len(users),
        measured.wall_s,
        delivered=len(_records(records)) - before,
        cpu=dict(cpu),
    )


def _service_start(stack: Stack, args: argparse.Namespace) -> list[Any]:
    """Workers and beat, up and given time to start (their start-up is not the
    service's speed)."""
    processes = _workers(stack, args)
    processes.append(_beat(stack))
    time.sleep(args.warmup)
    return processes


def _beat(stack: Stack) -> Any:
    return stack.celery(
        "beat", "beat", "--loglevel", "warning", "--schedule", str(stack.work / "beat")
    )


def _service_pass(
    stack: Stack,
    args: argparse.Namespace,
    records: Path,
    running: list[Any] | None = None,
) -> Pass:
    """Every mailbox falls due at once and the clock runs until each has a
    finished run; on the workers and beat ``running``, or on ones started for
    this pass and stopped after it."""
    from django.db.models import Max
    from django.utils import timezone

    from retrieval.models import Mailbox, PollRun

    n = Mailbox.objects.count()
    first = PollRun.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    before = len(_records(records))
    processes = running if running is not None else _service_start(stack, args)
    started = timezone.now()
    cpu_before = cpu_parts.snapshot()
    Mailbox.objects.update(next_poll_at=started)
    runs = PollRun.objects.filter(pk__gt=first).exclude(outcome="running")
    # Until every mailbox has a finished run (a mailbox may be polled twice
    # before the last one's turn comes: that poll counts, the pass goes on).
    polled = runs.values("mailbox_id").distinct()
    deadline = time.monotonic() + 3600
    while polled.count() < n and time.monotonic() < deadline:
        time.sleep(0.5)
    cpu = cpu_parts.between(cpu_before, cpu_parts.snapshot())
    last = runs.aggregate(last=Max("finished_at"))["last"] or timezone.now()
    _timeline(runs, started, args.shards)
    if running is None:
        for process in reversed(processes):
            stack.end(process)
    Mailbox.objects.update(next_poll_at=timezone.now() + timedelta(days=1))
    # Polls per minute count mailboxes, as for fetchmail's one pass; a second
    # poll of a mailbox within the pass adds nothing (its CPU is in ``cpu``).
    return Pass(
        "fetchweb service",
        n,
        (last - started).total_seconds(),
        delivered=len(_records(records)) - before,
        cpu=dict(cpu),
    )


def _timeline(runs: Any, started: datetime, shards: int) -> None:
    """Where a pass's time went (printed, not in the docs): the first poll's
    start after the mailboxes fell due, and when each shard's last poll ended."""
    rows = list(runs.values_list("mailbox_id", "started_at", "finished_at"))
    if not rows:
        return
    first = min(begun for _, begun, _ in rows)
    last_of: dict[int, datetime] = {}
    for mailbox_id, _, end in rows:
        shard = mailbox_id % shards if shards > 0 else 0
        if end is not None and (shard not in last_of or end > last_of[shard]):
            last_of[shard] = end
    ends = [f"{(last_of[k] - started).total_seconds():.2f}" for k in sorted(last_of)]
    print(
        f"timeline: first poll began {(first - started).total_seconds():.2f} s after "
        f"the mailboxes fell due; last poll of each shard ended at {', '.join(ends)} s",
        flush=True,
    )


def _workers(stack: Stack, args: argparse.Namespace) -> list[Any]:
    """One worker with ``--workers`` pool processes; or, with ``--shards``, one
    of a single process per shard queue beside one for beat's own tasks."""
    quiet = ("--loglevel", "warning", "--without-gossip", "--without-mingle")
    if not args.shards:
        return [
            stack.celery(
                "worker",
                "worker",
                "--queues",
                "polls,celery",
                "--concurrency",
                str(args.workers),
                *quiet,
            )
        ]
    workers = [
        stack.celery(
            "worker",
            "worker",
            "--queues",
            "celery",
            "--concurrency",
            "1",
            "--hostname",
            "beat-tasks@bench",
            *quiet,
        )
    ]
    for shard in range(args.shards):
        workers.append(
            stack.celery(
                f"worker-{shard}",
                "worker",
                "--queues",
                f"polls.{shard}",
                "--concurrency",
                "1",
                "--hostname",
                f"polls-{shard}@bench",
                *quiet,
            )
        )
    return workers


def _cost_per_poll(polls: int, profile: Path | None = None) -> tuple[float, float, int]:
    """CPU and wall ms per ``services.mailbox_poll`` with a no-op engine, and
    the SQL statements of one such poll; ``profile``: cProfile the timed polls
    into that file (pstats), for finding where the time goes."""
    import cProfile

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from retrieval import services
    from retrieval.engine.report import ExitCode, PollReport
    from retrieval.models import Mailbox

    def engine_poll(spec: object, **kwargs: object) -> PollReport:
        return PollReport(exit_code=ExitCode.NOMAIL)

    real = services.polls.engine_poll
    services.polls.engine_poll = engine_poll  # type: ignore[assignment]
    try:
        ids = list(Mailbox.objects.values_list("pk", flat=True))
        for pk in ids[:5]:  # warm: connection, caches
            services.mailbox_poll(mailbox_id=pk)
        with CaptureQueriesContext(connection) as queries:
            services.mailbox_poll(mailbox_id=ids[0])
        profiler = cProfile.Profile() if profile else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        for i in range(polls):
            services.mailbox_poll(mailbox_id=ids[i % len(ids)])
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if profiler and profile:
            profiler.dump_stats(profile)
    finally:
        services.polls.engine_poll = real
    return 1000 * cpu / polls, 1000 * wall / polls, len(queries)


def _lateness(stack: Stack, args: argparse.Namespace, figures: Figures) -> None:
    from django.utils import timezone

    from retrieval.models import Mailbox, PollRun

    first = PollRun.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    # Never polled: the dispatcher spreads their first polls over one interval.
    Mailbox.objects.update(next_poll_at=None)
    cpu_before = cpu_parts.snapshot()
    processes = _workers(stack, args)
    processes.append(_beat(stack))
    time.sleep(60 * args.lateness_minutes)
    figures.lateness_cpu = dict(cpu_parts.between(cpu_before, cpu_parts.snapshot()))
    for process in reversed(processes):
        stack.end(process)
    Mailbox.objects.update(next_poll_at=timezone.now() + timedelta(days=1))
    starts: dict[int, list[Any]] = defaultdict(list)
    for mailbox_id, at in PollRun.objects.filter(pk__gt=first).values_list(
        "mailbox_id", "started_at"
    ):
        starts[mailbox_id].append(at)
    gaps = []
    for moments in starts.values():
        moments.sort()
        gaps += [
            (b - a).total_seconds() / args.interval
            for a, b in itertools.pairwise(moments)
        ]
    figures.gaps = gaps
    figures.lateness_polls = sum(len(m) for m in starts.values())
    figures.lateness_mailboxes = len(starts)


def run(args: argparse.Namespace, work: Path) -> Figures:
    users = [f"tp{i:05d}" for i in range(args.mailboxes)]
    rng = random.Random(args.seed)
    fill = {
        u: [bench_message(n, u, "tp") for n in range(rng.randint(1, 3))] for u in users
    }
    dovecot = Dovecot(
        work / "dovecot",
        label="bench-service",
        auth_mechanisms="plain login",
        extra_config=MANY_SESSIONS_CONFIG_LIMITS if args.keep_sessions else "",
    )
    listener = stack = None
    figures = Figures(mailboxes=len(users))
    try:
        dovecot.launch()  # inside: a SIGTERM right after it still stops it
        for user in users:
            dovecot.add_user(user, PASSWORD)
        listener, records = start_listener(
            work, [m for msgs in fill.values() for m in msgs]
        )
        service_env = {"FETCH_POLL_SHARDS": str(args.shards)}
        if args.keep_sessions:
            service_env |= {
                "FETCH_KEEP_SESSIONS": str(args.keep_sessions),
                "FETCH_KEEP_SESSIONS_MAX": str(args.mailboxes),
                "FETCH_MAX_SESSIONS_PER_HOST": "0",
            }
        stack = Stack(work / "service", FETCH_DISPATCH_INTERVAL="1", **service_env)
        add_mailboxes(
            stack,
            dovecot,
            users,
            password=PASSWORD,
            deliver_to=listener.port,
            interval=args.interval,
        )
        figures.cost_ms, figures.cost_wall_ms, figures.cost_statements = _cost_per_poll(
            args.cost_polls, args.cost_profile
        )
        print(
            f"cost per poll: {figures.cost_ms:.2f} ms CPU "
            f"({figures.cost_wall_ms:.1f} ms wall, {figures.cost_statements} SQL "
            "statements)",
            flush=True,
        )
        if args.cost_only:
            return figures
        if args.lateness_only:
            _lateness(stack, args, figures)
            return figures

        def refill() -> None:
            for user, msgs in fill.items():
                for _, raw in msgs:
                    dovecot.put(user, raw)

        running = None
        if args.keep_sessions:
            running = _service_start(stack, args)
            first = _service_pass(stack, args, records, running)
            figures.first_pass = first
            print(f"first pass, logging in: {first}", flush=True)
        for phase, full in (("empty", False), ("1-3 new messages", True)):
            if full:
                refill()
            fetchmail = _fetchmail_pass(work, dovecot, users, listener.port, records)
            if full:
                refill()
            service = _service_pass(stack, args, records, running)
            figures.passes[phase] = [fetchmail, service]
            print(f"{phase}: {fetchmail} / {service}", flush=True)
        if running is not None:
            for process in reversed(running):
                stack.end(process)
        if args.lateness_minutes > 0:
            _lateness(stack, args, figures)
    finally:
        if stack is not None:
            stack.stop()
        if listener is not None:
            listener.stop()
        dovecot.stop()
    return figures


def section_name(args: argparse.Namespace) -> str:
    """Sessions kept between polls get a section of their own beside the
    default's (a login every poll)."""
    return "throughput-kept" if args.keep_sessions else "throughput"


def section(figures: Figures, args: argparse.Namespace, load: str) -> str:
    if args.keep_sessions:
        title = "## Whole service with sessions kept between polls (issue 14)"
        workers = (
            f"{args.shards} workers of one process each, one per shard queue, "
            "a task per batch of up to 50 of a shard's due mailboxes "
            f"(FETCH_POLL_SHARDS={args.shards}, FETCH_KEEP_SESSIONS="
            f"{args.keep_sessions}, FETCH_MAX_SESSIONS_PER_HOST=0)"
        )
        options = f"--keep-sessions {args.keep_sessions} --shards {args.shards} "
    else:
        title = "## Whole service: polls per minute, lateness, cost per poll (issue 14)"
        workers = f"one worker process with {args.workers} pool processes"
        options = f"--workers {args.workers} "
    lines = [
        title,
        "",
        f"{figures.mailboxes} IMAP mailboxes on Dovecot (implicit TLS, PLAIN), "
        f"Celery: {workers} + beat "
        "(dispatch every 1 s), private PostgreSQL and Redis, all on this machine; "
        "fetchmail 6.4 polls the same accounts from one rcfile, one pass. "
        "Reproduce with `.venv/bin/python -m bench.throughput --mailboxes "
        f"{args.mailboxes} {options}--interval {args.interval} "
        f"--lateness-minutes {args.lateness_minutes:g}` (issue size: "
        "`--mailboxes 10000 --interval 300 --lateness-minutes 30`). "
        f"Load average at start: {load} (2 cores shared with other jobs).",
        "",
    ]
    if figures.first_pass is not None:
        first = figures.first_pass
        lines += [
            f"Before the measured passes, a first pass over the {first.polls} "
            f"mailboxes logged each in and kept its session: {first.wall_s:.1f} s "
            f"({first.per_minute:.0f} polls/min). Dovecot's limits are raised for "
            "that many sessions at once (2,500 imap and imap-login processes); "
            "its login mode is its default for every pass and for fetchmail.",
            "",
        ]
    lines += [
        "| pass over all mailboxes | tool | polls | wall s | polls/min | delivered "
        "| x fetchmail (target >= 3x) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for phase, (fetchmail, service) in figures.passes.items():
        ratio = service.per_minute / fetchmail.per_minute if fetchmail.per_minute else 0
        for p, r in ((fetchmail, "—"), (service, f"{ratio:.2f}x")):
            lines.append(
                f"| {phase} | {p.tool} | {p.polls} | {p.wall_s:.1f} "
                f"| {p.per_minute:.0f} | {p.delivered} | {r} |"
            )
    lines += _cpu_table(figures)
    lines += [
        "",
        f"The service's own cost per poll (lease, advisory lock, host slot, run "
        f"row, counters, next poll; engine replaced by a no-op, "
        f"{args.cost_polls} polls in one process against the real PostgreSQL): "
        f"**{figures.cost_ms:.2f} ms CPU** ({figures.cost_wall_ms:.1f} ms wall, "
        f"{figures.cost_statements} SQL statements) per "
        "poll; target under 5 ms. PostgreSQL's own CPU is not included.",
        "",
    ]
    lines += _lateness_lines(figures, args)
    return "\n".join(lines)


def _lateness_lines(figures: Figures, args: argparse.Namespace) -> list[str]:
    if not figures.gaps:
        return []
    gaps = sorted(figures.gaps)

    def q(p: float) -> float:
        return gaps[min(len(gaps) - 1, int(p * len(gaps)))]

    late = sum(1 for g in gaps if g > 1.1)
    return [
        f"Lateness: every mailbox at a {args.interval} s interval for "
        f"{args.lateness_minutes:g} min ({figures.lateness_polls} polls of "
        f"{figures.lateness_mailboxes} mailboxes, {len(gaps)} gaps between two "
        f"polls of one mailbox). Gap / interval: median "
        f"{statistics.median(gaps):.3f}, p90 {q(0.9):.3f}, p99 {q(0.99):.3f}, "
        f"p99.9 {q(0.999):.3f}, max {gaps[-1]:.3f}; over 1.10 (later than "
        f"interval + 10 %): {late} ({100 * late / len(gaps):.2f} %).",
        "",
    ]


def lateness_section(figures: Figures, args: argparse.Namespace, load: str) -> str:
    """The issue-size schedule run alone (``--lateness-only``): its own section,
    so the passes' section keeps its figures."""
    window = 60 * args.lateness_minutes
    busy = sum(figures.lateness_cpu.values())
    gaps = sorted(figures.gaps)
    edges = (0.8, 0.9, 0.95, 1.0, 1.05, 1.1)
    buckets = [sum(1 for g in gaps if g <= edges[0])]
    buckets += [
        sum(1 for g in gaps if lo < g <= hi) for lo, hi in itertools.pairwise(edges)
    ]
    buckets.append(sum(1 for g in gaps if g > edges[-1]))
    labels = [f"<= {edges[0]}"]
    labels += [f"{lo}-{hi}" for lo, hi in itertools.pairwise(edges)]
    labels.append(f"> {edges[-1]}")
    if args.shards:
        workers = (
            f"{args.shards} workers of one process, one per shard queue, a task "
            "per batch of up to 50 of a shard's due mailboxes"
        )
        option = f"--shards {args.shards}"
    else:
        workers = f"one worker process with {args.workers} pool processes"
        option = f"--workers {args.workers}"
    lines = [
        "## Lateness at the issue's size: every mailbox at its interval (issue 14)",
        "",
        f"{figures.mailboxes} IMAP mailboxes on Dovecot (implicit TLS, PLAIN), "
        f"each due every {args.interval} s, for {args.lateness_minutes:g} minutes; "
        f"Celery: {workers} + beat "
        "(dispatch every 1 s), private PostgreSQL and Redis, all on this machine's "
        "two cores; first polls spread over one interval by the dispatcher. "
        "Reproduce with `.venv/bin/python -m bench.throughput --lateness-only "
        f"--mailboxes {args.mailboxes} {option} --interval "
        f"{args.interval} --lateness-minutes {args.lateness_minutes:g}`. Load "
        f"average at start: {load}.",
        "",
        *_lateness_lines(figures, args),
        "| gap / interval | " + " | ".join(labels) + " |",
        "| --- |" + " --- |" * len(labels),
        "| gaps | " + " | ".join(str(b) for b in buckets) + " |",
        "",
        "(The schedule's jitter makes a poll early, never late: gaps below 1.0 "
        "are by design.)",
        "",
        f"CPU during the window, of the two cores: {100 * busy / (2 * window):.0f} % "
        "("
        + ", ".join(
            f"{part} {100 * figures.lateness_cpu.get(part, 0.0) / (2 * window):.1f} %"
            for part in _PARTS
            if figures.lateness_cpu.get(part)
        )
        + f"); {1000 * busy / max(1, figures.lateness_polls):.1f} ms of CPU a poll "
        "in all.",
        "",
    ]
    return "\n".join(lines)


_PARTS = ("dovecot", "fetchmail", "celery workers", "postgres", "redis", "celery beat")


def _cpu_table(figures: Figures) -> list[str]:
    """CPU milliseconds per poll by part: what bounds each tool on these cores."""
    lines = [
        "",
        "CPU per mailbox of the pass by part, in ms (from /proc: each process "
        "with the children it reaped; a mailbox polled twice within the pass is "
        "charged both polls; *all* is the sum of every part, the harness "
        "included):",
        "",
        "| pass | tool | " + " | ".join(_PARTS) + " | all |",
        "| --- | --- |" + " --- |" * (len(_PARTS) + 1),
    ]
    for phase, passes in figures.passes.items():
        for p in passes:
            cells = [
                f"{1000 * p.cpu.get(part, 0.0) / p.polls:.1f}" if p.polls else "-"
                for part in _PARTS
            ]
            total = 1000 * sum(p.cpu.values()) / p.polls if p.polls else 0.0
            lines.append(
                f"| {phase} | {p.tool} | " + " | ".join(cells) + f" | {total:.1f} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput")
    parser.add_argument("--mailboxes", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--interval", type=int, default=60)
    parser.add_argument("--lateness-minutes", type=float, default=2.0)
    parser.add_argument("--cost-polls", type=int, default=200)
    parser.add_argument(
        "--keep-sessions",
        type=int,
        default=0,
        help="FETCH_KEEP_SESSIONS for the service (seconds; 0: log out each poll)",
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=0,
        help="FETCH_POLL_SHARDS: one single-process worker per shard queue",
    )
    parser.add_argument(
        "--cost-only",
        action="store_true",
        help="measure the cost per poll only (phase 1), print it, write no docs",
    )
    parser.add_argument(
        "--lateness-only",
        action="store_true",
        help="run the schedule alone (phase 4) and write its own docs section",
    )
    parser.add_argument(
        "--cost-profile",
        type=Path,
        help="cProfile the cost polls into this file (pstats)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=20.0,
        help="seconds for workers and beat to start",
    )
    add_common_options(parser)
    args = parser.parse_args(argv)
    figures, load = in_workdir("service", args.keep_tmp, lambda work: run(args, work))
    if args.cost_only:
        print(f"load average at start: {load}")
        return 0
    name, text = (
        ("lateness", lateness_section(figures, args, load))
        if args.lateness_only
        else (section_name(args), section(figures, args, load))
    )
    print(text)
    if not args.no_docs:
        sections.write(args.docs, name, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
