"""The Celery app. Workers and beat read their configuration from Django settings."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.signals import (
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_shutdown,
)
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fetchweb.settings")

app = Celery("fetchweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def beat_schedule(entries: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """settings.CELERY_BEAT_SCHEDULE with each ``{"crontab": {fields}}`` made a
    crontab: the settings name its fields without importing Celery."""
    made = {}
    for name, entry in entries.items():
        when = entry["schedule"]
        if isinstance(when, dict):
            entry = {**entry, "schedule": crontab(**when["crontab"])}
        made[name] = entry
    return made


app.conf.beat_schedule = beat_schedule(settings.CELERY_BEAT_SCHEDULE)


@worker_process_shutdown.connect
def _metrics_of_a_dead_child(pid: int | None = None, **kwargs: object) -> None:
    """prometheus_client multiprocess mode: drop the live gauges of a worker child
    that exited (its counters stay, summed into /metrics)."""
    from retrieval import observability

    observability.process_dead(pid or os.getpid())


@worker_process_shutdown.connect
def _kept_sessions_logged_out(**kwargs: object) -> None:
    """A pool process that ends says goodbye on the IMAP sessions and listener
    connections it kept open (FETCH_KEEP_SESSIONS) rather than leaving them to
    the far end's timeout."""
    from retrieval.services.kept import kept_sessions_close

    kept_sessions_close()


@worker_init.connect
def _metrics_fresh_start(**kwargs: object) -> None:
    """The files of a previous run of this worker would add to its counters and
    gauges: each worker has a PROMETHEUS_MULTIPROC_DIR of its own, emptied here."""
    from retrieval import observability

    observability.clear_own_files()


# A connection whose last task ended this recently, without a database error,
# skips the health check (a "SELECT 1" round trip before the first query of
# every task, a statement more than the poll's own).
FRESH_SECONDS = 2.0
_last_task_ended = float("-inf")


@task_prerun.connect
def database_connections_fresh_enough(**kwargs: object) -> None:
    """What Django does before each request, before each task: a connection past
    CONN_MAX_AGE, failing its health check or left unusable is closed here, and
    the next query opens a new one (settings.CELERY_DB_REUSE_MAX).

    The health check (CONN_HEALTH_CHECKS) is for a connection that sat idle
    while the database restarted. A busy worker's tasks follow each other
    within milliseconds: for a connection used that recently it is skipped.
    Should the database go away in that moment, the task fails, and Django
    checks (and replaces) the connection before the next one. A task that runs
    several polls (tasks.poll_mailboxes) calls this between them."""
    from django.db import close_old_connections, connections

    close_old_connections()
    if time.monotonic() - _last_task_ended < FRESH_SECONDS:
        for conn in connections.all(initialized_only=True):
            if conn.connection is not None and not conn.errors_occurred:
                conn.health_check_done = True  # type: ignore[attr-defined]


@task_postrun.connect
def task_ended(**kwargs: object) -> None:
    global _last_task_ended
    _last_task_ended = time.monotonic()
