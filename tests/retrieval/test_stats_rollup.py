"""Issue 14 item 4, the counters' part: each run is counted in its hour and in
its day as it is recorded; hourly counters older than FETCH_STATS_HOURLY_DAYS
are dropped by the daily cleanup, daily ones are kept
FETCH_STATS_RETENTION_DAYS, and the dashboard shows the same figures before and
after (issue 13's performance: the day charts read daily rows only)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from retrieval import console, services, tasks
from retrieval.models import DomainDayStat, MailboxDayStat, MailboxStat
from retrieval.services import stats
from tests.factories import make_domain, make_mailbox, make_user

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
PARIS = "Europe/Paris"  # UTC+1 in March before the 29th: days cut at 23:00 UTC


@pytest.fixture
def two_days(settings):
    settings.TIME_ZONE = PARIS
    settings.FETCH_STATS_HOURLY_DAYS = 2
    settings.FETCH_STATS_RETENTION_DAYS = 365


def _hour(mailbox, moment: datetime, **counts: int) -> None:
    stats.stats_record(mailbox_id=mailbox.pk, moment=moment, **counts)


def _days(mailbox) -> dict[date, tuple[int, int, int, int]]:
    return {
        row.day: (row.polls, row.errors, row.messages, row.bytes)
        for row in MailboxDayStat.objects.filter(mailbox=mailbox)
    }


def test_runs_count_in_days_of_the_installation_s_zone_and_old_hours_go(two_days):
    a, b = make_mailbox(), make_mailbox()
    _hour(a, datetime(2026, 3, 10, 22, 30, tzinfo=UTC), messages=1, size=10)
    # 23:30 UTC is half past midnight in Paris: the next day there.
    _hour(a, datetime(2026, 3, 10, 23, 30, tzinfo=UTC), messages=2, size=20)
    _hour(a, datetime(2026, 3, 11, 5, 0, tzinfo=UTC), errors=1)
    _hour(b, datetime(2026, 3, 10, 10, 0, tzinfo=UTC), messages=7, size=70)
    # The cutoff is Paris's midnight starting the 18th (17th, 23:00 UTC).
    _hour(a, datetime(2026, 3, 17, 22, 30, tzinfo=UTC), messages=4)
    _hour(a, datetime(2026, 3, 17, 23, 30, tzinfo=UTC), messages=5)
    _hour(a, datetime(2026, 3, 19, 10, 0, tzinfo=UTC), messages=6)

    result = services.stats_roll_up(now=NOW)

    assert result == services.RollUp(hours_moved=5, days_deleted=0)
    assert _days(a) == {
        date(2026, 3, 10): (1, 0, 1, 10),
        date(2026, 3, 11): (2, 1, 2, 20),
        date(2026, 3, 17): (1, 0, 4, 0),
        date(2026, 3, 18): (1, 0, 5, 0),
        date(2026, 3, 19): (1, 0, 6, 0),
    }
    assert _days(b) == {date(2026, 3, 10): (1, 0, 7, 70)}
    left = sorted(MailboxStat.objects.values_list("hour", "messages"))
    assert left == [
        (datetime(2026, 3, 17, 23, tzinfo=UTC), 5),
        (datetime(2026, 3, 19, 10, tzinfo=UTC), 6),
    ]


def test_running_it_twice_counts_once_and_a_late_hour_is_added(two_days):
    mailbox = make_mailbox()
    for hour in range(24):
        _hour(mailbox, datetime(2026, 3, 5, hour, tzinfo=UTC), messages=1, size=3)
    services.stats_roll_up(now=NOW)
    first = _days(mailbox)
    assert services.stats_roll_up(now=NOW).hours_moved == 0
    assert _days(mailbox) == first
    assert sum(v[2] for v in first.values()) == 24  # 23 on the 5th, 1 on the 6th

    # A run recorded late for an hour already rolled up: added, not overwriting.
    _hour(mailbox, datetime(2026, 3, 5, 12, 10, tzinfo=UTC), messages=10)
    assert services.stats_roll_up(now=NOW).hours_moved == 1
    assert _days(mailbox)[date(2026, 3, 5)] == (24, 0, 33, 69)


def test_bounded_batches_and_the_kept_ranges(two_days):
    mailbox = make_mailbox()
    for n in range(5):
        _hour(mailbox, NOW - timedelta(days=10, hours=n))
    recent = NOW - timedelta(days=1)
    _hour(mailbox, recent)
    # Daily rows: one just past a year (goes), one a year old to the day (stays).
    today = NOW.astimezone(ZoneInfo(PARIS)).date()
    MailboxDayStat.objects.create(mailbox=mailbox, day=today - timedelta(days=366))
    MailboxDayStat.objects.create(mailbox=mailbox, day=today - timedelta(days=365))

    with CaptureQueriesContext(connection) as queries:
        result = services.stats_roll_up(now=NOW, batch=2, max_batches=2)
    assert result == services.RollUp(hours_moved=4, days_deleted=1)
    deletes = [q["sql"] for q in queries if q["sql"].startswith("DELETE")]
    assert deletes and all(" IN (" in sql for sql in deletes)
    assert MailboxStat.objects.count() == 2  # one old hour left for the next call
    assert services.stats_roll_up(now=NOW, batch=2, max_batches=2).hours_moved == 1
    assert list(MailboxStat.objects.values_list("hour", flat=True)) == [
        stats.hour_of(recent)
    ]
    assert sorted(MailboxDayStat.objects.values_list("day", "polls")) == [
        (today - timedelta(days=365), 0),
        (today - timedelta(days=10), 5),
        (today - timedelta(days=1), 1),
    ]


def test_the_24_hour_chart_s_hours_are_never_rolled_up(settings):
    """Even a setting of 0 keeps two whole days of hours: the 24-hour chart
    reads hours only."""
    settings.TIME_ZONE = PARIS
    settings.FETCH_STATS_HOURLY_DAYS = 0
    mailbox = make_mailbox()
    _hour(mailbox, NOW - timedelta(hours=23), messages=1)
    assert services.stats_roll_up(now=NOW).hours_moved == 0
    day = console.traffic(
        console.scope(mailbox.owner), span="24h", zone=ZoneInfo(PARIS), now=NOW
    )
    assert sum(b.messages for b in day) == 1


def _world():
    one, two = make_domain("one.example"), make_domain("two.example")
    alice = make_user("alice@one.example", domain=one)
    root = make_user("root@operator.example", superuser=True)
    admin = make_user("admin@two.example", domain=two)
    two.admins.add(admin)
    boxes = [
        make_mailbox(alice, domain=one),
        make_mailbox(alice, domain=one),
        make_mailbox(root, domain=two),
        make_mailbox(root),
        make_mailbox(admin, domain=two),
        make_mailbox(admin),  # an administrator's own, in no domain
    ]
    rng = random.Random(14)
    for _ in range(600):
        moment = NOW - timedelta(minutes=rng.randrange(45 * 24 * 60))
        _hour(
            rng.choice(boxes),
            moment,
            errors=rng.randrange(2),
            messages=rng.randrange(4),
            size=rng.randrange(10_000),
        )
    return alice, root, admin


def _figures(alice, root, admin, zone=None):
    """Each role's charts as the dashboard reads them: the superuser's days from
    the per-domain rows, the administrator's domain's too, alice's from her
    mailboxes' rows."""
    zone = zone or console.person_zone(root)
    charts = {
        (who.email, span): console.traffic(
            console.scope(who),
            span=span,
            zone=zone,
            now=NOW,
            domains=console.whole_domains(who),
        )
        for who in (alice, root, admin)
        for span in console.RANGES
    }
    tables = {span: console.per_domain(span=span, now=NOW) for span in console.RANGES}
    return charts, tables


