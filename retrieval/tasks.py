"""Celery tasks: thin adapters over retrieval.services."""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from celery import shared_task
from django.conf import settings
from django.db import transaction

import fetchweb.celery  # the app these tasks are queued through
from retrieval import services
from retrieval.poll_limits import poll_time_limits

if TYPE_CHECKING:
    from collections.abc import Iterator

logger = logging.getLogger(__name__)

# The queues (settings.CELERY_TASK_ROUTES -> route_task; bin/run and
# docker-compose.yml start the workers that consume them):
# * POLLS_QUEUE: scheduled polls, queued by the dispatcher;
# * INTERACTIVE_QUEUE: "Poll now" and connection tests, served by a worker that
#   runs no scheduled polls: a person watching the page does not wait behind a
#   long poll, and a tarpit server holds a worker slot, never a web worker;
# * PUSH_QUEUE: polls started by new mail (IDLE).
# With FETCH_POLL_SHARDS = N, scheduled polls go to "polls.0" .. "polls.N-1"
# instead (poll_shard_queue), each served by a worker of one process, a batch of
# a shard's mailboxes per task (poll_mailboxes).
# Beat's own tasks (dispatch, cleanup) and alerts stay on Celery's default queue.
POLLS_QUEUE = "polls"
INTERACTIVE_QUEUE = "interactive"
PUSH_QUEUE = "push"

_POLL_QUEUES = {"manual": INTERACTIVE_QUEUE, "push": PUSH_QUEUE}


def route_task(
    name: str,
    args: Any = None,
    kwargs: Any = None,
    options: Any = None,
    task: Any = None,
    **kw: Any,
) -> dict[str, str] | None:
    """Celery router: the queue of a task, by name and (for polls) trigger."""
    if name == "retrieval.tasks.probe_connection":
        return {"queue": INTERACTIVE_QUEUE}
    if name == "retrieval.tasks.poll_mailboxes":
        ids = (kwargs or {}).get("mailbox_ids") or (args[0] if args else None)
        if ids and settings.FETCH_POLL_SHARDS > 0:
            return {"queue": poll_shard_queue(int(ids[0]), settings.FETCH_POLL_SHARDS)}
        return {"queue": POLLS_QUEUE}
    if name == "retrieval.tasks.poll_mailbox":
        trigger = (kwargs or {}).get("trigger")
        if trigger is None and args is not None and len(args) > 1:
            trigger = args[1]
        queue = _POLL_QUEUES.get(str(trigger), POLLS_QUEUE)
        if queue == POLLS_QUEUE and settings.FETCH_POLL_SHARDS > 0:
            mailbox_id = (kwargs or {}).get("mailbox_id")
            if mailbox_id is None and args:
                mailbox_id = args[0]
            if mailbox_id is not None:
                queue = poll_shard_queue(int(mailbox_id), settings.FETCH_POLL_SHARDS)
        return {"queue": queue}
    return None


def poll_shard_queue(mailbox_id: int, shards: int) -> str:
    """The queue of a mailbox's scheduled polls with FETCH_POLL_SHARDS set: the
    same worker process each time, so that a session kept open by its last poll
    (FETCH_KEEP_SESSIONS) is there for the next."""
    return f"{POLLS_QUEUE}.{mailbox_id % shards}"


@shared_task(
    acks_late=True,
    soft_time_limit=settings.FETCH_SOFT_LIMIT,
    time_limit=settings.FETCH_HARD_LIMIT,
)
def poll_mailbox(mailbox_id: int, trigger: str = "schedule") -> str:
    return str(services.mailbox_poll(mailbox_id=mailbox_id, trigger=trigger))


# Mailboxes per poll_mailboxes task at most: one Celery message (and its
# broker round trips, its hand-over to the pool) for this many polls, while a
# worker that dies mid-batch leaves few waiting for their next poll time.
SHARD_BATCH = 50
# A batch still running after this many seconds queues the rest of its mailboxes
# as a new task and ends: a worker asked to stop waits for the task in hand, not
# for fifty slow polls.
SHARD_BATCH_SECONDS = 10.0


