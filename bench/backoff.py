"""Backoff benchmark: what failing mailboxes cost the schedule (issue 14).

``python -m bench.backoff [--mailboxes 200] [--failing 0.2] [--hours 6]
[--interval 300] [--kinds temporary,auth,mixed] [--docs docs/benchmarks.md]``

A simulation with a fake clock over the real scheduler code, not a live run:
a throwaway SQLite database holds ``--mailboxes`` mailboxes at ``--interval``
seconds; every ``FETCH_DISPATCH_INTERVAL`` seconds of simulated time the real
dispatcher (``services.mailboxes_dispatch(now=...)``: spread, jittered batch
claims) picks the due ones, and each picked mailbox's poll "happens" at that
moment: the healthy ones succeed, the failing ones (a fixed ``--failing``
share, chosen by seed) fail, and the real ``services.failures.poll_recorded``
sets the next poll (backoff x 2^k with jitter, capped by FETCH_BACKOFF_MAX) and
the state (paused after FETCH_PAUSE_AFTER permanent failures). Alerts are
counted, not sent. What is left out: the poll's own duration and the workers
(a poll here takes no time, so nothing is late).

Failure kinds: ``temporary`` (the connection is refused: retried, backing
off), ``auth`` (the password is refused: permanent, paused after 3), ``mixed``
(half each). The figure is the share of all polls spent on failing mailboxes
(issue 14's target: under 5 % with 20 % of 2,000 failing).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import sections
from bench.tools import REPO

KINDS = ("temporary", "auth", "mixed")
T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)


@dataclass
class Outcome:
    kind: str
    mailboxes: int
    failing: int
    hours: float
    polls: int
    failing_polls: int
    paused: int
    alerts: Counter[str]
    seconds: float

    @property
    def share(self) -> float:
        return self.failing_polls / self.polls if self.polls else 0.0


def _django(database: Path) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fetchweb.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-production")
    sys.path.insert(0, str(REPO))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def simulate(
    *, kind: str, mailboxes: int, failing: float, hours: float, interval: int, seed: str
) -> Outcome:
    from django.conf import settings

    from accounts.models import User
    from retrieval import services
    from retrieval.engine.report import ExitCode
    from retrieval.models import Mailbox, PollRun
    from retrieval.services import alerts, failures

    rng = random.Random(f"{seed}-{kind}")
    Mailbox.objects.all().delete()
    owner = User.objects.filter(email="bench@example.org").first()
    if owner is None:
        owner = User.objects.create_user("bench@example.org", "bench-only-password")
    Mailbox.objects.bulk_create(
        Mailbox(
            owner=owner,
            name=f"m{n}",
            protocol=Mailbox.Protocol.IMAP,
            host="imap.example.org",
            username=f"user{n}",
            poll_interval=interval,
        )
        for n in range(mailboxes)
    )
    ids = list(Mailbox.objects.values_list("pk", flat=True))
    bad = set(rng.sample(ids, round(len(ids) * failing)))
    permanent = {
        pk
        for i, pk in enumerate(sorted(bad))
        if kind == "auth" or (kind == "mixed" and i % 2 == 0)
    }
    sent: Counter[str] = Counter()

    def alert_queue(*, mailbox_id: int, event: str, reason: str) -> None:
        sent[event] += 1

    alerts.alert_queue = alert_queue  # counted, not sent
    polls = failing_polls = 0
    step = timedelta(seconds=settings.FETCH_DISPATCH_INTERVAL)
    ticks = int(hours * 3600 / settings.FETCH_DISPATCH_INTERVAL)
    began = time.perf_counter()
    for tick in range(ticks):
        now = T0 + tick * step
        due = services.mailboxes_dispatch(now=now)
        rows = Mailbox.objects.in_bulk(due)
        for pk in due:
            mailbox = rows[pk]
            polls += 1
            if pk in bad:
                failing_polls += 1
                code = ExitCode.AUTHFAIL if pk in permanent else ExitCode.SOCKET
                run = PollRun(
                    mailbox=mailbox,
                    started_at=now,
                    outcome=PollRun.Outcome.ERROR,
                    exit_code=int(code),
                    error="refused",
                )
            else:
                run = PollRun(
                    mailbox=mailbox,
                    started_at=now,
                    outcome=PollRun.Outcome.NOMAIL,
                    exit_code=int(ExitCode.NOMAIL),
                )
            failures.poll_recorded(
                mailbox=mailbox, run=run, permanent=pk in permanent, now=now
            )
    paused = Mailbox.objects.filter(health=Mailbox.Health.PAUSED).count()
    return Outcome(
        kind=kind,
        mailboxes=mailboxes,
        failing=len(bad),
        hours=hours,
        polls=polls,
        failing_polls=failing_polls,
        paused=paused,
        alerts=sent,
        seconds=time.perf_counter() - began,
    )


def section(outcomes: list[Outcome], args: argparse.Namespace) -> str:
    from django.conf import settings

    lines = [
        "## Backoff: what failing mailboxes cost (issue 14)",
        "",
        "A **simulation with a fake clock over the real scheduler code** "
        "(`services.mailboxes_dispatch` and `services.failures.poll_recorded` on a "
        "throwaway SQLite database), not a live run: polls take no time and "
        "succeed or fail as told. Reproduce with `.venv/bin/python -m bench.backoff "
        f"--mailboxes {args.mailboxes} --failing {args.failing} --hours {args.hours} "
        f"--interval {args.interval}` (issue size: `--mailboxes 2000 --hours 24`).",
        "",
        f"Settings: dispatch every {settings.FETCH_DISPATCH_INTERVAL:g} s, backoff "
        f"capped at {settings.FETCH_BACKOFF_MAX} s, paused after "
        f"{settings.FETCH_PAUSE_AFTER} permanent failures. Target: failing "
        "mailboxes cost under 5 % of the polls.",
        "",
        "| failures | mailboxes (failing) | simulated h | polls | on failing ones "
        "| share | paused | alerts | target | sim. wall s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for o in outcomes:
        alerts = ", ".join(f"{k} {v}" for k, v in sorted(o.alerts.items())) or "none"
        verdict = "**met**" if o.share < 0.05 else "**missed**"
        lines.append(
            f"| {o.kind} | {o.mailboxes} ({o.failing}) | {o.hours:g} | {o.polls} "
            f"| {o.failing_polls} | {100 * o.share:.2f} % | {o.paused} | {alerts} "
            f"| {verdict} | {o.seconds:.0f} |"
        )
    lines += [
        "",
        "*temporary*: the connection is refused (retried at interval x 2^(k-1), "
        "jittered, capped); *auth*: the password is refused (permanent: paused "
        "after the third, one alert for failing and one for paused); *mixed*: half "
        "each. The share falls the longer the run: a failing mailbox's polls grow "
        "logarithmically with time, a healthy one's linearly.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backoff")
    parser.add_argument("--mailboxes", type=int, default=200)
    parser.add_argument("--failing", type=float, default=0.2)
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--interval", type=int, default=300)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--seed", default="fetchweb-bench")
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    if not set(kinds) <= set(KINDS):
        parser.error(f"--kinds: choose from {', '.join(KINDS)}")
    # In memory when the machine has a tmpfs: SQLite's fsync per commit would
    # otherwise measure the disk, not the scheduler.
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="fetchweb-backoff-", dir=shm) as tmp:
        _django(Path(tmp) / "backoff.sqlite3")
        outcomes = []
        for kind in kinds:
            outcome = simulate(
                kind=kind,
                mailboxes=args.mailboxes,
                failing=args.failing,
                hours=args.hours,
                interval=args.interval,
                seed=args.seed,
            )
            print(
                f"{kind}: {outcome.failing_polls}/{outcome.polls} polls on failing "
                f"mailboxes ({100 * outcome.share:.2f} %), {outcome.paused} paused, "
                f"alerts {dict(outcome.alerts)}, {outcome.seconds:.0f} s"
            )
            outcomes.append(outcome)
        text = section(outcomes, args)
    if not args.no_docs:
        sections.write(args.docs, "backoff", text)
    return 0 if all(o.share < 0.05 for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
