"""``python -m bench.console``: the console's pages at 10,000 mailboxes (issue 13).

Starts the test suite's private PostgreSQL (``tests/support/postgres.py``),
migrates it, fills it with ``--mailboxes`` mailboxes (default 10,000), ``--runs``
poll runs (1,000,000) and about ``--messages`` message results (5,000,000), then
times the dashboard, the mailbox list (every filter, search, every sort, first,
middle and last page) and a mailbox page in-process with Django's test client,
for a superuser, the administrator of the largest domain and the user with the
most mailboxes. Each URL is asked ``--iterations`` times after two warm-ups; the
page reports the median and the 95th percentile of the server time, and writes
its section of docs/benchmarks.md (kept when ``python -m bench`` renders the
rest of the page).

The rows are written with ``INSERT ... SELECT generate_series`` (runs, message
results, the hourly, daily and per-domain daily counters computed from the
runs, so the dashboard agrees with them), not with the ORM, and each mailbox's
last run is put on its row by the service that keeps it
(``services.latest_run_refresh``); people and mailboxes, a few thousand rows,
with ``bulk_create``. The distribution: 200 domains of skewed sizes (the largest
holds about 7 % of the mailboxes), a handful of owners per domain, again skewed,
5 % of the mailboxes a superuser's without a domain; runs over 30 days, 1 in 10
mailboxes failing, a few disabled, paused and never polled.

No timing is asserted anywhere: the figures are for reading (targets: median
under 150 ms, p95 under 300 ms).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import sections

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "benchmarks.md"
SECTION = "console"
TARGET_MEDIAN_MS = 150.0
TARGET_P95_MS = 300.0
DOMAINS = 200
DAYS = 30


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__)
    ap.add_argument("--mailboxes", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--messages", type=int, default=5_000_000)
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--seed", default="fetchweb-console")
    ap.add_argument("--docs", type=Path, default=DOCS)
    ap.add_argument("--no-docs", action="store_true")
    ap.add_argument(
        "--keep",
        action="store_true",
        help="leave the filled PostgreSQL running and print its URL (for EXPLAIN)",
    )
    ap.add_argument(
        "--reuse",
        metavar="URL",
        help="measure the database a --keep run left (migrated again, not filled)",
    )
    ap.add_argument(
        "--only", default="", help="measure only pages whose label has this"
    )
    return ap


def _stop_on_term(signum: int, frame: Any) -> None:
    raise SystemExit(f"signal {signum}")  # so that the cluster is stopped


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from tests.support.postgres import PostgresCluster

    signal.signal(signal.SIGTERM, _stop_on_term)
    pg = None if args.reuse else PostgresCluster.start()
    try:
        os.environ["DATABASE_URL"] = args.reuse or pg.url  # type: ignore[union-attr]
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fetchweb.settings")
        import django

        django.setup()
        from django.core.management import call_command
        from django.test.utils import override_settings

        call_command("migrate", verbosity=0)
        caches = {
            alias: {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
            for alias in ("default", "throttle")
        }
        with override_settings(
            ALLOWED_HOSTS=["testserver"], CACHES=caches, DEBUG=False
        ):
            began = time.monotonic()
            world = found() if args.reuse else fill(args, random.Random(args.seed))
            world.fill_seconds = time.monotonic() - began
            print(f"filled in {world.fill_seconds:.0f} s: {world.counts}", flush=True)
            results = measure(world, iterations=args.iterations, only=args.only)
            version = _server_version()
        load = os.getloadavg()
        text = render(world, results, args, version, load)
        print(text)
        if not args.no_docs:
            sections.write(args.docs, SECTION, text)
            print(f"wrote {args.docs}")
    finally:
        if pg is not None and args.keep:
            print(f"kept: DATABASE_URL={pg.url} (pid {pg.process.pid}, {pg.base})")
        elif pg is not None:
            pg.stop()
    return 0


def _server_version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return str(cursor.fetchone()[0]).split()[0]


# --- filling ---------------------------------------------------------------------------


@dataclass
class World:
    root: Any
    domain_admin: Any  # of the largest domain
    user: Any  # the owner with the most mailboxes
    counts: dict[str, int] = field(default_factory=dict)
    fill_seconds: float = 0.0


def fill(args: argparse.Namespace, rng: random.Random) -> World:
    from django.db import connection, transaction

    from accounts.models import Domain, User
    from retrieval.models import Mailbox

    with transaction.atomic():
        root = User.objects.create_superuser("root@operator.example", None)
        domains = Domain.objects.bulk_create(
            Domain(name=f"d{i:03}.example") for i in range(DOMAINS)
        )
        # Skewed sizes: P(domain < x) = sqrt(x / DOMAINS).
        homes = [
            None if rng.random() < 0.05 else int(DOMAINS * rng.random() ** 2)
            for _ in range(args.mailboxes)
        ]
        sizes = [homes.count(i) for i in range(DOMAINS)]
        admins = User.objects.bulk_create(
            User(email=f"admin@{d.name}", domain=d, password="!") for d in domains
        )
        for domain, admin in zip(domains, admins, strict=True):
            domain.admins.add(admin)
        people: list[list[Any]] = []
        for i, domain in enumerate(domains):
            people.append(
                User.objects.bulk_create(
                    User(email=f"u{k}@{domain.name}", domain=domain, password="!")
                    for k in range(max(1, sizes[i] // 4))
                )
            )
        protocols = ["imap"] * 6 + ["pop3"] * 4
        rows = []
        for n, home in enumerate(homes):
            box_domain: Domain | None = None
            if home is None:
                owner = root
            else:
                owners = people[home]
                owner = owners[int(len(owners) * rng.random() ** 2)]
                box_domain = domains[home]
            rows.append(
                Mailbox(
                    name=f"box {n}",
                    owner=owner,
                    domain=box_domain,
                    protocol=rng.choice(protocols),
                    host=f"mail{n % 97}.{box_domain.name if box_domain else 'isp.example'}",
                    username=f"user{n}",
                    enabled=rng.random() >= 0.03,
                    health=(
                        Mailbox.Health.PAUSED
                        if rng.random() < 0.02
                        else Mailbox.Health.OK
                    ),
                    next_poll_at=dt.datetime.now(dt.UTC)
                    + dt.timedelta(seconds=rng.randrange(300)),
                )
            )
        Mailbox.objects.bulk_create(rows, batch_size=2000)
    ids = list(Mailbox.objects.order_by("pk").values_list("pk", flat=True))
    polled = [pk for pk in ids if pk % 50 != 7]  # 2 % never polled
    with connection.cursor() as cursor:
        _fill_runs(cursor, polled, args.runs, args.messages)
        cursor.execute("ANALYZE")
        counts = {}
        for table in TABLES:
            cursor.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cursor.fetchone()[0]
    largest = max(range(DOMAINS), key=lambda i: sizes[i])
    by_owner: dict[int, int] = {}
    for box in rows:
        if box.domain is not None:
            by_owner[box.owner_id] = by_owner.get(box.owner_id, 0) + 1
    user = User.objects.get(pk=max(by_owner, key=lambda pk: by_owner[pk]))
    counts["largest domain's mailboxes"] = sizes[largest]
    counts["busiest user's mailboxes"] = by_owner[user.pk]
    return World(root, admins[largest], user, counts)


def found() -> World:
    """The World of a database filled before (``--reuse``)."""
    from django.db import connection
    from django.db.models import Count

    from accounts.models import Domain, User

    root = User.objects.filter(is_superuser=True).order_by("pk").first()
    largest = Domain.objects.annotate(n=Count("mailboxes")).order_by("-n").first()
    assert root is not None and largest is not None
    user = (
        User.objects.filter(is_superuser=False, domain__isnull=False)
        .annotate(n=Count("mailboxes"))
        .order_by("-n")
        .first()
    )
    counts = {}
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cursor.fetchone()[0]
    counts["largest domain's mailboxes"] = largest.n  # type: ignore[attr-defined]
    counts["busiest user's mailboxes"] = user.n  # type: ignore[union-attr]
    return World(root, largest.admins.order_by("pk").first(), user, counts)


TABLES = (
    "retrieval_mailbox",
    "retrieval_pollrun",
    "retrieval_messageresult",
    "retrieval_mailboxstat",
    "retrieval_mailboxdaystat",
    "retrieval_domaindaystat",
    "accounts_user",
)


# Runs: spread evenly over DAYS up to now, mailbox by turns; one mailbox in ten
# fails 4 runs in 5, the others 1 in 20; of the rest 3 in 5 find no mail. The
# message results belong to the successful runs; their sizes make the counters.
_RUNS = """
INSERT INTO retrieval_pollrun (mailbox_id, trigger, started_at, finished_at,
    outcome, exit_code, fetched, delivered, deleted, bytes_fetched, greeting,
    transcript, error, lease_owner)
