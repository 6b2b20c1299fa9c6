"""The dashboard's counters: one row per mailbox and hour (MailboxStat), moved on
as each run is recorded, so that the figures never need a scan of the runs.

``run_recorded`` is called once per finished run by services/polls.py (``_record``).
It increments with F() in one UPDATE; the first run of an hour inserts the row,
and two workers racing for that insert both end as increments (the loser of the
unique constraint updates instead), so no run is counted twice or lost.

Each run is also added to its mailbox's row for the day (MailboxDayStat, the
day in settings.TIME_ZONE), in the same way: the 7- and 30-day charts and the
per-domain table read at most one row per mailbox and day, not 24 (at 10,000
mailboxes a 30-day superuser dashboard summed a million hourly rows,
bench/console.py). The hourly rows do not stay forever: each night
retrieval/services/stats_rollup.py deletes the old ones, already counted in
the days.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Model

from retrieval.models import MailboxDayStat, MailboxStat, PollRun

# Outcomes counted as errors: the poll did not do its job.
ERROR_OUTCOMES = frozenset(
    {PollRun.Outcome.ERROR, PollRun.Outcome.LOST, PollRun.Outcome.TIMEOUT}
)


def hour_of(moment: datetime) -> datetime:
    """The UTC hour ``moment`` falls in."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def day_of(moment: datetime) -> date:
    """The day of ``moment`` in the installation's zone (the days of MailboxDayStat)."""
    return moment.astimezone(ZoneInfo(settings.TIME_ZONE)).date()


COUNTERS = ("polls", "errors", "messages", "bytes")


def counters_add(
    *, model: type[Model], lookup: dict[str, Any], counts: dict[str, int]
) -> None:
    """Add ``counts`` to the row of ``model`` at ``lookup``, inserting it if it is
    not there; a racing insert of the same row ends as an addition to it."""
    increments = {name: F(name) + value for name, value in counts.items()}
    rows = model._default_manager.filter(**lookup)
    if rows.update(**increments):
        return
    try:
        with transaction.atomic():
            model._default_manager.create(**lookup, **counts)
    except IntegrityError:
        # Another worker inserted the row first: add to it.
        rows.update(**increments)


def stats_record(
    *,
    mailbox_id: int,
    moment: datetime,
    polls: int = 1,
    errors: int = 0,
    messages: int = 0,
    size: int = 0,
) -> None:
    """Add to the counters of ``mailbox_id`` for the hour and the day of ``moment``."""
    counts = {"polls": polls, "errors": errors, "messages": messages, "bytes": size}
    with transaction.atomic():  # both rows or neither
        counters_add(
            model=MailboxStat,
            lookup={"mailbox_id": mailbox_id, "hour": hour_of(moment)},
            counts=counts,
        )
        counters_add(
            model=MailboxDayStat,
            lookup={"mailbox_id": mailbox_id, "day": day_of(moment)},
            counts=counts,
        )


def run_recorded(*, run: PollRun) -> None:
    """Count one finished run (its hour is the hour it finished)."""
    stats_record(
        mailbox_id=run.mailbox_id,
        moment=run.finished_at or run.started_at,
        errors=1 if run.outcome in ERROR_OUTCOMES else 0,
        messages=run.delivered,
        size=run.bytes_fetched,
    )
