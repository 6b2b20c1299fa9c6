"""The dashboard's counters: one row per mailbox and hour (MailboxStat), moved on
as each run is recorded, so that the figures never need a scan of the runs.

``run_recorded`` is called once per finished run by services/polls.py (``_record``).
It increments with F() in one UPDATE; the first run of an hour inserts the row,
and two workers racing for that insert both end as increments (the loser of the
unique constraint updates instead), so no run is counted twice or lost.

The hourly rows do not stay forever: retrieval/services/stats_rollup.py moves
the old ones into daily rows (MailboxDayStat) each night.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Model

from retrieval.models import MailboxStat, PollRun

# Outcomes counted as errors: the poll did not do its job.
ERROR_OUTCOMES = frozenset(
    {PollRun.Outcome.ERROR, PollRun.Outcome.LOST, PollRun.Outcome.TIMEOUT}
)


def hour_of(moment: datetime) -> datetime:
    """The UTC hour ``moment`` falls in."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


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
    """Add to the counters of ``mailbox_id`` for the hour of ``moment``."""
    counters_add(
        model=MailboxStat,
        lookup={"mailbox_id": mailbox_id, "hour": hour_of(moment)},
        counts={"polls": polls, "errors": errors, "messages": messages, "bytes": size},
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
