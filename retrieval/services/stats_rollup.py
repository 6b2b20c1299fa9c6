"""The counters' long memory: hourly rows become daily rows, kept for a year.

Each night (the daily cleanup task in beat) ``stats_roll_up`` moves the hourly
counters (MailboxStat) older than FETCH_STATS_HOURLY_DAYS whole days into one
row per mailbox and day (MailboxDayStat, the day in settings.TIME_ZONE), then
deletes the daily rows older than FETCH_STATS_RETENTION_DAYS.

A move, not a copy: each batch adds its hourly rows to the daily rows and
deletes them in one transaction, so every count is in exactly one table at any
moment. Running it twice adds nothing (the second run finds no old hourly rows),
a crash mid-way loses nothing (the batch rolls back), and an hourly row that
arrives late for an old hour is added on the next night. The dashboard sums
both tables for the days it shows (retrieval/console.py), so its figures are the
same before and after a roll-up.

Only whole days are moved (the cutoff is a midnight in settings.TIME_ZONE), so a
day of the charts is never half in one table and half lost. Work goes in bounded
batches (``batch`` hourly rows per transaction, at most ``max_batches`` a call),
so no night holds a long transaction; on PostgreSQL the rows of a batch are
locked with SKIP LOCKED, so two cleanups at once move disjoint rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from retrieval.models import MailboxDayStat, MailboxStat
from retrieval.services.stats import COUNTERS, counters_add

logger = logging.getLogger(__name__)

ROLLUP_BATCH = 2000
ROLLUP_MAX_BATCHES = 500
# Whole days of hours always kept, whatever the setting: the 24-hour chart
# reads hours only (settings.py clamps the environment's value the same way).
MIN_HOURLY_DAYS = 2


@dataclass(frozen=True)
class RollUp:
    hours_moved: int
    days_deleted: int


def stats_zone() -> ZoneInfo:
    """The zone whose midnights cut the daily rows: the installation's."""
    return ZoneInfo(settings.TIME_ZONE)


def hourly_kept_since(now: datetime | None = None) -> datetime:
    """The oldest moment hourly rows are kept for: the midnight (stats zone)
    FETCH_STATS_HOURLY_DAYS days before today. Older hours are in daily rows."""
    zone = stats_zone()
    today = (now or timezone.now()).astimezone(zone).date()
    days = max(settings.FETCH_STATS_HOURLY_DAYS, MIN_HOURLY_DAYS)
    first = today - timedelta(days=days)
    return datetime.combine(first, time(), tzinfo=zone)


def days_kept_since(now: datetime | None = None) -> date:
    """The oldest day a daily row is kept for."""
    today = (now or timezone.now()).astimezone(stats_zone()).date()
    return today - timedelta(days=settings.FETCH_STATS_RETENTION_DAYS)


def _move_batch(cutoff: datetime, batch: int) -> int:
    """Move up to ``batch`` hourly rows older than ``cutoff`` into daily rows."""
    zone = stats_zone()
    with transaction.atomic():
        rows = list(
            MailboxStat.objects.select_for_update(skip_locked=True)
            .filter(hour__lt=cutoff)
            .order_by("pk")
            .values_list("pk", "mailbox_id", "hour", *COUNTERS)[:batch]
        )
        sums: dict[tuple[int, date], list[int]] = {}
        for _pk, mailbox_id, hour, *counts in rows:
            total = sums.setdefault((mailbox_id, hour.astimezone(zone).date()), [0] * 4)
            for i, count in enumerate(counts):
                total[i] += count
        for (mailbox_id, day), total in sums.items():
            counters_add(
                model=MailboxDayStat,
                lookup={"mailbox_id": mailbox_id, "day": day},
                counts=dict(zip(COUNTERS, total, strict=True)),
            )
        MailboxStat.objects.filter(pk__in=[row[0] for row in rows]).delete()
    return len(rows)


def stats_roll_up(
    *,
    now: datetime | None = None,
    batch: int = ROLLUP_BATCH,
    max_batches: int = ROLLUP_MAX_BATCHES,
) -> RollUp:
    """Move old hourly counters into daily ones; delete daily ones past a year."""
    now = now or timezone.now()
    cutoff = hourly_kept_since(now)
    moved = 0
    for _ in range(max_batches):
        count = _move_batch(cutoff, batch)
        moved += count
        if count < batch:
            break
    oldest = days_kept_since(now)
    old_days = MailboxDayStat.objects.filter(day__lt=oldest).order_by()
    deleted = 0
    for _ in range(max_batches):
        ids = list(old_days.values_list("pk", flat=True)[:batch])
        if ids:
            deleted += MailboxDayStat.objects.filter(pk__in=ids).delete()[0]
        if len(ids) < batch:
            break
    if moved or deleted:
        logger.info(
            "counters: %s hourly row(s) before %s rolled up, %s daily row(s) before %s"
            " deleted",
            moved,
            cutoff.date(),
            deleted,
            oldest,
        )
    return RollUp(hours_moved=moved, days_deleted=deleted)