SELECT m, 'schedule', t, t + interval '2 seconds', o,
    CASE o WHEN 'success' THEN 0 WHEN 'nomail' THEN 1 ELSE 3 END,
    d, d, d, d * 5000, '+OK Dovecot ready.',
    repeat('S: +OK Dovecot ready.' || chr(10) || 'C: USER someone' || chr(10), 6),
    CASE o WHEN 'error' THEN 'Wrong user name or password (the server said: '
        || '-ERR [AUTH] Authentication failed.)' ELSE '' END,
    ''
FROM (
    SELECT m, t,
        CASE WHEN (m %% 10 = 3 AND h < 0.8) OR h < 0.05 THEN 'error'
             WHEN h < 0.62 THEN 'nomail' ELSE 'success' END AS o,
        h
    FROM (
        SELECT (%(ids)s::bigint[])[1 + (g %% %(n)s)] AS m,
            now() - (%(days)s * interval '1 day') * (1 - g::float8 / %(runs)s) AS t,
            ((g * 2654435761) %% 1000) / 1000.0 AS h
        FROM generate_series(0, %(runs)s - 1) AS g
    ) AS base
) AS drawn,
LATERAL (SELECT CASE drawn.o WHEN 'success' THEN 1 + ((drawn.m * 7 + extract(
    epoch FROM drawn.t)::bigint) %% %(span)s) ELSE 0 END AS d) AS delivered
