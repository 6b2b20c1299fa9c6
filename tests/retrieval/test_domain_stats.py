"""Issue 13 (console performance), the per-domain day counters: each domain's
row for a day (DomainDayStat, None for the mailboxes in no domain) is the sum
of the day rows of the mailboxes in it now, whatever happened: runs recorded,
the nightly roll-up, retention and deleted runs, mailboxes deleted (alone, with
their owner, in bulk) or moved to another domain. A superuser's dashboard, and
a domain administrator's for their domains, read them and show the figures the
mailbox rows give."""

from __future__ import annotations

import importlib
import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.db.models import QuerySet, Sum
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from retrieval import console, services
from retrieval.engine.report import ExitCode, PollReport
from retrieval.models import DomainDayStat, Mailbox, MailboxDayStat, PollRun
from retrieval.services import stats
from tests.factories import make_domain, make_mailbox, make_user

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
PARIS = "Europe/Paris"
COUNTERS = ("polls", "errors", "messages", "bytes")


@pytest.fixture(autouse=True)
def _paris(settings):
    settings.TIME_ZONE = PARIS
    settings.FETCH_STATS_HOURLY_DAYS = 2
    settings.FETCH_STATS_RETENTION_DAYS = 365
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _kept() -> dict[tuple[int | None, date], tuple[int, ...]]:
    return {
        (row.domain_id, row.day): tuple(getattr(row, n) for n in COUNTERS)
        for row in DomainDayStat.objects.all()
    }


def _summed() -> dict[tuple[int | None, date], tuple[int, ...]]:
    """What the per-domain rows must hold: the mailbox days, by the domain the
    mailbox is in now."""
    rows = (
        MailboxDayStat.objects.order_by()
        .values("mailbox__domain_id", "day")
        .annotate(**{n: Sum(n) for n in COUNTERS})
    )
    return {
        (row["mailbox__domain_id"], row["day"]): tuple(row[n] for n in COUNTERS)
        for row in rows
        if any(row[n] for n in COUNTERS)
    }


def _assert_kept_true() -> None:
    kept = _kept()
    assert kept == _summed()
    assert all(any(values) for values in kept.values())  # no row left at zero


class World:
    def __init__(self) -> None:
        self.one = make_domain("one.example")
        self.two = make_domain("two.example")
        self.admin = make_user("admin@one.example", domain=self.one)
        self.one.admins.add(self.admin)
        self.alice = make_user("alice@one.example", domain=self.one)
        self.bob = make_user("bob@two.example", domain=self.two)
        self.root = make_user("root@operator.example", superuser=True)
        self.boxes = [
            make_mailbox(self.alice, domain=self.one),
            make_mailbox(self.alice, domain=self.one),
            make_mailbox(self.bob, domain=self.two),
            make_mailbox(self.admin, domain=self.one),
            make_mailbox(self.admin),  # the administrator's own, in no domain
            make_mailbox(self.root, domain=self.two),
            make_mailbox(self.root),
        ]

    def traffic(self, rng: random.Random, runs: int = 400) -> None:
        for _ in range(runs):
            stats.stats_record(
                mailbox_id=rng.choice(self.boxes).pk,
                moment=NOW - timedelta(minutes=rng.randrange(45 * 24 * 60)),
                errors=rng.randrange(2),
                messages=rng.randrange(4),
                size=rng.randrange(10_000),
            )


@pytest.fixture
def world() -> World:
    world = World()
    world.traffic(random.Random(13))
    return world


def test_each_run_is_added_to_its_domain_s_day(settings):
    one = make_domain("one.example")
    box, loose = make_mailbox(domain=one), make_mailbox()
    # 23:30 UTC is half past midnight in Paris: the next day there.
    stats.stats_record(
        mailbox_id=box.pk, moment=datetime(2026, 3, 10, 23, 30, tzinfo=UTC), messages=2
    )
    stats.stats_record(
        mailbox_id=box.pk, moment=datetime(2026, 3, 11, 9, tzinfo=UTC), errors=1
    )
    stats.stats_record(
        mailbox_id=loose.pk, moment=datetime(2026, 3, 11, 9, tzinfo=UTC), size=9
    )
    assert _kept() == {
        (one.pk, date(2026, 3, 11)): (2, 1, 2, 0),
        (None, date(2026, 3, 11)): (1, 0, 0, 9),
    }
    _assert_kept_true()


