"""Scheduled polls in shard batches (FETCH_POLL_SHARDS): one Celery task runs
a batch of a shard's mailboxes, each poll with the poll task's own time limits.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import timedelta

import pytest
from billiard.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from retrieval import services, tasks
from retrieval.engine.report import ExitCode, PollReport
from retrieval.models import PollRun
from retrieval.poll_limits import poll_time_limits
from retrieval.tasks import SHARD_BATCH, route_task, shard_batches
from tests.factories import make_mailbox, make_user

BATCH = "retrieval.tasks.poll_mailboxes"


def _mailboxes(n: int) -> list:
    owner = make_user(superuser=True)
    return [
        make_mailbox(owner, password="pw", host="127.0.0.1", port=993) for _ in range(n)
    ]


class RoutingTests:
    def test_a_batch_goes_to_the_shard_of_its_mailboxes(self, settings):
        settings.FETCH_POLL_SHARDS = 4
        assert route_task(BATCH, ([6, 10, 2],)) == {"queue": "polls.2"}
        assert route_task(BATCH, (), {"mailbox_ids": [9]}) == {"queue": "polls.1"}

    def test_without_shards_the_scheduled_queue(self, settings):
        settings.FETCH_POLL_SHARDS = 0
        assert route_task(BATCH, ([6],)) == {"queue": "polls"}

    def test_batches_hold_one_shard_in_order_and_at_most_shard_batch(self):
        ids = list(range(1, 4 * SHARD_BATCH + 7))
        batches = list(shard_batches(ids, 3))
        assert sorted(i for batch in batches for i in batch) == ids
        for batch in batches:
            assert 0 < len(batch) <= SHARD_BATCH
            assert len({i % 3 for i in batch}) == 1
            assert batch == sorted(batch)
        assert len(batches) == 6  # 3 shards of 73 or 74: two batches each


@pytest.mark.django_db
class DispatchTests:
    def test_with_shards_one_task_per_shard_batch_and_none_per_mailbox(
        self, settings, monkeypatch, django_capture_on_commit_callbacks
    ):
        settings.FETCH_POLL_SHARDS = 2
        single: list[int] = []
        batches: list[list[int]] = []
        monkeypatch.setattr(tasks.poll_mailbox, "delay", single.append)
        monkeypatch.setattr(tasks.poll_mailboxes, "delay", batches.append)
        due = timezone.now() - timedelta(seconds=1)
        ids = [make_mailbox(next_poll_at=due).pk for _ in range(5)]
        with django_capture_on_commit_callbacks(execute=True):
            assert tasks.dispatch_due_polls() == 5
        assert single == []
        assert sorted(map(sorted, batches)) == sorted(
            [sorted(i for i in ids if i % 2 == 0), sorted(i for i in ids if i % 2)]
        )


@pytest.mark.django_db(transaction=True)  # a worker's autocommit, between polls too
class BatchTests:
    def test_every_mailbox_of_the_batch_is_polled_and_recorded(self, monkeypatch):
        polled = []

        def engine_poll(spec, **kwargs):
            polled.append(spec.username)
            return PollReport(exit_code=ExitCode.NOMAIL)

        monkeypatch.setattr(services.polls, "engine_poll", engine_poll)
        boxes = _mailboxes(3)
        assert tasks.poll_mailboxes([m.pk for m in boxes]) == 3
        assert len(polled) == 3
        for mailbox in boxes:
            run = mailbox.runs.get()
            assert run.outcome == PollRun.Outcome.NOMAIL
            assert run.trigger == PollRun.Trigger.SCHEDULE
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)

    def test_a_poll_that_fails_unexpectedly_does_not_stop_the_batch(
        self, monkeypatch, caplog
    ):
        boxes = _mailboxes(3)
        real = services.mailbox_poll
        polled = []

        def mailbox_poll(*, mailbox_id, **kwargs):
            polled.append(mailbox_id)
            if mailbox_id == boxes[0].pk:
                raise RuntimeError("the database went away")
            return real(mailbox_id=mailbox_id, **kwargs)

        monkeypatch.setattr(services, "mailbox_poll", mailbox_poll)
        monkeypatch.setattr(
            services.polls,
            "engine_poll",
            lambda *a, **k: PollReport(exit_code=ExitCode.NOMAIL),
        )
        with caplog.at_level(logging.ERROR, logger="retrieval.tasks"):
            tasks.poll_mailboxes([m.pk for m in boxes])
        assert polled == [m.pk for m in boxes]
        assert f"scheduled poll of mailbox {boxes[0].pk} failed" in caplog.text
        assert [m.runs.count() for m in boxes] == [0, 1, 1]

    def test_a_batch_past_its_time_queues_the_rest_and_ends(self, monkeypatch):
        """A worker asked to stop waits for the task in hand: a long batch hands
        its remaining mailboxes back to the shard's queue instead."""
        monkeypatch.setattr(tasks, "SHARD_BATCH_SECONDS", 0.0)
        monkeypatch.setattr(
            services.polls,
            "engine_poll",
            lambda *a, **k: PollReport(exit_code=ExitCode.NOMAIL),
        )
        queued: list[list[int]] = []
        monkeypatch.setattr(tasks.poll_mailboxes, "delay", queued.append)
        boxes = _mailboxes(3)
        assert tasks.poll_mailboxes([m.pk for m in boxes]) == 1
        assert queued == [[boxes[1].pk, boxes[2].pk]]
        assert [m.runs.count() for m in boxes] == [1, 0, 0]

    def test_a_slow_poll_hits_its_own_soft_limit_and_the_next_one_runs(
        self, settings, monkeypatch
    ):
        """GIVEN a batch whose first server never answers
        WHEN the poll passes FETCH_SOFT_LIMIT
        THEN that run says it took too long, its lease is free, and the next
        mailbox of the batch is polled within its own limit."""
        settings.FETCH_SOFT_LIMIT = 0.3
        settings.FETCH_HARD_LIMIT = 60
        slow, quick = _mailboxes(2)

        def engine_poll(spec, **kwargs):
            if spec.username == slow.username:
                time.sleep(30)  # a tarpit server
            time.sleep(0.2)  # under the limit: the clock started anew
            return PollReport(exit_code=ExitCode.NOMAIL)

        monkeypatch.setattr(services.polls, "engine_poll", engine_poll)
        started = time.monotonic()
        tasks.poll_mailboxes([slow.pk, quick.pk])
        assert time.monotonic() - started < 10
        run = slow.runs.get()
        assert run.outcome == PollRun.Outcome.TIMEOUT
        assert "took longer than 0.3 s" in run.error
        slow.refresh_from_db()
        assert slow.lease_owner == "" and slow.lease_until is None
        assert quick.runs.get().outcome == PollRun.Outcome.NOMAIL
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


