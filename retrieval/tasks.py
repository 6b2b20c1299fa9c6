"""Celery tasks: thin adapters over retrieval.services."""

from __future__ import annotations

from functools import partial

from celery import shared_task
from django.conf import settings
from django.db import transaction

from retrieval import services


@shared_task(
    acks_late=True,
    soft_time_limit=settings.FETCH_SOFT_LIMIT,
    time_limit=settings.FETCH_HARD_LIMIT,
)
def poll_mailbox(mailbox_id: int, trigger: str = "schedule") -> str:
    return str(services.mailbox_poll(mailbox_id=mailbox_id, trigger=trigger))


@shared_task
def dispatch_due_polls() -> int:
    """Run by beat every few seconds: close the runs of lost workers, then queue
    one poll per mailbox that is due."""
    services.runs_close_lost()
    due = services.mailboxes_claim_due()
    for mailbox_id in due:
        transaction.on_commit(partial(poll_mailbox.delay, mailbox_id))
    return len(due)


# Connection tests go to a queue of their own (CELERY_TASK_ROUTES), served by a
# worker that runs no polls: a person watching the page does not wait behind a
# long poll, and a tarpit server holds a worker slot, never a web worker. The
# time limit bounds the few network waits of one login (services.probes.PROBE_TIMEOUT).
INTERACTIVE_QUEUE = "interactive"


@shared_task(soft_time_limit=120, time_limit=150)
def probe_connection(probe_id: int) -> str:
    return services.connection_test_run(probe_id=probe_id)
