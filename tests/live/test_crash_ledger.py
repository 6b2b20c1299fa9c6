"""Kill the worker around the delete, with the database ledger (issue 10, item 4).

The delete never precedes the commit: a ``manage.py poll`` process is SIGKILLed at
an exact step of the second of three messages (tests/live/crash_poll_driver.py),
against the real Dovecot and a real SMTP listener, then the mailbox is polled
again. Counted by Message-ID at the listener: nothing is lost, and a message
arrives twice only when the worker died after the listener's 250 and before the
ledger committed it ("replied"). Once committed ("recorded", before the delete)
or deleted ("deleted", before QUIT or EXPUNGE), it is never delivered again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from retrieval import services
from retrieval.models import Mailbox, PollRun, SeenMessage
from tests.factories import make_mailbox, make_user
from tests.live.test_crash_invariants import CRASH_ON, ids, message, port_of

pytestmark = [
    pytest.mark.live,
    # The worker is another process: it must see committed rows, and the second
    # poll must run in autocommit as a worker does.
    pytest.mark.django_db(transaction=True),
]

REPO = Path(__file__).resolve().parents[2]
EVERYTHING = {f"crash-{n}@example.net" for n in (1, 2, 3)}


def _database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("a second process needs the PostgreSQL pass (SQLite is :memory:)")
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def _kill_worker_at(
    mailbox: Mailbox, step: str, nth: int = CRASH_ON, pipeline_after: int | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "DJANGO_SETTINGS_MODULE": "fetchweb.settings",
        # As deployed: with DEBUG, every statement goes through Django's logged
        # cursor, and the ledger's own paths for the marks would go untested.
        "DEBUG": "false",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.live.crash_poll_driver",
            str(mailbox.pk),
            step,
            str(nth),
            *([] if pipeline_after is None else [str(pipeline_after)]),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _mailbox(dovecot, mailuser, smtp_listener, protocol: str) -> Mailbox:
    """The Dovecot account as a superuser's mailbox, delivering to the listener."""
    return make_mailbox(
        make_user(superuser=True),
        password=mailuser.password,
        protocol=protocol,
        host=dovecot.host,
        port=port_of(dovecot, protocol),
        tls_mode="none",
        username=mailuser.name,
        delivery_host="127.0.0.1",
        delivery_port=smtp_listener.port,
        recipient="joe@example.org",
        timeout=10,
    )


def _advisory_locks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        return int(cursor.fetchone()[0])


