"""Each mailbox's last finished run kept on its row (Mailbox.latest_*), the
columns the console's states, state filters and sorts read (issue 13,
performance). Through the real services: a poll recorded against a port nobody
listens on, a run closed as lost, runs deleted by retention and in the admin, a
form saved from a stale copy. The reference is always the subquery the console
used to run, so the columns must say what reading the runs says."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.db.models import Subquery
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from retrieval import console, services
from retrieval.models import Mailbox, PollRun
from retrieval.services.latest_run import last_finished
from tests.factories import make_mailbox, make_user
from tests.support.ports import free_port

pytestmark = pytest.mark.django_db


def _columns(mailbox: Mailbox) -> tuple[int | None, str, object]:
    mailbox.refresh_from_db()
    return mailbox.latest_run_id, mailbox.latest_outcome, mailbox.latest_at


def _from_runs(mailbox: Mailbox) -> tuple[int | None, str, object]:
    """What the runs say: the console's former per-mailbox subquery."""
    last = last_finished()
    row = (
        Mailbox.objects.filter(pk=mailbox.pk)
        .annotate(
            run=Subquery(last.values("pk")[:1]),
            outcome=Subquery(last.values("outcome")[:1]),
            at=Subquery(last.values("finished_at")[:1]),
        )
        .values_list("run", "outcome", "at")
        .get()
    )
    return row[0], row[1] or "", row[2]


def _run(mailbox: Mailbox, outcome: str, minutes_ago: float) -> PollRun:
    started = timezone.now() - timedelta(minutes=minutes_ago)
    return PollRun.objects.create(
        mailbox=mailbox,
        outcome=outcome,
        started_at=started,
        finished_at=started + timedelta(seconds=2),
    )


def test_a_recorded_poll_sets_them_and_the_list_filters_on_them():
    owner = make_user()
    mailbox = make_mailbox(
        owner, name="MB-latest", host="127.0.0.1", port=free_port(), password="pw"
    )
    assert _columns(mailbox) == (None, "", None)
    client = Client()
    client.force_login(owner)
    listed = reverse("retrieval:mailbox-list")
    assert "MB-latest" in client.get(listed, {"state": "never"}).content.decode()

    summary = services.mailbox_poll(mailbox_id=mailbox.pk)  # connection refused

    assert summary.outcome == PollRun.Outcome.ERROR
    assert _columns(mailbox) == _from_runs(mailbox)
    assert _columns(mailbox)[:2] == (summary.run_id, PollRun.Outcome.ERROR)
    assert console.state_counts(console.scope(owner))[console.FAILING] == 1
    assert "MB-latest" in client.get(listed, {"state": "failing"}).content.decode()
    assert "MB-latest" not in client.get(listed, {"state": "never"}).content.decode()


def test_a_run_closed_as_lost_sets_them():
    mailbox = make_mailbox()
    _run(mailbox, PollRun.Outcome.NOMAIL, 60)
    services.latest_run_refresh(mailboxes=[mailbox.pk])
    PollRun.objects.create(mailbox=mailbox, lease_owner="dead-worker")

    assert services.runs_close_lost() == 1

    assert _columns(mailbox)[1] == PollRun.Outcome.LOST
    assert _columns(mailbox) == _from_runs(mailbox)


def test_deleting_the_last_run_falls_back_to_the_one_before():
    mailbox = make_mailbox()
    older = _run(mailbox, PollRun.Outcome.SUCCESS, 60)
    newer = _run(mailbox, PollRun.Outcome.ERROR, 30)
    services.latest_run_refresh(mailboxes=[mailbox.pk])
    assert _columns(mailbox)[0] == newer.pk

    services.run_delete(run=newer)
    assert _columns(mailbox)[:2] == (older.pk, PollRun.Outcome.SUCCESS)

    services.runs_delete(runs=PollRun.objects.filter(mailbox=mailbox))
    assert _columns(mailbox) == (None, "", None) == _from_runs(mailbox)


def test_retention_keeps_them_right_when_the_newest_started_is_not_the_last_id(
    settings,
):
    """A run closed late (a lost worker's) has a lower id than runs after it,
    and retention keeps the highest id: the columns follow whatever is left."""
    settings.FETCH_RUN_RETENTION_DAYS = 1
    mailbox = make_mailbox()
    late = _run(mailbox, PollRun.Outcome.LOST, 3 * 24 * 60)
    _run(mailbox, PollRun.Outcome.SUCCESS, 4 * 24 * 60)  # started earlier, higher id
    PollRun.objects.filter(pk=late.pk).update(
        started_at=timezone.now() - timedelta(days=2)
    )
    services.latest_run_refresh(mailboxes=[mailbox.pk])
    assert _columns(mailbox)[0] == late.pk

    assert services.runs_delete_old() == 1

    assert _columns(mailbox) == _from_runs(mailbox)
    assert _columns(mailbox)[1] == PollRun.Outcome.SUCCESS


def test_a_form_saved_from_a_stale_copy_keeps_them():
    mailbox = make_mailbox()
    stale = Mailbox.objects.get(pk=mailbox.pk)  # read by a form before the run
    run = _run(mailbox, PollRun.Outcome.ERROR, 1)
    services.latest_run_refresh(mailboxes=[mailbox.pk])

    stale.name = "renamed"
    services.mailbox_save(mailbox=stale)

    assert _columns(mailbox)[:2] == (run.pk, PollRun.Outcome.ERROR)
    assert mailbox.name == "renamed"


def test_the_migration_fills_them_and_adds_the_kept_hours_to_their_days(settings):
    """Migration 0015's data steps, on rows as the code before it left them:
    runs without the columns, hourly counters not yet in any day, one day
    already rolled up that a late hour adds to."""
    from datetime import UTC, date, datetime

    from django.apps import apps

    from retrieval.models import MailboxDayStat, MailboxStat

    migration = importlib.import_module("retrieval.migrations.0014_console_state")
    settings.TIME_ZONE = "Europe/Paris"
    mailbox, idle = make_mailbox(), make_mailbox()
    run = _run(mailbox, PollRun.Outcome.ERROR, 5)
    Mailbox.objects.update(latest_run=None, latest_outcome="", latest_at=None)
    MailboxDayStat.objects.create(mailbox=mailbox, day=date(2026, 3, 1), messages=7)
    for hour, messages in (
        (datetime(2026, 3, 1, 12, tzinfo=UTC), 1),  # late, for the rolled-up day
        (datetime(2026, 3, 2, 22, tzinfo=UTC), 2),  # 23:00 in Paris: the 2nd
        (datetime(2026, 3, 2, 23, tzinfo=UTC), 3),  # midnight in Paris: the 3rd
    ):
        MailboxStat.objects.create(
            mailbox=mailbox, hour=hour, polls=1, messages=messages
        )

    migration.fill_latest_runs(apps, None)
    migration.hours_into_days(apps, None)

    assert _columns(mailbox)[:2] == (run.pk, PollRun.Outcome.ERROR)
    assert _columns(mailbox) == _from_runs(mailbox)
    assert _columns(idle) == (None, "", None)
    days = dict(
        MailboxDayStat.objects.filter(mailbox=mailbox).values_list("day", "messages")
    )
    assert days == {date(2026, 3, 1): 8, date(2026, 3, 2): 2, date(2026, 3, 3): 3}
