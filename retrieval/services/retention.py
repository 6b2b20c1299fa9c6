"""Retention: poll runs older than FETCH_RUN_RETENTION_DAYS are deleted.

Runs are deleted whole (the run, its transcript and its message results): a run
without its transcript tells nobody anything the daily counters do not, and a
table that only grows slows every page. Two kinds of runs are never deleted: the
last finished run of each mailbox (its page shows how it last went, however old)
and a run still running (runs_close_lost closes those of lost workers). The work is done in bounded batches (``batch`` runs and their
message results per statement), at most ``max_batches`` per call, so one daily
run never holds a long transaction or locks the table.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from retrieval.models import Mailbox, MessageResult, PollRun
from retrieval.services.latest_run import latest_run_refresh

logger = logging.getLogger(__name__)

RETENTION_BATCH = 1000
RETENTION_MAX_BATCHES = 500


def runs_delete_old(
    *,
    now: datetime | None = None,
    batch: int = RETENTION_BATCH,
    max_batches: int = RETENTION_MAX_BATCHES,
) -> int:
    """Delete runs older than the retention period; returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.FETCH_RUN_RETENTION_DAYS)
    # The last run of a mailbox: no finished run of it came after.
    newer = PollRun.objects.filter(
        mailbox_id=OuterRef("mailbox_id"), pk__gt=OuterRef("pk")
    ).exclude(outcome=PollRun.Outcome.RUNNING)
    old = (
        PollRun.objects.filter(started_at__lt=cutoff)
        .exclude(outcome=PollRun.Outcome.RUNNING)
        .filter(Exists(newer))
        .order_by()
    )
    deleted = 0
    for _ in range(max_batches):
        ids = list(old.values_list("pk", flat=True)[:batch])
        if not ids:
            break
        # Message results first, one statement (they have no dependents of their
        # own); then the runs, one statement, finding no message left to cascade.
        MessageResult.objects.filter(run_id__in=ids).delete()
        _, by_model = PollRun.objects.filter(pk__in=ids).delete()
        deleted += by_model.get(PollRun._meta.label, 0)
        # The last finished run is kept, so this finds nothing unless a mailbox's
        # newest started run is not its highest id (a lost run closed late).
        latest_run_refresh(mailboxes=Mailbox.objects.filter(latest_run_id__in=ids))
        if len(ids) < batch:
            break
    if deleted:
        logger.info("deleted %s poll run(s) older than %s", deleted, cutoff.date())
    return deleted
