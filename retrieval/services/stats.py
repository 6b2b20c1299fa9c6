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

Each run is also added to the day of its mailbox's domain (DomainDayStat, one
row per domain and day; None for the mailboxes in no domain): the superuser's
day charts and per-domain table read those (services/domain_stats.py keeps
them equal to the sum of the domain's mailbox days when mailboxes go or move).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, Model, Q, Subquery

from retrieval.models import (
    DomainDayStat,
    Mailbox,
    MailboxDayStat,
    MailboxStat,
    PollRun,
)

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


def _domain_day_add(*, mailbox_id: int, day: date, counts: dict[str, int]) -> None:
    """Add ``counts`` to the day of the domain ``mailbox_id`` is in when this
    runs (not the one a worker read when the poll began: the mailbox may have
    moved since). One UPDATE, as for the mailbox's rows; the domain is read
    apart only for the first run of its day."""
    box = Mailbox.objects.filter(pk=mailbox_id)
    in_domain = Q(domain_id=Subquery(box.values("domain_id")[:1]))
    in_none = Q(domain__isnull=True) & Q(Exists(box.filter(domain__isnull=True)))
    rows = DomainDayStat.objects.filter(in_domain | in_none, day=day)
    increments = {name: F(name) + value for name, value in counts.items()}
    if rows.update(**increments):
        return
    found = list(box.values_list("domain_id", flat=True))
    if not found:  # deleted meanwhile: its counters went with it
        return
    counters_add(
        model=DomainDayStat,
        lookup={"domain_id": found[0], "day": day},
        counts=counts,
    )


def stats_record(
    *,
    mailbox_id: int,
    moment: datetime,
    polls: int = 1,
    errors: int = 0,
    messages: int = 0,
    size: int = 0,
) -> None:
    """Add to the counters of ``mailbox_id`` for the hour and the day of
    ``moment``, and to its domain's for the day."""
    counts = {"polls": polls, "errors": errors, "messages": messages, "bytes": size}
    day = day_of(moment)
    with transaction.atomic():  # every row or none
        counters_add(
            model=MailboxStat,
            lookup={"mailbox_id": mailbox_id, "hour": hour_of(moment)},
            counts=counts,
        )
        counters_add(
            model=MailboxDayStat,
            lookup={"mailbox_id": mailbox_id, "day": day},
            counts=counts,
        )
        # Last: the domain's row is shared by its mailboxes' polls, so it is
        # locked for the shortest time.
        _domain_day_add(mailbox_id=mailbox_id, day=day, counts=counts)


def run_recorded(*, run: PollRun) -> None:
    """Count one finished run (its hour is the hour it finished)."""
    stats_record(
        mailbox_id=run.mailbox_id,
        moment=run.finished_at or run.started_at,
        errors=1 if run.outcome in ERROR_OUTCOMES else 0,
        messages=run.delivered,
        size=run.bytes_fetched,
    )