def _other_sessions() -> int:
    """The database's client sessions other than this test's own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


def _wait_for_dead_session() -> None:
    """The advisory lock dies with the killed worker's connection, once PostgreSQL
    has seen the socket close; wait for that, as the next poll would. And for
    the worker's other connection (its pipelined marks) to end: PostgreSQL runs
    what it received from the dead worker before it sees the close."""
    for _ in range(600):
        if _advisory_locks() == 0 and _other_sessions() == 0:
            return
        connection.close()  # a fresh snapshot of pg_locks each time
        subprocess.run(["sleep", "0.05"], check=True)
    pytest.fail("the killed worker's sessions outlived its process")


# The ledger's marks as in a poll of a few messages, and as in a long one (sent
# on a connection of their own without waiting for each answer).
PIPELINED = pytest.mark.parametrize(
    "pipeline_after", [None, 0], ids=["marks-answered", "marks-pipelined"]
)


@PIPELINED
@pytest.mark.parametrize("protocol", ["pop3", "imap"])
@pytest.mark.parametrize(
    ("step", "duplicates"),
    [
        # Between the listener's 250 and the ledger's commit: the one duplicate.
        pytest.param("replied", 1, id="after-250-before-commit"),
        # Committed, delete not sent yet.
        pytest.param("recorded", 0, id="after-commit-before-delete"),
        # Delete sent, no QUIT (POP3 rolls it back) or EXPUNGE (IMAP) yet.
        pytest.param("deleted", 0, id="after-delete-before-quit"),
    ],
)
def test_a_killed_worker_loses_nothing_and_duplicates_only_an_unrecorded_250(
    dovecot, mailuser, smtp_listener, protocol, step, duplicates, pipeline_after
):
    for n in (1, 2, 3):
        dovecot.put(mailuser.name, message(n))
    mailbox = _mailbox(dovecot, mailuser, smtp_listener, protocol)

    killed = _kill_worker_at(mailbox, step, pipeline_after=pipeline_after)

    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    delivered = ids([m.data for m in smtp_listener.messages])
    assert delivered == [f"crash-{n}@example.net" for n in range(1, CRASH_ON + 1)]
    _wait_for_dead_session()
    # The ledger holds what was written before the kill, never more.
    recorded = set(
        SeenMessage.objects.filter(mailbox=mailbox).values_list("message_id", flat=True)
    )
    committed = CRASH_ON - (1 if step == "replied" else 0)
    assert recorded == {f"<crash-{n}@example.net>" for n in range(1, committed + 1)}
    assert set(delivered) | set(ids(dovecot.messages(mailuser.name))) == EVERYTHING
    dead_run = PollRun.objects.get(mailbox=mailbox)
    assert dead_run.outcome == PollRun.Outcome.RUNNING

    # Time passes: the dead worker's lease expires; its lock died with it.
    Mailbox.objects.filter(pk=mailbox.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )
    summary = services.mailbox_poll(mailbox_id=mailbox.pk)

    assert summary.outcome == PollRun.Outcome.SUCCESS, summary.error
    delivered = ids([m.data for m in smtp_listener.wait_for(3 + duplicates)])
    assert set(delivered) == EVERYTHING, "a message was lost"
    assert len(delivered) - len(set(delivered)) == duplicates, delivered
    if duplicates:
        assert delivered.count(f"crash-{CRASH_ON}@example.net") == 2
    assert dovecot.messages(mailuser.name) == []
    # And the dispatcher closes the dead worker's run.
    services.runs_close_lost()
    dead_run.refresh_from_db()
    assert dead_run.outcome == PollRun.Outcome.LOST


@PIPELINED
@pytest.mark.parametrize("protocol", ["pop3", "imap"])
@pytest.mark.parametrize(
    ("step", "nth"),
    [
        # Four rows committed with synchronous_commit off, none synced yet: the
        # dead worker's commits are the server's, and survive it.
        pytest.param("recorded", 4, id="after-4th-asynchronous-commit"),
        # All five synced, the QUIT or EXPUNGE it guards never sent.
        pytest.param("synced", 1, id="after-sync-before-quit-or-expunge"),
    ],
)
def test_a_killed_worker_keeps_its_unsynced_batch_and_redelivers_nothing(
    dovecot, mailuser, smtp_listener, protocol, step, nth, pipeline_after
):
    everything = {f"crash-{n}@example.net" for n in range(1, 6)}
    for n in range(1, 6):
        dovecot.put(mailuser.name, message(n))
    mailbox = _mailbox(dovecot, mailuser, smtp_listener, protocol)

    killed = _kill_worker_at(mailbox, step, nth, pipeline_after)

    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    _wait_for_dead_session()
    delivered = ids([m.data for m in smtp_listener.messages])
    recorded = set(
        SeenMessage.objects.filter(mailbox=mailbox).values_list("message_id", flat=True)
    )
    assert recorded == {f"<{m}>" for m in delivered}
    # Nothing left the server (no QUIT/EXPUNGE went out).
    assert set(ids(dovecot.messages(mailuser.name))) == everything

    Mailbox.objects.filter(pk=mailbox.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )
    summary = services.mailbox_poll(mailbox_id=mailbox.pk)

    assert summary.outcome in (PollRun.Outcome.SUCCESS, PollRun.Outcome.NOMAIL)
    delivered = ids([m.data for m in smtp_listener.wait_for(5)])
    assert sorted(delivered) == sorted(everything), "lost or delivered twice"
    assert dovecot.messages(mailuser.name) == []


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_a_soft_time_limit_inside_the_engine_ends_the_poll_cleanly(
    dovecot, mailuser, smtp_listener, monkeypatch, protocol
):
    """Celery's soft limit arrives as an exception wherever the poll is: here,
    right after the second message was committed. The run says it took too long,
    the lease is released at once, and the next poll finishes the job without a
    duplicate."""
    from functools import partial

    from celery.exceptions import SoftTimeLimitExceeded

    from tests.live.test_crash_invariants import Crash

    def soft_limit() -> None:
        raise SoftTimeLimitExceeded

    for n in (1, 2, 3):
        dovecot.put(mailuser.name, message(n))
    mailbox = _mailbox(dovecot, mailuser, smtp_listener, protocol)
    real_poll = services.polls.engine_poll
    monkeypatch.setattr(
        services.polls,
        "engine_poll",
        partial(real_poll, observe=Crash("recorded", soft_limit)),
    )

    summary = services.mailbox_poll(mailbox_id=mailbox.pk)

    run = PollRun.objects.get(pk=summary.run_id)
    assert run.outcome == PollRun.Outcome.TIMEOUT, run.error
    assert f"took longer than {settings.FETCH_SOFT_LIMIT} s" in run.error
    mailbox.refresh_from_db()
    assert mailbox.lease_owner == "" and mailbox.lease_until is None

    monkeypatch.setattr(services.polls, "engine_poll", real_poll)
    again = services.mailbox_poll(mailbox_id=mailbox.pk)
    assert again.outcome == PollRun.Outcome.SUCCESS, again.error
    delivered = ids([m.data for m in smtp_listener.wait_for(3)])
    assert sorted(delivered) == sorted(EVERYTHING)
    assert dovecot.messages(mailuser.name) == []
