"""Reads for the console: the dashboard and the mailbox list, scoped to the person.

Every figure is read in a fixed number of queries whatever the number of
mailboxes or runs: states from the last run's outcome kept on each mailbox
(Mailbox.latest_*, services/polls.py), traffic from the counters kept as runs
are recorded (retrieval/services/stats.py), never from the runs: the 24-hour
chart from the hourly rows (MailboxStat), the 7- and 30-day ones and the
per-domain table from the daily rows (MailboxDayStat), see ``counter_rows``;
a superuser's days, and a domain administrator's of their domains, from the
per-domain daily rows (DomainDayStat, services/domain_stats.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import (
    Case,
    CharField,
    Count,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.utils import timezone
from django.utils.timesince import timesince, timeuntil

from accounts.models import Domain, User
from accounts.timezones import zone_of
from retrieval.models import (
    DomainDayStat,
    Mailbox,
    MailboxDayStat,
    MailboxStat,
    PollRun,
)
from retrieval.selectors import mailboxes_visible_to
from retrieval.services.stats import ERROR_OUTCOMES
from retrieval.services.stats_rollup import hourly_kept_since, stats_zone

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

# The states a mailbox can be in. "Needs attention" is the scheduler's pause
# after repeated permanent failures (Mailbox.health, services.failures);
# "disabled" is the pause the person chose.
OK, FAILING, ATTENTION, DISABLED, NEVER = (
    "ok",
    "failing",
    "attention",
    "disabled",
    "never",
)
STATES = {
    OK: "OK",
    FAILING: "Failing",
    ATTENTION: "Needs attention",
    DISABLED: "Paused (disabled)",
    NEVER: "Never polled",
}


def person_zone(user: AbstractBaseUser | AnonymousUser) -> tzinfo:
    """The zone times are shown in: the person's own (User.time_zone), else the
    installation's (settings.TIME_ZONE)."""
    return zone_of(user) or ZoneInfo(settings.TIME_ZONE)


def scope(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Mailbox]:
    """The person's mailboxes, without the duplicate rows that the tenancy join can
    make (an owner who also administers the domain): safe to count and group."""
    visible = mailboxes_visible_to(user=user).prefetch_related(None)
    if getattr(user, "is_superuser", False):
        return Mailbox.objects.all()
    return Mailbox.objects.filter(pk__in=visible.values("pk"))


STATE = Case(
    When(enabled=False, then=Value(DISABLED)),
    When(
        health__in=(Mailbox.Health.PAUSED, Mailbox.Health.REAUTH),
        then=Value(ATTENTION),
    ),
    When(latest_outcome="", then=Value(NEVER)),
    When(latest_outcome__in=list(ERROR_OUTCOMES), then=Value(FAILING)),
    default=Value(OK),
    output_field=CharField(),
)


def with_state(queryset: QuerySet[Mailbox]) -> QuerySet[Any]:
    """Annotate each mailbox with its last finished run and its state (typed
    loosely: the annotations are not fields the type checker knows). The run's
    id, outcome and end are columns of the mailbox (services/latest_run.py);
    its error and exit code come from a join on the run's id."""
    return queryset.annotate(
        last_run_id=F("latest_run_id"),
        last_outcome=F("latest_outcome"),
        last_at=F("latest_at"),
        state=STATE,
    )


def with_last_run(queryset: QuerySet[Mailbox]) -> QuerySet[Any]:
    """with_state, and the last run's error and exit code (for shown rows)."""
    return with_state(queryset).annotate(
        last_error=F("latest_run__error"), last_exit=F("latest_run__exit_code")
    )


# --- the dashboard ------------------------------------------------------------------

RANGES = {
    "24h": (timedelta(hours=24), "hour"),
    "7d": (timedelta(days=7), "day"),
    "30d": (timedelta(days=30), "day"),
}
RUNNING_SHOWN = 20
ERRORS_SHOWN = 10


def state_of(*, enabled: bool, health: str, last_outcome: str | None) -> str:
    """with_state's CASE, for rows grouped by its inputs (state_groups)."""
    if not enabled:
        return DISABLED
    if health in (Mailbox.Health.PAUSED, Mailbox.Health.REAUTH):
        return ATTENTION
    if not last_outcome:  # "" (the column) or None: never finished a run
        return NEVER
    return FAILING if last_outcome in ERROR_OUTCOMES else OK


def state_groups(mailboxes: QuerySet[Mailbox], *keys: str) -> list[dict[str, Any]]:
    """Mailboxes counted by ``keys`` and state, in one query over the columns
    the state is made of (grouped by them, not by the CASE, and named here)."""
    rows = (
        mailboxes.order_by()
        .values(*keys, "enabled", "health", "latest_outcome")
        .annotate(n=Count("pk"))
    )
    return [
        {
            **{key: row[key] for key in keys},
            "state": state_of(
                enabled=row["enabled"],
                health=row["health"],
                last_outcome=row["latest_outcome"],
            ),
            "n": row["n"],
        }
        for row in rows
    ]


