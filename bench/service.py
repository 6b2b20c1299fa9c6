"""The whole fetchweb service as one benchmark tool: PostgreSQL, Redis, Celery.

For the ``many`` cases: the run's rcfile is imported into a fresh database with
``manage.py import_fetchmailrc`` (so every mailbox is due at once), then Celery
workers and beat start, and the clock runs from beat's start to the last message
the listener received. Every delivery must also be recorded in PostgreSQL: the
summed ``PollRun.delivered`` is checked against the expected count, so a fast
but unrecorded run does not count.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.postgres import PostgresCluster
from tests.support.redis import RedisServer

if TYPE_CHECKING:
    from bench.tools import Measurement, Workspace

REPO = Path(__file__).resolve().parent.parent
OWNER = "bench@example.org"
WORKERS = int(os.environ.get("BENCH_SERVICE_WORKERS", "4"))


def _manage(env: dict[str, str], *args: str, log: Path) -> None:
    with log.open("ab") as out:
        subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=600,
        )


def _celery(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "fetchweb", *args],
        cwd=REPO,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def _last_delivery(records: Path, expected: int, deadline: float) -> float | None:
    """The wall-clock time of the last delivery, once ``expected`` have arrived."""
    while time.time() < deadline:
        if records.exists():
            lines = records.read_text().splitlines()
            if len(lines) >= expected:
                return max(json.loads(line)["t"] for line in lines)
        time.sleep(0.2)
    return None


def _recorded_deliveries(env: dict[str, str]) -> tuple[int, float, float]:
    """The deliveries on record, and the user and system seconds the
    ``manage.py shell`` that read them took: it is a child of this process too,
    so the service's CPU figure must leave it out."""
    code = (
        "from django.db.models import Sum; from retrieval.models import PollRun; "
        "print(PollRun.objects.aggregate(n=Sum('delivered'))['n'] or 0)"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    count = int(_shell(env, code))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return count, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def _shell(env: dict[str, str], code: str) -> str:
    """The last line ``manage.py shell -c code`` prints."""
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return out.stdout.strip().splitlines()[-1]


def measure_service(work: Workspace, timeout: float) -> tuple[Measurement, int]:
    """Run the service over ``work.rcfile``; return the measurement and the number
    of deliveries recorded in PostgreSQL."""
    from bench.tools import Measurement

    if work.records is None:
        raise ValueError("the service tool needs the bench listener's records")
    state = work.dir / "service"
    state.mkdir(exist_ok=True)
    log = work.log
    pg = PostgresCluster.start()
    redis = RedisServer.start(state / "redis")
    try:
        env = {
            **os.environ,
            "DATABASE_URL": pg.url,
            "REDIS_URL": redis.url,
            "DEBUG": "true",
            "FETCH_DISPATCH_INTERVAL": "1",
            "FETCH_ALLOW_PRIVATE_HOSTS": "true",
            "DJANGO_SUPERUSER_EMAIL": OWNER,
            "DJANGO_SUPERUSER_PASSWORD": "bench-only-password",
            "HOME": str(work.dir),
        }
        _manage(env, "migrate", "--noinput", log=log)
        _manage(env, "createsuperuser", "--noinput", log=log)
        _manage(env, "import_fetchmailrc", str(work.rcfile), "--owner", OWNER, log=log)

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        worker = _celery(
            env,
            log,
            "worker",
            "--loglevel",
            "warning",
            "--concurrency",
            str(WORKERS),
            "--without-gossip",
            "--without-mingle",
        )
        time.sleep(3)  # the worker's pool is up before the clock starts
        started = time.time()
        beat = _celery(
            env, log, "beat", "--loglevel", "warning", "--schedule", str(state / "beat")
        )
        last = _last_delivery(work.records, work.expected, started + timeout)
        recorded_deadline = time.time() + 60
        recorded, reader_user, reader_sys = _recorded_deliveries(env)
        while recorded < work.expected and time.time() < recorded_deadline:
            time.sleep(0.5)  # the last poll records its run after its last delivery
            recorded, user, system = _recorded_deliveries(env)
            reader_user, reader_sys = reader_user + user, reader_sys + system
        for process in (beat, worker):
            process.terminate()
        for process in (beat, worker):
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        redis.stop()
        pg.stop()

    wall = (last - started) if last is not None else timeout
    return (
        Measurement(
            wall_s=wall,
            user_s=after.ru_utime - before.ru_utime - reader_user,
            sys_s=after.ru_stime - before.ru_stime - reader_sys,
            maxrss_kb=after.ru_maxrss,
            exit_code=0 if last is not None else 1,
            timed_out=last is None,
            rss_source="wait4",
        ),
        recorded,
    )


# --- one mailbox through services.mailbox_poll (``fetchweb-poll``) -----------------

_poll_db: tuple[PostgresCluster, dict[str, str]] | None = None


def _poll_database(log: Path) -> dict[str, str]:
    """One PostgreSQL for every ``fetchweb-poll`` run of this invocation, migrated
    once; stopped when the harness exits."""
    global _poll_db  # one cluster per bench process
    if _poll_db is None:
        import atexit

        pg = PostgresCluster.start()
        atexit.register(pg.stop)
        env = {
            **os.environ,
            "DATABASE_URL": pg.url,
            "DEBUG": "false",  # DEBUG keeps every query in memory: not the service
            "FETCH_ALLOW_PRIVATE_HOSTS": "true",
            "DJANGO_SUPERUSER_EMAIL": OWNER,
            "DJANGO_SUPERUSER_PASSWORD": "bench-only-password",
            "PYTHONPATH": str(REPO),
        }
        # DEBUG off without the production settings (shared keys, Redis): the
        # deployment checks would refuse; nothing here is deployed.
        _manage(env, "migrate", "--noinput", "--skip-checks", log=log)
        _manage(env, "createsuperuser", "--noinput", "--skip-checks", log=log)
        _poll_db = (pg, env)
    return _poll_db[1]


def _import_mailbox(work: Workspace) -> tuple[dict[str, str], str]:
    """The run's rcfile imported afresh (outside the timed part): the
    environment of the database and the mailbox's id."""
    env = _poll_database(work.log)
    code = (
        "from django.core.management import call_command; "
        "from retrieval.models import Mailbox; "
        "Mailbox.objects.all().delete(); "
        f"call_command('import_fetchmailrc', {str(work.rcfile)!r}, owner={OWNER!r}); "
        "print(Mailbox.objects.get().pk)"
    )
    return env, _shell(env, code)


def measure_poll(work: Workspace, timeout: float) -> Measurement:
    """``manage.py poll ID`` on the run's one mailbox: the whole service path of
    one poll (lease, advisory lock, PollRun, the ORM ledger on PostgreSQL, the
    transcript), timed like the engine command, from spawn to exit. The mailbox
    is imported afresh before each run, outside the timed part."""
    from bench.tools import spawn

    env, mailbox_id = _import_mailbox(work)
    return spawn(
        [sys.executable, str(REPO / "manage.py"), "poll", "--skip-checks", mailbox_id],
        env=env,
        cwd=work.dir,
        log=work.log,
        timeout=timeout,
    )


def measure_worker_poll(work: Workspace, timeout: float) -> Measurement:
    """The same poll timed inside a process that has started already
    (:mod:`bench.warm`): the call to ``services.mailbox_poll`` alone, as a
    Celery worker that has served a poll before runs it."""
    from bench.tools import spawn_warm

    env, mailbox_id = _import_mailbox(work)
    return spawn_warm(["poll", mailbox_id], env=env, work=work, timeout=timeout)
