"""The counters' long memory: hourly rows go after a month, daily rows stay a year.

Each run is counted twice as it is recorded (services/stats.py): in its hour
(MailboxStat) and in its day (MailboxDayStat, the day in settings.TIME_ZONE).
Each night (the daily cleanup task in beat) ``stats_roll_up`` deletes the
hourly rows older than FETCH_STATS_HOURLY_DAYS whole days, whose counts the
daily rows already hold, then the daily rows older than
FETCH_STATS_RETENTION_DAYS, and the per-domain daily rows (DomainDayStat,
services/domain_stats.py) older than the same day. Running it twice deletes nothing more, and no figure
changes: the dashboard's day charts read the daily rows only
(retrieval/console.py), the 24-hour chart the hours it keeps.

(Until migration 0015 the hours were moved into the days here; that migration
added the hourly rows still kept to their days, so every count is in its day.)

Only whole days go (the cutoff is a midnight in settings.TIME_ZONE). Work goes
in bounded batches (``batch`` rows per statement, at most ``max_batches`` a
call), so no night holds a long transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

from retrieval.models import DomainDayStat, MailboxDayStat, MailboxStat

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
    domain_days_deleted: int = 0


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


def _drop_batch(cutoff: datetime, batch: int) -> int:
    """Delete up to ``batch`` hourly rows older than ``cutoff``: their counts are
    in the daily rows already (services/stats.py adds each run to both)."""
    ids = list(
        MailboxStat.objects.filter(hour__lt=cutoff)
        .order_by()
        .values_list("pk", flat=True)[:batch]
    )
    if ids:
        MailboxStat.objects.filter(pk__in=ids).delete()
    return len(ids)


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
        count = _drop_batch(cutoff, batch)
        moved += count
        if count < batch:
            break
    oldest = days_kept_since(now)
    deleted = _delete_days(MailboxDayStat, oldest, batch, max_batches)
    domain_deleted = _delete_days(DomainDayStat, oldest, batch, max_batches)
    if moved or deleted or domain_deleted:
        logger.info(
            "counters: %s hourly row(s) before %s dropped, %s daily row(s) and %s"
            " per-domain daily row(s) before %s deleted",
            moved,
            cutoff.date(),
            deleted,
            domain_deleted,
            oldest,
        )
    return RollUp(
        hours_moved=moved, days_deleted=deleted, domain_days_deleted=domain_deleted
    )


def _delete_days(
    model: type[MailboxDayStat] | type[DomainDayStat],
    oldest: date,
    batch: int,
    max_batches: int,
) -> int:
    """Delete the rows of ``model`` before the day ``oldest``, ``batch`` at a time."""
    old_days = model._default_manager.filter(day__lt=oldest).order_by()
    deleted = 0
    for _ in range(max_batches):
        ids = list(old_days.values_list("pk", flat=True)[:batch])
        if ids:
            deleted += model._default_manager.filter(pk__in=ids).delete()[0]
        if len(ids) < batch:
            break
    return deleted
