"""Celery tasks: thin adapters over retrieval.services."""

from __future__ import annotations

from functools import partial
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import transaction

import fetchweb.celery  # noqa: F401  (the app these tasks are queued through)
from retrieval import services

# The queues (settings.CELERY_TASK_ROUTES -> route_task; bin/run and
# docker-compose.yml start the workers that consume them):
# * POLLS_QUEUE: scheduled polls, queued by the dispatcher;
# * INTERACTIVE_QUEUE: "Poll now" and connection tests, served by a worker that
#   runs no scheduled polls: a person watching the page does not wait behind a
#   long poll, and a tarpit server holds a worker slot, never a web worker;
# * PUSH_QUEUE: polls started by new mail (IDLE).
# With FETCH_POLL_SHARDS = N, scheduled polls go to "polls.0" .. "polls.N-1"
# instead (poll_shard_queue), each served by a worker of one process.
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


@shared_task
def dispatch_due_polls() -> int:
    """Run by beat every few seconds: close the runs of lost workers, then queue
    one poll per mailbox that is due (claimed in batches, one statement each)."""
    services.runs_close_lost()
    due = services.mailboxes_dispatch()
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