def test_a_recorded_poll_counts_in_its_domain(monkeypatch):
    """Through the service that records a poll (services/polls.py)."""
    monkeypatch.setattr(
        services.polls,
        "engine_poll",
        lambda spec, **kwargs: PollReport(exit_code=ExitCode.NOMAIL),
    )
    one = make_domain("one.example")
    mailbox = make_mailbox(
        make_user(superuser=True),
        domain=one,
        password="pw",
        host="127.0.0.1",
        port=993,
    )
    services.mailbox_poll(mailbox_id=mailbox.pk)
    services.mailbox_poll(mailbox_id=mailbox.pk)
    row = DomainDayStat.objects.get()
    assert (row.domain_id, row.day, row.polls) == (
        one.pk,
        stats.day_of(timezone.now()),
        2,
    )
    _assert_kept_true()


def test_a_run_of_a_mailbox_moved_while_polling_counts_where_it_is_now():
    """The domain is the mailbox's when the run is counted, not the one it was
    in when the poll began (the copy of the row the worker holds)."""
    one, two = make_domain("one.example"), make_domain("two.example")
    box = make_mailbox(make_user(superuser=True), domain=one)
    run = PollRun.objects.create(mailbox=box)  # the poll begins: box is in one
    moved = Mailbox.objects.get(pk=box.pk)
    moved.domain = two
    services.mailbox_save(mailbox=moved)
    run.outcome, run.finished_at, run.delivered = "success", NOW, 3
    stats.run_recorded(run=run)
    assert run.mailbox.domain_id == one.pk
    assert _kept() == {(two.pk, stats.day_of(NOW)): (1, 0, 3, 0)}
    _assert_kept_true()


def test_two_workers_racing_for_the_domain_s_first_row_both_count(monkeypatch):
    """As for the mailbox's rows: if another worker inserted the domain's row of
    the day between our UPDATE (0 rows) and our INSERT, we add to theirs."""
    one = make_domain("one.example")
    box = make_mailbox(domain=one)
    real_update = QuerySet.update
    raced: list[bool] = []

    def update(self, **kwargs):
        if self.model is DomainDayStat and not raced:
            raced.append(True)
            DomainDayStat.objects.create(
                domain=one, day=stats.day_of(NOW), polls=5, messages=5
            )
            return 0
        return real_update(self, **kwargs)

    monkeypatch.setattr(QuerySet, "update", update)
    stats.stats_record(mailbox_id=box.pk, moment=NOW, messages=2)
    row = DomainDayStat.objects.get()
    assert raced and (row.polls, row.messages) == (6, 7)


def test_the_roll_up_prunes_the_domain_days_with_the_mailbox_days(world):
    today = NOW.astimezone(ZoneInfo(PARIS)).date()
    old = today - timedelta(days=366)
    for box in world.boxes[:3] + world.boxes[-1:]:
        stats.stats_record(
            mailbox_id=box.pk, moment=NOW - timedelta(days=366), messages=1
        )
    assert DomainDayStat.objects.filter(day=old).count() == 3  # one, two, none

    result = services.stats_roll_up(now=NOW)

    assert result.days_deleted == 4 and result.domain_days_deleted == 3
    assert not DomainDayStat.objects.filter(day__lt=today - timedelta(days=365))
    _assert_kept_true()
    assert services.stats_roll_up(now=NOW).domain_days_deleted == 0


def test_deleting_runs_changes_no_counter(world, settings):
    settings.FETCH_RUN_RETENTION_DAYS = 1
    box = world.boxes[0]
    for age in (10, 5, 0):
        PollRun.objects.create(
            mailbox=box,
            outcome=PollRun.Outcome.SUCCESS,
            started_at=timezone.now() - timedelta(days=age),
            finished_at=timezone.now() - timedelta(days=age),
        )
    before = _kept()
    assert services.runs_delete_old() == 2
    services.runs_delete(runs=PollRun.objects.all())
    assert _kept() == before
    _assert_kept_true()


def test_deleting_mailboxes_takes_their_days_off(world):
    one = world.one.pk
    before = {k: v for k, v in _kept().items() if k[0] == one}
    assert before
    services.mailbox_delete(mailbox=world.boxes[0])
    _assert_kept_true()
    # In bulk from the list, as the domain's administrator.
    client = Client()
    client.force_login(world.admin)
    client.post(
        reverse("retrieval:mailbox-bulk"),
        {"action": "delete", "ids": [world.boxes[1].pk]},
    )
    assert not Mailbox.objects.filter(pk=world.boxes[1].pk).exists()
    _assert_kept_true()
    # With their owner: the administrator's two, one of them in no domain.
    services.user_delete(user=world.admin)
    _assert_kept_true()
    # Domain one has no mailbox left: no row of its own either.
    assert not DomainDayStat.objects.filter(domain_id=one).exists()
    services.person_remove(person=world.bob, actor=world.root)
    _assert_kept_true()