"""
_MESSAGES = """
INSERT INTO retrieval_messageresult (run_id, folder, uid, message_id, size,
    recipients, status, listener_reply, deleted)
SELECT r.id, 'INBOX', r.id || '.' || k, '<' || r.id || '.' || k || '@example.net>',
    5000, '["someone@example.org"]'::jsonb, 'delivered',
    '250 2.0.0 Ok: queued as ' || r.id || k, true
FROM retrieval_pollrun AS r, generate_series(1, r.delivered) AS k
WHERE r.outcome = 'success'
"""
# The counters go in in the order the service writes them (the first run of an
# hour or a day inserts its row), oldest first: grouped in no order, an hour's
# rows lay across 9,000 pages and the 24-hour per-domain table read them all.
_STATS = """
INSERT INTO retrieval_mailboxstat (mailbox_id, hour, polls, errors, messages, bytes)
SELECT mailbox_id, date_trunc('hour', finished_at), count(*),
    count(*) FILTER (WHERE outcome IN ('error', 'lost', 'timeout')),
    sum(delivered), sum(bytes_fetched)
FROM retrieval_pollrun GROUP BY 1, 2 ORDER BY 2, 1
"""
# The daily counters, kept as runs are recorded (services/stats.py), the day in
# the session's zone: set to settings.TIME_ZONE before.
_DAY_STATS = """
INSERT INTO retrieval_mailboxdaystat (mailbox_id, day, polls, errors, messages, bytes)
SELECT mailbox_id, finished_at::date, count(*),
    count(*) FILTER (WHERE outcome IN ('error', 'lost', 'timeout')),
    sum(delivered), sum(bytes_fetched)
