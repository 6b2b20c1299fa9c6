"""CPU per poll of the worker's code path, against a real Dovecot (issue 14).

``python -m bench.poll_cpu [--mailboxes 50] [--rounds 10] [--messages 0]
[--modes task,apply,celery,batch] [--profile FILE] [--log-level WARNING]
[--login high-security|performance] [--worker-profile FILE]``

N IMAP mailboxes on the test suite's Dovecot (implicit TLS, PLAIN login, as
``bench.throughput``), a private PostgreSQL and Redis (``bench/stack.py``).
Each round polls every mailbox once; ``--messages K`` puts 1..K new messages
in each mailbox before every round (outside the timed part; they go to the
bench listener, which checks them). Modes, each timed separately:

* ``task``: the poll task's function called in this process
  (``retrieval.tasks.poll_mailbox(pk)``): ``services.mailbox_poll``, the spec,
  the engine's session (connect, TLS, login, select, search, logout), the
  transcript, the recording, metrics and logs. CPU of this process per poll
  from ``resource.getrusage`` (user + system).
* ``apply``: the same through Celery's tracer in this process
  (``poll_mailbox.apply``): adds the task signals (``task_prerun`` closes
  stale database connections) and the tracer's own work.
* ``celery``: the whole round trip: a worker (``celery worker --pool solo``,
  one process, so its CPU is one figure) consumes the polls this process
  queues with ``delay``; the worker's CPU per poll from /proc, its Redis
  traffic included, the harness's publishing not.
* ``batch``: the same worker given ``poll_mailboxes`` tasks of up to 50
  mailboxes each, as the dispatcher queues them with ``FETCH_POLL_SHARDS``.

Besides this process's CPU, every mode reports the CPU PostgreSQL, Dovecot and
Redis spent over the same polls (``bench/cpu_parts.py``: each process with its
reaped children). ``--profile FILE`` writes a cProfile of the ``task`` mode's
polls (pstats) and prints its top functions. Nothing is asserted; CPU time
stays meaningful on a busy machine, wall time does not (the load average is
printed).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench import cpu_parts
from bench.stack import Stack, add_mailboxes, bench_message, in_workdir, start_listener
from tests.support.dovecot import Dovecot

if TYPE_CHECKING:
    from collections.abc import Callable

PASSWORD = "bench-poll-cpu-secret"
MODES = ("task", "apply", "celery", "batch")
_PARTS = ("postgres", "dovecot", "redis", "celery workers")
# Dovecot's login processes in "performance mode": long-lived, one of them. The
# default ("high-security", as bench.throughput runs it) starts a login process
# per connection, which is most of Dovecot's CPU per poll (~10 ms of its ~16).
PERFORMANCE_LOGIN = """
service imap-login {
  service_count = 0
  process_min_avail = 1
  process_limit = 1
}
"""


@dataclass
class Figure:
    mode: str
    polls: int = 0
    cpu_s: float = 0.0  # this process (task, apply) or the worker (celery)
    wall_s: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)  # seconds
    outcomes: dict[str, int] = field(default_factory=dict)

    def ms(self, seconds: float) -> float:
        return 1000 * seconds / self.polls if self.polls else 0.0

    def line(self) -> str:
        parts = ", ".join(
            f"{part} {self.ms(self.parts.get(part, 0.0)):.2f}"
            for part in _PARTS
            if part in self.parts
        )
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        return (
            f"{self.mode}: {self.ms(self.cpu_s):6.2f} ms CPU per poll "
            f"({self.ms(self.wall_s):.1f} ms wall; {self.polls} polls: {outcomes}); "
            f"others per poll: {parts}"
        )


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Rig:
    """Dovecot, PostgreSQL, Redis, the listener and N mailboxes."""

    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        self.args = args
        self.users = [f"pc{i:05d}" for i in range(args.mailboxes)]
        self.rng = random.Random(args.seed)
        self.counter = 0
        self.expected: list[tuple[str, bytes]] = []
        self.dovecot = Dovecot(
            work / "dovecot",
            label="bench-poll-cpu",
            auth_mechanisms="plain login",
            extra_config=PERFORMANCE_LOGIN if args.login == "performance" else "",
        )
        self.dovecot.launch()
        self.listener = self.stack = None
        try:
            for user in self.users:
                self.dovecot.add_user(user, PASSWORD)
            # Every message this run may put, known to the listener up front.
            self.fills = self._plan_fills()
            self.listener, self.records = start_listener(work, self.expected)
            self.stack = Stack(work / "service", FETCH_LOG_LEVEL=args.log_level)
            add_mailboxes(
                self.stack,
                self.dovecot,
                self.users,
                password=PASSWORD,
                deliver_to=self.listener.port,
                interval=3600,
            )
            from retrieval.models import Mailbox

            self.ids = list(Mailbox.objects.order_by("pk").values_list("pk", flat=True))
        except BaseException:
            self.stop()
            raise

    def _plan_fills(self) -> list[dict[str, list[bytes]]]:
        """Per round (the two warm-up rounds included), per user, the
        messages to put."""
        rounds: list[dict[str, list[bytes]]] = []
        if self.args.messages <= 0:
            return rounds
        for _ in range(2 + self.args.rounds * len(self.args.modes)):
            fill = {}
            for user in self.users:
                msgs = []
                for _ in range(self.rng.randint(1, self.args.messages)):
                    mid, raw = bench_message(self.counter, user, "pc")
                    self.counter += 1
                    self.expected.append((mid, raw))
                    msgs.append(raw)
                fill[user] = msgs
            rounds.append(fill)
        return rounds

    def refill(self) -> None:
        if not self.fills:
            return
        for user, msgs in self.fills.pop(0).items():
            for raw in msgs:
                self.dovecot.put(user, raw)

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()
        if self.listener is not None:
            self.listener.stop()
        self.dovecot.stop()


def _outcomes(first_run: int) -> dict[str, int]:
    from django.db.models import Count

    from retrieval.models import PollRun

    rows = (
        PollRun.objects.filter(pk__gt=first_run)
        .values_list("outcome")
        .annotate(n=Count("pk"))
    )
    return dict(rows)


def _last_run() -> int:
    from retrieval.models import PollRun

    return PollRun.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def _in_process(
    rig: Rig, mode: str, call: Callable[[int], object], profile: Path | None
) -> Figure:
    figure = Figure(mode)
    first = _last_run()
    # CPU time, not wall time: the waits on the network are not ours to cut.
    profiler = cProfile.Profile(time.process_time) if profile else None
    for _ in range(rig.args.rounds):
        rig.refill()
        before_parts = cpu_parts.snapshot()
        cpu, wall = _cpu(), time.perf_counter()
        if profiler:
            profiler.enable()
        for pk in rig.ids:
            call(pk)
        if profiler:
            profiler.disable()
        figure.cpu_s += _cpu() - cpu
        figure.wall_s += time.perf_counter() - wall
        spent = cpu_parts.between(before_parts, cpu_parts.snapshot())
        for part in _PARTS[:3]:
            figure.parts[part] = figure.parts.get(part, 0.0) + spent.get(part, 0.0)
        figure.polls += len(rig.ids)
    figure.outcomes = _outcomes(first)
    if profiler and profile:
        profiler.dump_stats(profile)
    return figure


def _celery(rig: Rig, mode: str = "celery") -> Figure:
    """The worker's round trip: queue every mailbox's poll (``batch``: a
    ``poll_mailboxes`` task per 50, as shard batches go), wait for its run."""
    from retrieval.tasks import SHARD_BATCH, poll_mailbox, poll_mailboxes

    figure = Figure(mode)

    def queue(ids: list[int]) -> None:
        if mode == "batch":
            for at in range(0, len(ids), SHARD_BATCH):
                poll_mailboxes.delay(ids[at : at + SHARD_BATCH])
        else:
            for pk in ids:
                poll_mailbox.delay(pk)

    stack = rig.stack
    assert stack is not None
    # --worker-profile: the worker under cProfile (written when it stops).
    profiled = ("-m", "cProfile", "-o", str(rig.args.worker_profile))
    worker = stack.spawn(
        "worker",
        *(profiled if rig.args.worker_profile else ()),
        "-m",
        "celery",
        "-A",
        "fetchweb",
        "worker",
        "--queues",
        "polls",
        "--pool",
        "solo",
        "--loglevel",
        "warning",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    )
    try:
        first = _last_run()
        # The worker's start-up is not a poll's cost: one round first, untimed.
        _celery_round(rig, queue, first)
        first = _last_run()
        for _ in range(rig.args.rounds):
            rig.refill()
            mark = _last_run()
            before = cpu_parts.snapshot()
            wall = time.perf_counter()
            _celery_round(rig, queue, mark)
            figure.wall_s += time.perf_counter() - wall
            spent = cpu_parts.between(before, cpu_parts.snapshot())
            figure.cpu_s += spent.get("celery workers", 0.0)
            for part in _PARTS:
                figure.parts[part] = figure.parts.get(part, 0.0) + spent.get(part, 0.0)
            figure.polls += len(rig.ids)
        figure.outcomes = _outcomes(first)
    finally:
        stack.end(worker)
    return figure


def _celery_round(rig: Rig, queue: Callable[[list[int]], None], after: int) -> None:
    from retrieval.models import PollRun

    queue(rig.ids)
    finished = PollRun.objects.filter(pk__gt=after).exclude(outcome="running")
    deadline = time.monotonic() + 600
    while finished.count() < len(rig.ids):
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not finish the round in 10 minutes")
        time.sleep(0.05)


def _show_statements(rig: Rig, call: Callable[[int], object]) -> None:
    """The SQL statements of one poll (of the first mailbox, as it is now)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        call(rig.ids[0])
    print(f"SQL statements of one poll: {len(queries)}", flush=True)
    for query in queries:
        print(f"  {' '.join(query['sql'].split())[:160]}", flush=True)


