"""How a poll begins and ends, whatever happens to the worker (issue 10, items 4, 5).

* The delete never precedes the commit: the service refuses to run inside a
  transaction, where the ledger's row would only commit after the delete.
* No run stays "running" forever: the dispatcher closes the runs of workers that
  died; a Celery soft time limit is an outcome of its own.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from retrieval import services
from retrieval.models import Mailbox, PollRun
from tests.factories import make_mailbox, make_user

pytestmark = pytest.mark.django_db


class AutocommitTests:
    def test_a_poll_inside_a_transaction_is_refused_before_anything_happens(self):
        mailbox = make_mailbox()
        with (
            transaction.atomic(),
            pytest.raises(services.InsideTransaction, match="autocommit"),
        ):
            services.mailbox_poll(mailbox_id=mailbox.pk)
        mailbox.refresh_from_db()
        # Refused before the lease was taken or a run recorded.
        assert mailbox.lease_until is None
        assert PollRun.objects.filter(mailbox=mailbox).count() == 0


def _lease(mailbox, owner: str, until) -> None:
    Mailbox.objects.filter(pk=mailbox.pk).update(lease_owner=owner, lease_until=until)


class LostWorkerTests:
    def test_the_dispatcher_closes_a_run_whose_lease_expired(self, monkeypatch):
        """GIVEN a run left "running" by a worker killed at the hard time limit
        WHEN beat's dispatcher runs after the lease expired
        THEN the run is closed as "worker lost", in plain words."""
        from retrieval import tasks

        monkeypatch.setattr(tasks.poll_mailbox, "delay", lambda *a: None)
        now = timezone.now()
        dead = make_mailbox(next_poll_at=now + timedelta(minutes=5))
        _lease(dead, "dead-worker", now - timedelta(seconds=1))
        lost = PollRun.objects.create(
            mailbox=dead, lease_owner="dead-worker", started_at=now - timedelta(hours=1)
        )

        tasks.dispatch_due_polls()

        lost.refresh_from_db()
        assert lost.outcome == PollRun.Outcome.LOST
        assert lost.get_outcome_display() == "Worker lost"
        assert lost.finished_at is not None
        assert "worker" in lost.error and "stopped" in lost.error
        assert lost.exit_code is None

    def test_a_run_whose_worker_released_the_lease_is_closed_too(self, monkeypatch):
        """The worker died after its lease was freed (or the lease went to a new
        poll): the old run is lost whatever the mailbox's lease says now."""
        from retrieval import tasks

        monkeypatch.setattr(tasks.poll_mailbox, "delay", lambda *a: None)
        now = timezone.now()
        mailbox = make_mailbox(next_poll_at=now + timedelta(minutes=5))
        old = PollRun.objects.create(mailbox=mailbox, lease_owner="old-worker")
        _lease(mailbox, "new-worker", now + timedelta(minutes=30))
        current = PollRun.objects.create(mailbox=mailbox, lease_owner="new-worker")

        services.runs_close_lost(now=now)

        old.refresh_from_db()
        current.refresh_from_db()
        assert old.outcome == PollRun.Outcome.LOST
        # The poll that holds the lease now is still running: left alone.
        assert current.outcome == PollRun.Outcome.RUNNING

    @pytest.mark.parametrize("run_lease", ["gone-worker", ""])
    def test_a_run_on_a_free_mailbox_is_closed(self, run_lease):
        """The lease was released (or the run predates leases on runs) and the
        run never finished: its worker died between the two."""
        mailbox = make_mailbox()
        run = PollRun.objects.create(mailbox=mailbox, lease_owner=run_lease)
        assert services.runs_close_lost() == 1
        run.refresh_from_db()
        assert run.outcome == PollRun.Outcome.LOST

    def test_finished_runs_are_left_alone(self):
        mailbox = make_mailbox()
        done = PollRun.objects.create(
            mailbox=mailbox, outcome=PollRun.Outcome.SUCCESS, exit_code=0
        )
        assert services.runs_close_lost() == 0
        done.refresh_from_db()
        assert done.outcome == PollRun.Outcome.SUCCESS and done.exit_code == 0

    def test_the_run_page_says_so_in_plain_words(self, client, settings):
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
        mailbox = make_mailbox()
        run = PollRun.objects.create(mailbox=mailbox, lease_owner="gone")
        services.runs_close_lost()
        client.force_login(mailbox.owner)
        page = client.get(
            reverse("retrieval:run-detail", args=[mailbox.pk, run.pk])
        ).content.decode()
        assert "Worker lost" in page
        assert "stopped before it finished" in page
        assert "not finished" not in page and "still running" not in page

    def test_a_run_holding_a_live_lease_is_left_running(self):
        now = timezone.now()
        mailbox = make_mailbox()
        _lease(mailbox, "busy-worker", now + timedelta(minutes=30))
        run = PollRun.objects.create(mailbox=mailbox, lease_owner="busy-worker")
        assert services.runs_close_lost(now=now) == 0
        run.refresh_from_db()
        assert run.outcome == PollRun.Outcome.RUNNING


class SoftTimeLimitTests:
    @pytest.mark.parametrize("limit", [1500, 7])
    def test_a_soft_time_limit_is_its_own_outcome_and_frees_the_lease(
        self, monkeypatch, settings, limit
    ):
        """GIVEN Celery's soft time limit fires inside the engine
        WHEN the poll ends
        THEN the run says it took longer than N s (not exit 23 "failed
        unexpectedly") and the lease is released."""
        from celery.exceptions import SoftTimeLimitExceeded

        settings.FETCH_SOFT_LIMIT = limit

        def too_slow(*args, **kwargs):
            raise SoftTimeLimitExceeded

        monkeypatch.setattr(services.polls, "engine_poll", too_slow)
        mailbox = make_mailbox(
            make_user(superuser=True), password="pw", host="127.0.0.1", port=993
        )

        summary = services.mailbox_poll(mailbox_id=mailbox.pk)

        run = mailbox.runs.get()
        assert summary.outcome == run.outcome == PollRun.Outcome.TIMEOUT
        assert run.get_outcome_display() == "Took too long"
        assert f"took longer than {limit} s" in run.error
        assert run.exit_code != 23 and "unexpectedly" not in run.error
        assert run.finished_at is not None
        mailbox.refresh_from_db()
        assert mailbox.lease_owner == "" and mailbox.lease_until is None