def state_counts(mailboxes: QuerySet[Mailbox]) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for row in state_groups(mailboxes):
        counts[row["state"]] += row["n"]
    return counts


def running_polls(mailboxes: QuerySet[Mailbox]) -> list[PollRun]:
    return list(
        PollRun.objects.filter(outcome=PollRun.Outcome.RUNNING, mailbox__in=mailboxes)
        .select_related("mailbox")
        .order_by("started_at")[:RUNNING_SHOWN]
    )


def recent_errors(mailboxes: QuerySet[Mailbox]) -> list[PollRun]:
    """The newest failed runs of ``mailboxes``. A person's mailboxes go in as a
    list of ids (one more query): PostgreSQL then knows how many there are and
    reads the errors index newest first until ten match, where the tenancy
    subquery, misjudged as a few dozen rows, made it read every error of a
    700-mailbox domain (1.3 s at 10,000 mailboxes, bench/console.py)."""
    runs = PollRun.objects.filter(outcome__in=list(ERROR_OUTCOMES))
    if mailboxes.query.where:  # not everyone's
        runs = runs.filter(mailbox_id__in=list(mailboxes.values_list("pk", flat=True)))
    return list(
        runs.select_related("mailbox").order_by("-started_at", "-pk")[:ERRORS_SHOWN]
    )


@dataclass(frozen=True)
class Bucket:
    start: datetime
    label: str
    polls: int = 0
    errors: int = 0
    messages: int = 0
    bytes: int = 0


def bucket_starts(
    span: str, zone: tzinfo, now: datetime | None = None
) -> list[datetime]:
    """The starts of the bars of ``span``: the last 24 hours, or the last 7 or
    30 days cut at midnight in ``zone``, oldest first."""
    length, unit = RANGES[span]
    now = (now or timezone.now()).astimezone(zone)
    if unit == "hour":
        last = now.replace(minute=0, second=0, microsecond=0)
        return [last - timedelta(hours=i) for i in range(23, -1, -1)]
    today = now.date()
    return [_midnight(today - timedelta(days=i), zone) for i in range(length.days)][
        ::-1
    ]


def _midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone)


SUMS = {"p": Sum("polls"), "e": Sum("errors"), "m": Sum("messages"), "b": Sum("bytes")}


DayRows = type[MailboxDayStat] | type[DomainDayStat]


def counter_rows(
    *,
    span: str,
    zone: tzinfo,
    since: datetime,
    now: datetime | None = None,
    days: DayRows = MailboxDayStat,
) -> list[tuple[QuerySet[Any], str]]:
    """The counter rows that make up the bars of ``span`` from ``since`` on, each
    with the field that dates them ("hour" or "day"); every run is in exactly one.

    Days cut in the installation's zone (settings.TIME_ZONE, the usual case) are
    read from the daily rows alone (``days``: a row per mailbox and day, or per
    domain and day), kept as runs are recorded (services/stats.py). Days in
    another zone are added up from the hours still kept, and from the daily rows
    for older days (their days are the installation's there)."""
    if RANGES[span][1] == "hour":
        return [(MailboxStat.objects.filter(hour__gte=since), "hour")]
    daily = days._default_manager.filter(day__gte=since.date())
    if getattr(zone, "key", None) == stats_zone().key:
        return [(daily, "day")]
    kept = hourly_kept_since(now)
    return [
        (MailboxStat.objects.filter(hour__gte=max(since, kept)), "hour"),
        (daily.filter(day__lt=kept.date()), "day"),
    ]


def whole_domains(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Domain]:
    """The domains every mailbox of which is in ``user``'s scope, for ``traffic``:
    those a domain administrator administers (mailboxes_visible_to's rule)."""
    return Domain.objects.filter(admins=user.pk)


def _scoped_counters(
    mailboxes: QuerySet[Mailbox],
    domains: QuerySet[Domain] | None,
    **window: Any,
) -> list[tuple[list[QuerySet[Any]], str]]:
    """The counter rows of ``mailboxes`` in the window of ``counter_rows``, by
    the field that dates them. Days of everyone's mailboxes (a superuser's) come
    from the per-domain rows, at most one per domain and day; so do the days of
    ``domains`` (all of whose mailboxes are in ``mailboxes``), the other
    mailboxes' days from their own rows."""
    if not mailboxes.query.where:  # everyone's: no join to the mailbox ids
        return [([r], f) for r, f in counter_rows(**window, days=DomainDayStat)]
    if domains is None:
        return [
            ([r.filter(mailbox__in=mailboxes)], f) for r, f in counter_rows(**window)
        ]
    rest = mailboxes.exclude(domain__in=domains)
    parts = []
    for (whole, field), (own, _) in zip(
        counter_rows(**window, days=DomainDayStat), counter_rows(**window), strict=True
    ):
        if whole.model is DomainDayStat:
            parts.append(
                (
                    [whole.filter(domain__in=domains), own.filter(mailbox__in=rest)],
                    field,
                )
            )
        else:  # the hours: per mailbox only
            parts.append(([own.filter(mailbox__in=mailboxes)], field))
    return parts