def test_the_dashboard_shows_the_same_figures_before_and_after(two_days, settings):
    alice, root, admin = _world()
    before = _figures(alice, root, admin)
    hours_before = MailboxStat.objects.count()

    moved = services.stats_roll_up(now=NOW).hours_moved

    # Most of the 45 days were moved, including days the 7- and 30-day charts show.
    assert moved > hours_before // 2
    seven_days_ago = (NOW - timedelta(days=6)).astimezone(ZoneInfo(PARIS)).date()
    assert MailboxDayStat.objects.filter(day__gte=seven_days_ago).exists()
    assert DomainDayStat.objects.filter(day__gte=seven_days_ago).exists()
    assert _figures(alice, root, admin) == before
    # And so after the daily rows past a year go, of both kinds.
    settings.FETCH_STATS_RETENTION_DAYS = 20
    assert services.stats_roll_up(now=NOW).domain_days_deleted > 0
    oldest = services.stats_rollup.days_kept_since(NOW)
    assert not DomainDayStat.objects.filter(day__lt=oldest).exists()
    assert not MailboxDayStat.objects.filter(day__lt=oldest).exists()
    after = _figures(alice, root, admin)
    for span in ("24h", "7d"):
        for who in (alice, root, admin):
            assert after[0][(who.email, span)] == before[0][(who.email, span)]
        assert after[1][span] == before[1][span]
    charts, tables = before
    month = charts[(root.email, "30d")]
    assert (
        sum(b.messages for b in month) == sum(r["messages"] for r in tables["30d"]) > 0
    )


