"""Beat, a worker and Redis, all real: a due mailbox is polled with nobody calling
the service by hand."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from retrieval.models import PollRun
from tests.factories import make_mailbox, make_user

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.live,
    pytest.mark.celery,
    # The worker is another process: it must see committed rows in a real database.
    pytest.mark.django_db(transaction=True),
]


def _database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.fail(
            "the Celery test needs the PostgreSQL pass (SQLite tests use :memory:)"
        )
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def _celery(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "fetchweb", *args],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def test_beat_and_a_worker_poll_a_due_mailbox(
    dovecot, mailuser, smtp_listener, redis_url, tmp_path
):
    for n in range(3):
        dovecot.put(
            mailuser.name,
            f"Subject: {n}\r\nMessage-ID: <{n}.celery@example.net>\r\n\r\nbody {n}\r\n".encode(),
        )
    mailbox = make_mailbox(
        make_user(superuser=True),
        password=mailuser.password,
        protocol="imap",
        host=dovecot.host,
        port=dovecot.imaps_port,
        ca_file=dovecot.ca_file,
        username=mailuser.name,
        delivery_host="127.0.0.1",
        delivery_port=smtp_listener.port,
        recipient="alice@example.org",
        timeout=10,
        # Due now: a mailbox never polled would get a first poll spread over
        # its interval (services.mailboxes_spread_new).
        next_poll_at=timezone.now(),
    )
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": redis_url,
        "FETCH_DISPATCH_INTERVAL": "1",
        "SECRET_KEY": settings.SECRET_KEY,
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    worker = _celery(
        [
            "worker",
            # The queues of bin/run's polls worker (retrieval.tasks.route_task).
            "--queues",
            "polls,push,celery",
            "--pool",
            "solo",
            "--loglevel",
            "info",
            "--without-gossip",
            "--without-mingle",
            "--hostname",
            f"test-{os.getpid()}@localhost",
        ],
        env,
        tmp_path / "worker.log",
    )
    beat = _celery(
        ["beat", "--loglevel", "info", "--schedule", str(tmp_path / "beat-schedule")],
        env,
        tmp_path / "beat.log",
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            run = (
                PollRun.objects.filter(mailbox=mailbox)
                .exclude(outcome="running")
                .first()
            )
            if run is not None:
                break
            time.sleep(0.5)
        else:
            logs = "\n".join(
                (tmp_path / f).read_text(errors="replace")[-3000:]
                for f in ("worker.log", "beat.log")
            )
            pytest.fail(f"no poll within 60 s\n{logs}")
    finally:
        for process in (beat, worker):
            process.terminate()
        for process in (beat, worker):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    assert run.trigger == PollRun.Trigger.SCHEDULE
    assert run.outcome == PollRun.Outcome.SUCCESS, run.error
    assert run.delivered == 3
    assert len(smtp_listener.messages) == 3
    assert dovecot.messages(mailuser.name) == []
    # The password never travelled through the broker: tasks carry only the id.
    worker_log = (tmp_path / "worker.log").read_text(errors="replace")
    assert mailuser.password not in worker_log