def traffic(
    mailboxes: QuerySet[Mailbox],
    *,
    span: str,
    zone: tzinfo,
    now: datetime | None = None,
    domains: QuerySet[Domain] | None = None,
) -> list[Bucket]:
    """Polls, errors, messages and bytes per hour (24 h) or per day (7 d, 30 d),
    days cut in ``zone``: one aggregate query per field of ``counter_rows``.

    ``domains`` (``whole_domains``): domains all of whose mailboxes are in
    ``mailboxes``; their days are read from the per-domain rows."""
    unit = RANGES[span][1]
    starts = bucket_starts(span, zone, now)
    totals: dict[datetime, list[int]] = {s: [0, 0, 0, 0] for s in starts}
    window = {"span": span, "zone": zone, "since": starts[0], "now": now}
    for parts, field in _scoped_counters(mailboxes, domains, **window):
        first, *others = (p.order_by().values(field).annotate(**SUMS) for p in parts)
        sums = first.union(*others, all=True) if others else first
        for row in sums:
            if field == "day":
                key = _midnight(row["day"], zone)
            else:
                moment = row["hour"].astimezone(zone)
                key = moment if unit == "hour" else _midnight(moment.date(), zone)
            if key in totals:
                for i, name in enumerate("pemb"):
                    totals[key][i] += row[name] or 0
    fmt = "%H:00" if unit == "hour" else "%a %d %b"
    return [
        Bucket(s, s.strftime(fmt), *totals[s])  # type: ignore[arg-type]
        for s in starts
    ]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Chart:
    """An SVG bar chart, laid out here so that the template only draws."""

    title: str
    css: str
    bars: list[Bar]
    peak: int
    total: int
    first: str
    last: str
    width: int = 600
    height: int = 120


def chart(buckets: list[Bucket], field: str, title: str, css: str) -> Chart:
    values = [getattr(b, field) for b in buckets]
    peak = max(values, default=0)
    width, height, top = 600, 120, 10
    step = width / max(len(values), 1)
    bars = []
    for i, (bucket, value) in enumerate(zip(buckets, values, strict=True)):
        h = (height - top) * value / peak if peak else 0
        bars.append(
            Bar(
                x=round(i * step + 1, 2),
                y=round(height - h, 2),
                width=round(max(step - 2, 1), 2),
                height=round(h, 2),
                title=f"{bucket.label}: {value}",
            )
        )
    return Chart(
        title=title,
        css=css,
        bars=bars,
        peak=peak,
        total=sum(values),
        first=buckets[0].label if buckets else "",
        last=buckets[-1].label if buckets else "",
    )


def per_domain(*, span: str, now: datetime | None = None) -> list[dict[str, Any]]:
    """For superusers: each domain's states and traffic over ``span``: the range
    of the charts (its bars' hours or days), so the table adds up to them."""
    since = bucket_starts(span, stats_zone(), now)[0]
    rows: dict[str, dict[str, Any]] = {}

    def row(name: str | None) -> dict[str, Any]:
        key = name or "(no domain)"
        return rows.setdefault(
            key,
            {
                "name": key,
                **dict.fromkeys(STATES, 0),
                "polls": 0,
                "errors": 0,
                "messages": 0,
            },
        )

    for item in state_groups(Mailbox.objects.all(), "domain__name"):
        row(item["domain__name"])[item["state"]] += item["n"]
    for table, _ in counter_rows(
        span=span, zone=stats_zone(), since=since, now=now, days=DomainDayStat
    ):
        # The days per domain, the hours (24 h) per mailbox.
        by = "domain__name" if table.model is DomainDayStat else "mailbox__domain__name"
        sums = (
            table.order_by()
            .values(by)
            .annotate(p=Sum("polls"), e=Sum("errors"), m=Sum("messages"))
        )
        for item in sums:
            target = row(item[by])
            for name, key in (("polls", "p"), ("errors", "e"), ("messages", "m")):
                target[name] += item[key] or 0
    return sorted(rows.values(), key=lambda r: (r["name"] == "(no domain)", r["name"]))


# --- the list -------------------------------------------------------------------------