FROM retrieval_pollrun GROUP BY 1, 2 ORDER BY 2, 1
"""

# The per-domain days (services/domain_stats.py): the sum of their mailboxes'.
_DOMAIN_DAY_STATS = """
INSERT INTO retrieval_domaindaystat (domain_id, day, polls, errors, messages, bytes)
SELECT m.domain_id, d.day, sum(d.polls), sum(d.errors), sum(d.messages), sum(d.bytes)
FROM retrieval_mailboxdaystat AS d JOIN retrieval_mailbox AS m ON m.id = d.mailbox_id
GROUP BY 1, 2 ORDER BY 2, 1
"""


def _fill_runs(cursor: Any, polled: list[int], runs: int, messages: int) -> None:
    from django.conf import settings

    from retrieval import services
    from retrieval.models import Mailbox

    # Successful runs: 38 % of a working mailbox's, 20 % of a failing one's; the
    # span of messages per run gives ``messages`` in all, on average.
    success_share = 0.9 * 0.38 + 0.1 * 0.2
    span = max(1, round(2 * messages / (runs * success_share)) - 1)
    started = time.monotonic()
    cursor.execute("SET session_replication_role = replica")  # no FK triggers
    cursor.execute(
        _RUNS,
        {"ids": polled, "n": len(polled), "runs": runs, "days": DAYS, "span": span},
    )
    print(f"runs: {time.monotonic() - started:.0f} s", flush=True)
    cursor.execute(_MESSAGES)
    print(f"message results: {time.monotonic() - started:.0f} s", flush=True)
    cursor.execute("SET TIME ZONE 'UTC'")
    cursor.execute(_STATS)
    cursor.execute("SELECT set_config('TimeZone', %s, false)", [settings.TIME_ZONE])
    cursor.execute(_DAY_STATS)
    cursor.execute(_DOMAIN_DAY_STATS)
    cursor.execute("SET session_replication_role = DEFAULT")
    print(f"counters: {time.monotonic() - started:.0f} s", flush=True)
    # Each mailbox's last finished run on its row, as recording the runs leaves it.
    services.latest_run_refresh(mailboxes=Mailbox.objects.all())
    print(f"last runs: {time.monotonic() - started:.0f} s", flush=True)


# --- measuring -------------------------------------------------------------------------


@dataclass
class Timing:
    role: str
    page: str
    url: str
    queries: int
    ms: list[float]
    slowest: tuple[float, str] = (0.0, "")

    @property
    def median(self) -> float:
        return statistics.median(self.ms)

    @property
    def p95(self) -> float:
        ordered = sorted(self.ms)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def pages_for(user: Any) -> list[tuple[str, str]]:
    """(label, URL) of every page measured for ``user``."""
    from django.core.paginator import Paginator

    from retrieval import console
    from retrieval.console_views import PER_PAGE
    from retrieval.views import RUNS_PER_PAGE

    scope = console.scope(user)
    total = scope.count()
    last = Paginator(range(total), PER_PAGE).num_pages
    some = scope.exclude(domain=None).order_by("pk").first() or scope.first()
    assert some is not None
    busiest = scope.order_by("pk")[total // 2]
    oldest = Paginator(range(busiest.runs.count()), RUNS_PER_PAGE).num_pages
    pages = [
        ("dashboard 24 h", "/"),
        ("dashboard 7 d", "/?range=7d"),
        ("dashboard 30 d", "/?range=30d"),
        ("list, first page", "/mailboxes/"),
        ("list, middle page", f"/mailboxes/?page={max(1, last // 2)}"),
        ("list, last page", f"/mailboxes/?page={last}"),
        ("list, search host", "/mailboxes/?q=mail1"),
        ("list, search owner", "/mailboxes/?q=u1%40"),
        ("list, domain", f"/mailboxes/?domain={some.domain_id or ''}"),
        ("list, owner", f"/mailboxes/?owner={some.owner_id}"),
        ("list, protocol pop3", "/mailboxes/?protocol=pop3"),
    ]
    pages += [(f"list, state {s}", f"/mailboxes/?state={s}") for s in console.STATES]
    for key in console.SORTS:
        pages.append((f"list, sort {key}", f"/mailboxes/?sort={key}"))
        pages.append(
            (f"list, sort -{key}, last page", f"/mailboxes/?sort=-{key}&page={last}")
        )
    pages += [
        ("mailbox page", f"/mailboxes/{busiest.pk}/"),
        ("mailbox page, oldest polls", f"/mailboxes/{busiest.pk}/?page={oldest}"),
    ]
    return pages


class QueryLog:
    """Counts the queries of one request and keeps the slowest (a connection
    execute wrapper: works whatever DEBUG says)."""

    def __init__(self) -> None:
        self.count = 0
        self.slowest = (0.0, "")

    def __call__(
        self, execute: Any, sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            ms = (time.perf_counter() - began) * 1000
            self.count += 1
            if ms > self.slowest[0]:
                self.slowest = (ms, sql)


def measure(world: World, *, iterations: int, only: str = "") -> list[Timing]:
    from django.db import connection
    from django.test import Client

    results = []
    for role, user in (
        ("superuser", world.root),
        ("domain admin", world.domain_admin),
        ("user", world.user),
    ):
        client = Client()
        client.force_login(user)
        for label, url in pages_for(user):
            if only not in label:
                continue
            for _ in range(2):
                assert client.get(url).status_code == 200, url
            log = QueryLog()
            with connection.execute_wrapper(log):
                client.get(url)
            ms = []
            for _ in range(iterations):
                began = time.perf_counter()
                response = client.get(url)
                ms.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, url
            timing = Timing(role, label, url, log.count, ms, log.slowest)
            results.append(timing)
            print(
                f"{role:12} {label:34} {timing.median:7.1f} ms  p95 {timing.p95:7.1f}"
                f"  {timing.queries} queries, slowest {log.slowest[0]:.0f} ms",
                flush=True,
            )
            if log.slowest[0] > 50:
                print(f"    {log.slowest[1][:1500]}", flush=True)
    return results


# --- the page --------------------------------------------------------------------------


def render(
    world: World,
    results: list[Timing],
    args: argparse.Namespace,
    pg_version: str,
    load: tuple[float, float, float],
) -> str:
    worst = max(results, key=lambda t: t.p95)
    over = [
        t for t in results if t.median >= TARGET_MEDIAN_MS or t.p95 >= TARGET_P95_MS
    ]
    out = [
        "## Console at 10,000 mailboxes",
        "",
        f"<!-- Generated by `python -m bench.console` on {dt.date.today()}; "
        "kept when `python -m bench` renders the page. -->",
        "",
        f"PostgreSQL {pg_version} (the test suite's private cluster), filled in "
        f"{world.fill_seconds:.0f} s with "
        + ", ".join(f"{v:,} {k}" for k, v in world.counts.items())
        + ". Server time in-process (Django's test client: middleware, views, "
        f"templates, no network), {args.iterations} requests per URL after two "
        f"warm-ups; load average at the end {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f} on {os.cpu_count()} cores shared with other jobs, so the "
        "figures are upper bounds. Targets: median under "
        f"{TARGET_MEDIAN_MS:.0f} ms, p95 under {TARGET_P95_MS:.0f} ms.",
        "",
        f"Slowest p95: {worst.role}, {worst.page}: {worst.p95:.0f} ms. "
        + (
            "Every page meets both targets."
            if not over
            else f"{len(over)} of {len(results)} page/role pairs miss a target "
            "(marked ✗)."
        ),
        "",
        "| page | superuser median / p95 ms | domain admin | user | queries |",
        "| --- | --- | --- | --- | --- |",
    ]
    by_page: dict[str, dict[str, Timing]] = {}
    for t in results:
        by_page.setdefault(t.page, {})[t.role] = t
    for page, roles in by_page.items():
        cells = []
        for role in ("superuser", "domain admin", "user"):
            found = roles.get(role)
            if found is None:
                cells.append("")
                continue
            mark = " ✗" if found in over else ""
            cells.append(f"{found.median:.0f} / {found.p95:.0f}{mark}")
        queries = "/".join(str(roles[r].queries) for r in roles)
        out.append(f"| {page} | " + " | ".join(cells) + f" | {queries} |")
    out += [
        "",
        "Reproduce: `.venv/bin/python -m bench.console` (about 10 minutes; "
        "`--mailboxes 1000 --runs 100000 --messages 500000 --iterations 5` for a "
        "smoke run).",
    ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