class TimeLimitTests:
    def test_the_hard_limit_ends_the_process(self):
        ended = []

        class Ended(Exception):
            pass

        def end_process():
            ended.append(time.monotonic())
            raise Ended

        started = time.monotonic()
        with pytest.raises(Ended), poll_time_limits(0.1, 0.3, end_process=end_process):
            try:
                time.sleep(5)
            except SoftTimeLimitExceeded:
                time.sleep(5)  # a poll that ignores the soft limit
        assert 0.25 < ended[0] - started < 3

    def test_a_soft_limit_not_below_the_hard_one_is_none(self):
        with (
            pytest.raises(RuntimeError, match="hard"),
            poll_time_limits(5, 0.1, end_process=self._hard),
        ):
            time.sleep(5)

    @staticmethod
    def _hard():
        raise RuntimeError("hard")

    def test_the_previous_alarm_handler_comes_back(self):
        def mine(signum, frame):
            pass

        previous = signal.signal(signal.SIGALRM, mine)
        try:
            with poll_time_limits(10, 20):
                assert signal.getitimer(signal.ITIMER_REAL)[0] > 0
            assert signal.getsignal(signal.SIGALRM) is mine
            assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        finally:
            signal.signal(signal.SIGALRM, previous)

    def test_outside_the_main_thread_no_limits_and_a_warning(self, caplog):
        done = []

        def poll():
            with poll_time_limits(0.01, 0.02):
                time.sleep(0.1)
            done.append(True)

        with caplog.at_level(logging.WARNING, logger="retrieval.poll_limits"):
            thread = threading.Thread(target=poll)
            thread.start()
            thread.join()
        assert done == [True]
        assert "without time limits" in caplog.text