SORTS = {
    "name": ("name", "host"),
    "host": ("host",),
    "user": ("username",),
    "owner": ("owner__email",),
    "domain": ("domain__name",),
    "protocol": ("protocol",),
    "state": ("state",),
    "checked": ("latest_at",),
    "next": ("next_poll_at",),
}


@dataclass
class ListQuery:
    q: str = ""
    domain: str = ""
    state: str = ""
    protocol: str = ""
    owner: str = ""
    sort: str = "name"

    @classmethod
    def from_get(cls, data: Any) -> ListQuery:
        sort = data.get("sort", "name")
        if sort.lstrip("-") not in SORTS:
            sort = "name"
        state = data.get("state", "")
        protocol = data.get("protocol", "")
        return cls(
            q=data.get("q", "").strip()[:200],
            domain=data.get("domain", "").strip()[:253],
            state=state if state in STATES else "",
            protocol=protocol if protocol in Mailbox.Protocol.values else "",
            owner=data.get("owner", "").strip()[:254],
            sort=sort,
        )


def mailbox_list(
    user: AbstractBaseUser | AnonymousUser, query: ListQuery
) -> QuerySet[Any]:
    rows = with_state(scope(user)).select_related("owner", "domain")
    if query.q:
        rows = rows.filter(
            Q(name__icontains=query.q)
            | Q(host__icontains=query.q)
            | Q(username__icontains=query.q)
            | Q(owner__email__icontains=query.q)
        )
    # Domain and owner: an id (a choice of the filter's select), or a part of
    # the name (the filter's text box, when there are too many to choose from).
    if query.domain.isdigit():
        rows = rows.filter(domain_id=int(query.domain))
    elif query.domain:
        rows = rows.filter(domain__name__icontains=query.domain)
    if query.state:
        rows = rows.filter(state=query.state)
    if query.protocol:
        rows = rows.filter(protocol=query.protocol)
    if query.owner.isdigit():
        rows = rows.filter(owner_id=int(query.owner))
    elif query.owner:
        rows = rows.filter(owner__email__icontains=query.owner)
    descending = query.sort.startswith("-")
    fields = SORTS[query.sort.lstrip("-")]
    order = [f"-{f}" if descending else f for f in fields]
    return rows.order_by(*order, "pk")


def page_rows(ids: list[int]) -> list[Any]:
    """The mailboxes of one page of the list, in the order of ``ids``, with their
    state. The list pages ids first (``mailbox_list(...).values_list("pk")``):
    the per-mailbox subqueries then run for these rows only, not for every row
    an OFFSET skips (10,000 mailboxes, last page: bench/console.py)."""
    found = {
        m.pk: m
        for m in with_last_run(Mailbox.objects.filter(pk__in=ids)).select_related(
            "owner", "domain"
        )
    }
    return [found[pk] for pk in ids if pk in found]


# More domains or owners than this in sight: their filter is a text box, not a
# select (a superuser's 2,505 owners were a page of options to render each
# time, bench/console.py).
CHOICES_SHOWN = 100


def filter_choices(
    user: AbstractBaseUser | AnonymousUser,
) -> dict[str, list[tuple[int, str]] | None]:
    """The domains and owners of the person's mailboxes, by name (two queries,
    each stopping at CHOICES_SHOWN + 1 rows); None for too many to list."""
    mine = scope(user)
    domains = (
        Domain.objects.filter(Exists(mine.filter(domain=OuterRef("pk"))))
        .order_by("name")
        .values_list("pk", "name")
    )
    owners = (
        User.objects.filter(Exists(mine.filter(owner=OuterRef("pk"))))
        .order_by("email")
        .values_list("pk", "email")
    )
    found: dict[str, list[tuple[int, str]] | None] = {}
    for key, rows in (("domains", domains), ("owners", owners)):
        listed = list(rows[: CHOICES_SHOWN + 1])
        found[key] = listed if len(listed) <= CHOICES_SHOWN else None
    return found


def when(
    moment: datetime | None, zone: tzinfo, *, now: datetime | None = None
) -> dict[str, str]:
    """ "3 minutes ago" / "in 4 minutes", and the exact time with its zone."""
    if moment is None:
        return {"ago": "", "exact": ""}
    now = now or timezone.now()
    local = moment.astimezone(zone)
    exact = f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()} ({zone})"
    if moment <= now:
        words = timesince(moment, now, depth=1)
        ago = "just now" if words.startswith("0\xa0") else f"{words} ago"
    else:
        ago = f"in {timeuntil(moment, now, depth=1)}"
    return {"ago": ago, "exact": exact}


def changeable(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Mailbox]:
    """The mailboxes ``user`` may change: seen, and not a superuser's unless they
    are one (retrieval.permissions.get_rw_mailbox_for_user's rule)."""
    rows = scope(user).select_related("owner", "domain")
    if getattr(user, "is_superuser", False):
        return rows
    return rows.exclude(owner__is_superuser=True)
