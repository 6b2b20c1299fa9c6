"""The Celery app. Workers and beat read their configuration from Django settings."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.signals import task_prerun, worker_init, worker_process_shutdown
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


@worker_init.connect
def _metrics_fresh_start(**kwargs: object) -> None:
    """The files of a previous run of this worker would add to its counters and
    gauges: each worker has a PROMETHEUS_MULTIPROC_DIR of its own, emptied here."""
    from retrieval import observability

    observability.clear_own_files()


@task_prerun.connect
def _database_connections_fresh_enough(**kwargs: object) -> None:
    """What Django does before each request, before each task: a connection past
    CONN_MAX_AGE, failing its health check or left unusable is closed here, and
    the next query opens a new one (settings.CELERY_DB_REUSE_MAX)."""
    from django.db import close_old_connections

    close_old_connections()