def run(args: argparse.Namespace, work: Path) -> list[Figure]:
    rig = Rig(work, args)
    try:
        from retrieval import tasks

        # Warm-up: connections, imports, TLS contexts, Dovecot's indexes.
        rig.refill()
        for pk in rig.ids:
            tasks.poll_mailbox(pk)
        _show_statements(rig, tasks.poll_mailbox)
        if args.messages:
            rig.refill()  # the first round's mail: one poll of it shown, all polled
            _show_statements(rig, tasks.poll_mailbox)
            for pk in rig.ids[1:]:
                tasks.poll_mailbox(pk)
        figures = []
        for mode in args.modes:
            if mode == "task":
                figure = _in_process(rig, mode, tasks.poll_mailbox, args.profile)
            elif mode == "apply":
                figure = _in_process(
                    rig, mode, lambda pk: tasks.poll_mailbox.apply(args=(pk,)), None
                )
            else:
                figure = _celery(rig, mode)
            print(figure.line(), flush=True)
            figures.append(figure)
        delivered = (
            len(rig.records.read_text().splitlines()) if rig.records.exists() else 0
        )
        print(f"messages received by the listener: {delivered}", flush=True)
        return figures
    finally:
        rig.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.poll_cpu")
    parser.add_argument("--mailboxes", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=10, help="polls per mailbox")
    parser.add_argument(
        "--messages",
        type=int,
        default=0,
        help="put 1..N new messages in each mailbox before each round (0: empty)",
    )
    parser.add_argument(
        "--modes",
        type=lambda text: [m for m in text.split(",") if m],
        default=list(MODES),
        help="comma-separated: " + ",".join(MODES),
    )
    parser.add_argument("--profile", type=Path, help="cProfile of the task mode")
    parser.add_argument(
        "--worker-profile",
        type=Path,
        help="cProfile of the celery mode's worker (its start-up included)",
    )
    parser.add_argument(
        "--log-level", default="WARNING", help="FETCH_LOG_LEVEL (production: INFO)"
    )
    parser.add_argument(
        "--login",
        choices=("high-security", "performance"),
        default="high-security",
        help="Dovecot's imap-login mode (high-security: a process per connection)",
    )
    parser.add_argument("--seed", default="fetchweb-bench")
    parser.add_argument("--keep-tmp", action="store_true")
    args = parser.parse_args(argv)
    if bad := set(args.modes) - set(MODES):
        parser.error(f"unknown modes: {', '.join(sorted(bad))}")
    _, load = in_workdir("poll-cpu", args.keep_tmp, lambda work: run(args, work))
    print(f"load average at start: {load}")
    if args.profile:
        stats = pstats.Stats(str(args.profile))
        stats.sort_stats("cumulative").print_stats(40)
        stats.sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
