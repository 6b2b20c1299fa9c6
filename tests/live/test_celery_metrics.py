"""A real prefork Celery worker polls; its counters reach the web process's
/metrics through PROMETHEUS_MULTIPROC_DIR, and its log is JSON lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retrieval.models import PollRun
from tests.factories import make_mailbox, make_user
from tests.live.test_celery_schedule import _celery, _database_url
from tests.monitoring.scrape import scrape, value

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.live,
    pytest.mark.celery,
    pytest.mark.django_db(transaction=True),
]


def test_worker_counters_reach_metrics_through_the_multiprocess_dir(
    client, dovecot, mailuser, smtp_listener, redis_url, tmp_path, settings
):
    for n in range(2):
        dovecot.put(
            mailuser.name,
            f"Subject: {n}\r\nMessage-ID: <{n}.metrics@example.net>\r\n\r\nbody\r\n".encode(),
        )
    mailbox = make_mailbox(
        make_user(superuser=True),
        password=mailuser.password,
        protocol="pop3",
        host=dovecot.host,
        port=dovecot.pop3s_port,
        tls_mode="implicit",
        ca_file=dovecot.ca_file,
        username=mailuser.name,
        delivery_host="127.0.0.1",
        delivery_port=smtp_listener.port,
        recipient="alice@example.org",
        timeout=10,
    )
    # As bin/run and docker-compose.yml do: one directory per worker, under the
    # one the web process reads.
    prom_dir = tmp_path / "prometheus"
    worker_dir = prom_dir / "polls"
    worker_dir.mkdir(parents=True)
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": redis_url,
        "SECRET_KEY": settings.SECRET_KEY,
        "PROMETHEUS_MULTIPROC_DIR": str(worker_dir),
        "FETCH_LOG_FORMAT": "json",
        "FETCH_LOG_LEVEL": "INFO",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    # A file left by an earlier run of this worker: the worker removes it at start,
    # or its 5 polls would add to this run's.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from prometheus_client import Counter; "
            "Counter('fetchweb_polls', '', ['outcome', 'protocol'])"
            ".labels(outcome='success', protocol='pop3').inc(5)",
        ],
        env={"PROMETHEUS_MULTIPROC_DIR": str(worker_dir), "PATH": os.environ["PATH"]},
        check=True,
        timeout=60,
    )
    assert list(worker_dir.glob("counter_*.db"))
    worker = _celery(
        [
            "worker",
            "--queues",
            "celery",
            "--pool",
            "prefork",
            "--concurrency",
            "1",
            "--loglevel",
            "info",
            "--without-gossip",
            "--without-mingle",
            "--hostname",
            f"metrics-{os.getpid()}@localhost",
        ],
        env,
        tmp_path / "worker.log",
    )
    try:
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import django; django.setup(); "
                "from retrieval.tasks import poll_mailbox; "
                f"poll_mailbox.delay({mailbox.pk})",
            ],
            cwd=ROOT,
            env={**env, "DJANGO_SETTINGS_MODULE": "fetchweb.settings"},
            check=True,
            timeout=60,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            run = PollRun.objects.filter(mailbox=mailbox).exclude(outcome="running")
            if run.exists():
                break
            time.sleep(0.5)
        else:
            log = (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"no poll within 60 s\n{log}")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()

    run = PollRun.objects.get(mailbox=mailbox)
    assert run.outcome == "success", run.error
    assert list(worker_dir.glob("*.db")), "the worker child wrote no metric files"

    settings.PROMETHEUS_MULTIPROC_DIR = str(prom_dir)
    settings.REDIS_URL = redis_url
    text = scrape(client)
    assert value(text, "fetchweb_polls_total", outcome="success", protocol="pop3") == 1
    assert value(text, "fetchweb_messages_delivered_total", protocol="pop3") == 2
    assert value(text, "fetchweb_poll_duration_seconds_count", protocol="pop3") == 1
    assert value(text, "fetchweb_idle_connections") == 0
    assert value(text, "fetchweb_broker_up") == 1

    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert mailuser.password not in log
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    polls = [r for r in records if r.get("event") == "poll"]
    assert [(p["mailbox_id"], p["run_id"], p["outcome"]) for p in polls] == [
        (mailbox.pk, run.pk, "success")
    ]
    assert polls[0]["delivered"] == 2
    assert len([r for r in records if r.get("event") == "delivery"]) == 2
