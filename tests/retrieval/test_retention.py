"""Issue 14 item 4: old poll runs are deleted in bounded batches; the last run of
each mailbox and running runs stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from retrieval import services, tasks
from retrieval.models import MessageResult, PollRun
from tests.factories import make_mailbox

pytestmark = pytest.mark.django_db


def _run(mailbox, days_ago: float, outcome: str = "nomail", messages: int = 1):
    run = PollRun.objects.create(
        mailbox=mailbox,
        started_at=timezone.now() - timedelta(days=days_ago),
        outcome=outcome,
        transcript="S: * OK",
    )
    MessageResult.objects.bulk_create(
        MessageResult(run=run, uid=str(n), status="delivered") for n in range(messages)
    )
    return run


class RetentionTests:
    def test_old_runs_go_in_batches_and_the_last_run_of_each_mailbox_stays(
        self, settings
    ):
        settings.FETCH_RUN_RETENTION_DAYS = 30
        busy, quiet = make_mailbox(), make_mailbox()
        old = [_run(busy, 40 + n, messages=2) for n in range(5)]
        recent = _run(busy, 1)
        last_of_quiet = _run(quiet, 90)  # old, but the only one it has
        # Running runs stay, and do not count as a mailbox's last run.
        running = _run(quiet, 60, outcome="running")
        # Two runs per batch, two batches per call: a call deletes four at most.
        with CaptureQueriesContext(connection) as queries:
            assert services.runs_delete_old(batch=2, max_batches=2) == 4
        deletes = [q["sql"] for q in queries if q["sql"].startswith("DELETE")]
        assert deletes and all("IN" in sql for sql in deletes)
        assert services.runs_delete_old(batch=2, max_batches=2) == 1
        assert services.runs_delete_old(batch=2, max_batches=2) == 0
        left = set(PollRun.objects.values_list("pk", flat=True))
        assert left == {recent.pk, last_of_quiet.pk, running.pk}
        assert not MessageResult.objects.filter(run_id__in=[r.pk for r in old]).exists()
        assert MessageResult.objects.filter(run=recent).count() == 1

    def test_the_last_run_stays_even_when_every_run_is_old(self, settings):
        settings.FETCH_RUN_RETENTION_DAYS = 30
        mailbox = make_mailbox()
        runs = [_run(mailbox, 100 - n) for n in range(3)]
        assert services.runs_delete_old() == 2
        assert list(PollRun.objects.values_list("pk", flat=True)) == [runs[-1].pk]

    def test_it_is_a_daily_beat_task(self, settings):
        from django.conf import settings as live

        entry = live.CELERY_BEAT_SCHEDULE["delete-old-runs"]
        assert entry["task"] == tasks.delete_old_runs.name
        mailbox = make_mailbox()
        _run(mailbox, 45)
        _run(mailbox, 0)
        assert tasks.delete_old_runs() == 1
