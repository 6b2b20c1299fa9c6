"""Each mailbox's last finished run, kept on its row (Mailbox.latest_*).

The console shows, filters and sorts mailboxes by how their last poll went; read
from the runs that is a subquery per mailbox in scope (10,000 of them for a
superuser's state filter, bench/console.py). So the newest started finished
run's id, outcome and end are copied onto the mailbox whenever that can change:
a run recorded or closed as lost (services/polls.py), runs deleted by retention
or by a superuser (services/retention.py, services/records.py).

Each refresh is one UPDATE that reads the answer from the runs with the
subquery the console used to run (it walks the pollrun_last_finished index), so
the columns say what that subquery would, whatever the order of events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from retrieval.models import Mailbox, PollRun

if TYPE_CHECKING:
    from collections.abc import Iterable


def last_finished() -> QuerySet[PollRun]:
    """The finished runs of the outer mailbox, newest started first."""
    return (
        PollRun.objects.filter(mailbox=OuterRef("pk"))
        .exclude(outcome=PollRun.Outcome.RUNNING)
        .order_by("-started_at", "-pk")
    )


def latest_run_refresh(*, mailboxes: QuerySet[Mailbox] | Iterable[int]) -> int:
    """Copy the last finished run of each of ``mailboxes`` (a queryset or ids)
    onto it; returns how many mailboxes were updated."""
    rows = (
        mailboxes
        if isinstance(mailboxes, QuerySet)
        else Mailbox.objects.filter(pk__in=list(mailboxes))
    )
    last = last_finished()
    return rows.update(
        latest_run=Subquery(last.values("pk")[:1]),
        latest_outcome=Coalesce(Subquery(last.values("outcome")[:1]), Value("")),
        latest_at=Subquery(last.values("finished_at")[:1]),
    )