@shared_task(acks_late=True)
def poll_mailboxes(mailbox_ids: list[int]) -> int:
    """Scheduled polls of mailboxes of one shard (FETCH_POLL_SHARDS), one after
    the other, each with the poll task's own time limits (retrieval/poll_limits.py).
    A poll that fails unexpectedly is logged and the next one runs. Returns the
    polls run; after SHARD_BATCH_SECONDS the rest go back to the shard's queue."""
    deadline = time.monotonic() + SHARD_BATCH_SECONDS
    for at, mailbox_id in enumerate(mailbox_ids):
        if at:
            if time.monotonic() > deadline:
                poll_mailboxes.delay(mailbox_ids[at:])
                return at
            # What task_prerun does before a task (fetchweb/celery.py).
            fetchweb.celery.database_connections_fresh_enough()
        try:
            with poll_time_limits(settings.FETCH_SOFT_LIMIT, settings.FETCH_HARD_LIMIT):
                services.mailbox_poll(mailbox_id=mailbox_id)
        except Exception:
            logger.exception("scheduled poll of mailbox %s failed", mailbox_id)
        fetchweb.celery.task_ended()
    return len(mailbox_ids)


def shard_batches(mailbox_ids: list[int], shards: int) -> Iterator[list[int]]:
    """``mailbox_ids`` by shard (id modulo ``shards``), in their order, in
    batches of at most SHARD_BATCH."""
    by_shard: dict[int, list[int]] = {}
    for mailbox_id in mailbox_ids:
        by_shard.setdefault(mailbox_id % shards, []).append(mailbox_id)
    for ids in by_shard.values():
        for start in range(0, len(ids), SHARD_BATCH):
            yield ids[start : start + SHARD_BATCH]


@shared_task
def dispatch_due_polls() -> int:
    """Run by beat every few seconds: close the runs of lost workers, then queue
    the polls of the mailboxes that are due (claimed in batches, one statement
    each): a task per mailbox, or with FETCH_POLL_SHARDS one per shard batch."""
    services.runs_close_lost()
    due = services.mailboxes_dispatch()
    shards = settings.FETCH_POLL_SHARDS
    if shards > 0:
        for batch in shard_batches(due, shards):
            transaction.on_commit(partial(poll_mailboxes.delay, batch))
    else:
        for mailbox_id in due:
            transaction.on_commit(partial(poll_mailbox.delay, mailbox_id))
    return len(due)


@shared_task(soft_time_limit=120, time_limit=150)
def probe_connection(probe_id: int) -> str:
    return services.connection_test_run(probe_id=probe_id)


@shared_task(soft_time_limit=3000, time_limit=3600)
def delete_old_runs() -> int:
    """Daily (beat), the cleanup: poll runs past FETCH_RUN_RETENTION_DAYS, then
    the hourly counters past FETCH_STATS_HOURLY_DAYS (their days hold them) and
    the daily ones past FETCH_STATS_RETENTION_DAYS; all in bounded batches. Returns
    the runs deleted."""
    deleted = services.runs_delete_old()
    services.stats_roll_up()
    return deleted


@shared_task(bind=True, max_retries=8, soft_time_limit=60, time_limit=90)
def send_alert(
    self: Any, mailbox_id: int, event: str, reason: str, *, webhook: bool = True
) -> str:
    """A mailbox started failing, was paused, or recovered: tell its people.

    The webhook is queued once (its own task retries it); a mail server that
    refuses the mail makes this task retry the mail alone."""
    try:
        return services.alert_send(
            mailbox_id=mailbox_id, event=event, reason=reason, webhook=webhook
        )
    except services.AlertMailFailed as exc:
        raise self.retry(
            exc=exc,
            args=(mailbox_id, event, reason),
            kwargs={"webhook": False},
            countdown=min(60 * 2**self.request.retries, 3600),
        ) from exc


@shared_task(
    autoretry_for=(OSError,),
    retry_backoff=30,
    retry_backoff_max=3600,
    retry_jitter=True,
    max_retries=8,
    soft_time_limit=60,
    time_limit=90,
)
def post_webhook(body: str) -> int:
    """POST an alert to FETCH_WEBHOOK_URL, signed; retried while it fails."""
    return services.webhook_post(body=body)
