"""A worker of the "interactive" queue, Redis and Dovecot, all real: a queued
connection test is run by the worker and its result lands in the database,
where the page reads it (issue 11 item 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from django.conf import settings

from retrieval.models import ConnectionTest, PollRun
from retrieval.tasks import INTERACTIVE_QUEUE
from tests.factories import make_mailbox, make_user
from tests.live.test_celery_schedule import ROOT, _celery, _database_url

pytestmark = [
    pytest.mark.live,
    pytest.mark.celery,
    # The worker is another process: it must see committed rows in a real database.
    pytest.mark.django_db(transaction=True),
]


def test_a_worker_of_the_interactive_queue_runs_a_connection_test(
    dovecot, mailuser, redis_url, tmp_path
):
    dovecot.put(mailuser.name, b"Subject: stays\r\n\r\nbody\r\n")
    root = make_user(superuser=True)
    mailbox = make_mailbox(
        root,
        password=mailuser.password,
        protocol="imap",
        host=dovecot.host,
        port=dovecot.imaps_port,
        tls_mode="implicit",
        ca_file=dovecot.ca_file,
        username=mailuser.name,
        timeout=10,
    )
    probe = ConnectionTest.objects.create(mailbox=mailbox, requested_by=root)
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": redis_url,
        "SECRET_KEY": settings.SECRET_KEY,
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    worker = _celery(
        [
            "worker",
            "--queues",
            INTERACTIVE_QUEUE,
            "--pool",
            "solo",
            "--loglevel",
            "info",
            "--without-gossip",
            "--without-mingle",
            "--hostname",
            f"interactive-{os.getpid()}@localhost",
        ],
        env,
        tmp_path / "worker.log",
    )
    try:
        # Sent as the web process sends it: by name, routed by CELERY_TASK_ROUTES.
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import django; django.setup(); "
                "from retrieval.tasks import probe_connection; "
                f"probe_connection.delay({json.dumps(probe.pk)})",
            ],
            cwd=ROOT,
            env={**env, "DJANGO_SETTINGS_MODULE": "fetchweb.settings"},
            check=True,
            timeout=60,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            probe.refresh_from_db()
            if probe.done:
                break
            time.sleep(0.5)
        else:
            log = (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"the connection test was not run within 60 s\n{log}")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()

    assert probe.ok is True, probe.error
    assert "OK" in probe.greeting
    assert mailuser.password not in probe.transcript and "********" in probe.transcript
    assert len(dovecot.messages(mailuser.name)) == 1  # nothing fetched
    assert not PollRun.objects.filter(mailbox=mailbox).exists()
    worker_log = (tmp_path / "worker.log").read_text(errors="replace")
    assert mailuser.password not in worker_log
