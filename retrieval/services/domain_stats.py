"""The per-domain day counters (DomainDayStat), kept equal to the sum of the day
rows (MailboxDayStat) of the mailboxes each domain holds now.

A superuser's 7- and 30-day dashboard read them: one row per domain and day,
where the mailbox rows are one per mailbox and day (300,000 for 30 days at
10,000 mailboxes, bench/console.py). What moves the sum, and where it is kept:

* a run recorded: services/stats.py adds it to its mailbox's day and to its
  domain's day in the same transaction;
* a mailbox deleted (itself, with its owner, in bulk): ``domain_stats_forget``
  before the delete takes its days off its domain's;
* a mailbox moved to another domain (its owner moved, an edit):
  ``domain_stats_move`` takes its days off the old domain's and adds them to
  the new one's;
* the nightly roll-up (services/stats_rollup.py) deletes old days of both
  tables with the same cutoff. Deleting runs changes no counter.

The days go off in one UPDATE per domain (a year of days of a deleted mailbox
is not a year of statements), never below zero, and a row left at zero
everywhere is deleted: a domain whose mailboxes are all gone has no rows (the
per-domain table shows it only while it has mailboxes or traffic, as before).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import Exists, F, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce, Greatest

from retrieval.models import DomainDayStat, MailboxDayStat
from retrieval.services.stats import COUNTERS, counters_add

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from retrieval.models import Mailbox


def _domain_rows(domain_id: int | None) -> QuerySet[DomainDayStat]:
    rows = DomainDayStat.objects.all()
    if domain_id is None:
        return rows.filter(domain__isnull=True)
    return rows.filter(domain_id=domain_id)


def _by_domain(
    mailboxes: QuerySet[Mailbox],
) -> dict[int | None, QuerySet[MailboxDayStat]]:
    """The day rows of ``mailboxes``, by the domain the mailboxes are in."""
    domain_ids = set(
        mailboxes.order_by().values_list("domain_id", flat=True).distinct()
    )
    return {
        domain_id: MailboxDayStat.objects.filter(
            mailbox__in=mailboxes.filter(domain__isnull=True)
            if domain_id is None
            else mailboxes.filter(domain_id=domain_id)
        )
        for domain_id in domain_ids
    }


def _day_sum(days: QuerySet[MailboxDayStat], name: str) -> Coalesce:
    """The sum of ``name`` over ``days`` on the outer row's day (0 for none)."""
    per_day = (
        days.filter(day=OuterRef("day"))
        .order_by()
        .values("day")
        .annotate(total=Sum(name))
        .values("total")
    )
    return Coalesce(Subquery(per_day[:1]), Value(0))


def _take_off(domain_id: int | None, days: QuerySet[MailboxDayStat]) -> None:
    rows = _domain_rows(domain_id)
    rows.filter(Exists(days.filter(day=OuterRef("day")))).update(
        **{
            name: Greatest(F(name) - _day_sum(days, name), Value(0))
            for name in COUNTERS
        }
    )
    rows.filter(**dict.fromkeys(COUNTERS, 0)).delete()


def _add(domain_id: int | None, days: QuerySet[MailboxDayStat]) -> None:
    rows = _domain_rows(domain_id)
    # The days the domain has no row for yet, read first: a row a recorded run
    # inserts meanwhile is then added to by counters_add, never twice.
    missing = list(
        days.exclude(day__in=rows.values("day"))
        .order_by()
        .values("day")
        .annotate(**{name: Sum(name) for name in COUNTERS})
    )
    rows.filter(Exists(days.filter(day=OuterRef("day")))).exclude(
        day__in=[row["day"] for row in missing]
    ).update(**{name: F(name) + _day_sum(days, name) for name in COUNTERS})
    for row in missing:
        counters_add(
            model=DomainDayStat,
            lookup={"domain_id": domain_id, "day": row["day"]},
            counts={name: row[name] or 0 for name in COUNTERS},
        )


@transaction.atomic
def domain_stats_forget(*, mailboxes: QuerySet[Mailbox]) -> None:
    """Take the days of ``mailboxes``, about to be deleted, off their domains'.
    Call it in the transaction that deletes them."""
    for domain_id, days in _by_domain(mailboxes).items():
        _take_off(domain_id, days)


@transaction.atomic
def domain_stats_move(*, mailboxes: QuerySet[Mailbox], to: int | None) -> None:
    """``mailboxes`` are about to move to the domain ``to`` (an id, None for no
    domain): their days go from their domains' rows to its. Call it before the
    move, in the transaction that makes it."""
    leaving = {d: days for d, days in _by_domain(mailboxes).items() if d != to}
    for domain_id, days in leaving.items():
        _take_off(domain_id, days)
    if leaving:
        moving = (
            mailboxes.exclude(domain__isnull=True)
            if to is None
            else mailboxes.exclude(domain_id=to)
        )
        _add(to, MailboxDayStat.objects.filter(mailbox__in=moving))