def test_taking_a_year_of_days_off_costs_what_three_days_do():
    """One UPDATE per domain, not one per day: deleting a mailbox with a year
    of counters (or fifty of them from the list) stays quick."""
    one = make_domain("one.example")
    few, many, other = (make_mailbox(domain=one) for _ in range(3))
    for box, days in ((few, 3), (many, 300), (other, 2)):
        for age in range(days):
            stats.stats_record(mailbox_id=box.pk, moment=NOW - timedelta(days=age))
    counts = []
    for box in (few, many):
        with CaptureQueriesContext(connection) as queries:
            services.domain_stats_forget(mailboxes=Mailbox.objects.filter(pk=box.pk))
        counts.append(len(queries))
        MailboxDayStat.objects.filter(mailbox=box).delete()  # as the delete does
        _assert_kept_true()
    assert counts[0] == counts[1]
    assert set(DomainDayStat.objects.values_list("polls", flat=True)) == {1}


def test_a_mailbox_moved_to_another_domain_takes_its_days_along(world):
    box = world.boxes[1]  # alice's, in one
    box.domain = None
    services.mailbox_save(mailbox=box)
    _assert_kept_true()
    box.domain = world.one
    services.mailbox_save(mailbox=box)
    _assert_kept_true()
    root_s = world.boxes[5]  # root's, in two
    root_s.domain = world.one
    services.mailbox_save(mailbox=root_s)
    _assert_kept_true()
    # A person who moves takes their mailboxes along (services/users.py).
    world.bob.domain = world.one
    services.user_save(user=world.bob)
    assert Mailbox.objects.get(pk=world.boxes[2].pk).domain == world.one
    _assert_kept_true()
    world.alice.domain = None
    services.user_save(user=world.alice)
    assert not Mailbox.objects.filter(owner=world.alice).exclude(domain=None)
    _assert_kept_true()
    # Two has no mailbox left: no row of its own either.
    assert not DomainDayStat.objects.filter(domain=world.two).exists()


def test_the_migration_fills_them_from_the_mailbox_days(world):
    from django.apps import apps

    expected = _kept()
    DomainDayStat.objects.all().delete()
    migration = importlib.import_module("retrieval.migrations.0015_domain_day_stats")
    migration.fill_domain_days(apps, None)
    assert _kept() == expected
    _assert_kept_true()


# --- the dashboard reads them, and shows what the mailbox rows give ------------------


def _from_mailbox_rows(mailboxes: QuerySet[Mailbox], span: str, zone) -> list:
    """The chart as read from the mailbox rows alone (a scope with a condition
    and no domains: the path the per-domain rows replace)."""
    ids = list(mailboxes.values_list("pk", flat=True))
    return console.traffic(
        Mailbox.objects.filter(pk__in=ids), span=span, zone=zone, now=NOW
    )


@pytest.mark.parametrize("zone", [PARIS, "UTC", "America/New_York"])
def test_the_charts_are_the_mailbox_rows_figures(world, zone):
    zone = ZoneInfo(zone)
    for who in (world.root, world.admin, world.alice):
        mine = console.scope(who)
        for span in console.RANGES:
            read = console.traffic(
                mine,
                span=span,
                zone=zone,
                now=NOW,
                domains=console.whole_domains(who),
            )
            assert read == _from_mailbox_rows(mine, span, zone), (who, span)
            assert sum(b.polls for b in read) > 0 or span == "24h"


def test_the_day_charts_of_a_superuser_read_the_domain_rows(world):
    with CaptureQueriesContext(connection) as queries:
        console.traffic(
            console.scope(world.root), span="30d", zone=ZoneInfo(PARIS), now=NOW
        )
    assert len(queries) == 1
    assert "retrieval_domaindaystat" in queries[0]["sql"]
    assert "retrieval_mailboxdaystat" not in queries[0]["sql"]


def test_the_per_domain_table_is_the_mailbox_rows_figures(world):
    services.mailbox_delete(mailbox=world.boxes[2])  # two keeps root's box
    for span in ("7d", "30d"):
        since = console.bucket_starts(span, ZoneInfo(PARIS), NOW)[0].date()
        expected = {
            row["mailbox__domain__name"] or "(no domain)": (
                row["p"],
                row["e"],
                row["m"],
            )
            for row in MailboxDayStat.objects.filter(day__gte=since)
            .order_by()
            .values("mailbox__domain__name")
            .annotate(p=Sum("polls"), e=Sum("errors"), m=Sum("messages"))
        }
        table = {
            row["name"]: (row["polls"], row["errors"], row["messages"])
            for row in console.per_domain(span=span, now=NOW)
        }
        assert table == expected