def test_the_day_charts_read_daily_rows_only(settings):
    """The 7- and 30-day charts read one query over the daily rows, at most one
    row per mailbox and day, never the hourly rows (bench/console.py: a
    30-day superuser dashboard summed a million of them)."""
    settings.TIME_ZONE = PARIS
    settings.FETCH_STATS_HOURLY_DAYS = 32
    mailbox = make_mailbox()
    _hour(mailbox, NOW - timedelta(days=31), messages=1)
    _hour(mailbox, NOW - timedelta(days=40), messages=2)
    assert services.stats_roll_up(now=NOW).hours_moved == 1
    zone = ZoneInfo(PARIS)
    with CaptureQueriesContext(connection) as queries:
        month = console.traffic(
            console.scope(mailbox.owner), span="30d", zone=zone, now=NOW
        )
    assert len(queries) == 1 and "retrieval_mailboxstat" not in queries[0]["sql"]
    assert "retrieval_mailboxdaystat" in queries[0]["sql"]
    assert sum(b.messages for b in month) == 0  # both rows are older than 30 days
    _hour(mailbox, NOW - timedelta(days=3), messages=4)
    MailboxStat.objects.all().delete()  # the days alone hold the figures
    month = console.traffic(
        console.scope(mailbox.owner), span="30d", zone=zone, now=NOW
    )
    assert sum(b.messages for b in month) == 4


def test_a_person_in_another_zone_sees_the_same_figures_after(two_days):
    """Days cut in a zone other than the installation's are added up from the
    hours still kept and the daily rows before them: each run once, before and
    after the old hours go."""
    alice, root, admin = _world()
    midnight = datetime(2026, 3, 20, tzinfo=UTC)
    today = sum(
        MailboxStat.objects.filter(hour__gte=midnight).values_list(
            "messages", flat=True
        )
    )
    in_utc = console.traffic(
        console.scope(root), span="7d", zone=ZoneInfo("UTC"), now=NOW
    )
    assert in_utc[-1].start == midnight and in_utc[-1].messages == today > 0
    for zone in (ZoneInfo("UTC"), ZoneInfo("America/New_York")):
        before = _figures(alice, root, admin, zone)
        services.stats_roll_up(now=NOW)
        assert _figures(alice, root, admin, zone)[0] == before[0], zone


def test_the_daily_cleanup_in_beat_rolls_the_counters_up(two_days):
    from django.conf import settings as live

    assert live.CELERY_BEAT_SCHEDULE["delete-old-runs"]["task"] == (
        tasks.delete_old_runs.name
    )
    mailbox = make_mailbox()
    _hour(mailbox, datetime.now(UTC) - timedelta(days=5), messages=3)
    tasks.delete_old_runs()
    assert not MailboxStat.objects.exists()
    assert sum(v[2] for v in _days(mailbox).values()) == 3
