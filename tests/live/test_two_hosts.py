"""Issue 14 item 5: the same code on two "hosts" against one PostgreSQL and one
Redis, racing over the same mailboxes while mail arrives.

Two Celery workers with different node names (w1@hostA, w2@hostB), beat, and a
second dispatcher that queues every mailbox's poll twice every second without
asking the database whether it is due (what two beats, a replayed broker or an
impatient person clicking "Poll now" would do); two ``manage.py idle`` processes
both holding ALL the mailboxes (no sharding, so only the leases keep them apart);
messages delivered by Dovecot's LMTP at random mailboxes meanwhile.

The invariant, and what "session" means in it: at most one POLL session per
remote mailbox at any moment -- the sessions that fetch and delete (the engine's,
``services.mailbox_poll`` under its lease and advisory lock). The IDLE watchers'
sessions are not polls: they only EXAMINE (read-only) and wait, and two IDLE
processes holding the same mailbox do hold two of them at once (this test checks
that they did, or it would not prove the leases were what kept the polls apart).
The polls the watchers trigger are polls like any other and must not overlap.

Checked from Dovecot's log, not from our own records: each login with its
mechanism and session id, each logout. The engine logs in with CRAM-MD5 (auth
"any" takes the strongest the server offers); the IDLE client logs in with a
password mechanism (PLAIN): that is how a poll session is told from a watcher.
And from the listener: every Message-ID arrived exactly once.
"""

from __future__ import annotations

import itertools
import os
import random
import smtplib
import subprocess
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING

import pytest
from django.conf import settings
from django.utils import timezone

from retrieval.models import PollRun
from tests.factories import make_mailbox, make_user
from tests.live.test_celery_schedule import ROOT, _celery, _database_url
from tests.support.dovecot import SESSION_LOG_CONFIG, Dovecot, MailUser
from tests.support.dovecot_sessions import overlapping, sessions

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

pytestmark = [
    pytest.mark.live,
    pytest.mark.celery,
    pytest.mark.django_db(transaction=True),
]

MAILBOXES = 4
MESSAGES = 24
WAIT = 240.0  # seconds for everything to arrive: generous, ends on the event
POLL_METHOD = "CRAM-MD5"  # the engine's login (auth "any")
IDLE_METHOD = "PLAIN"  # the IDLE client's

# Queues every mailbox's poll twice a second, without claiming: the leases alone
# must keep two workers from polling one mailbox at once.
HOSTILE_DISPATCHER = """
import sys, time, django
django.setup()
from retrieval.tasks import poll_mailbox
ids = [int(x) for x in sys.argv[1:]]
while True:
    for pk in ids:
        poll_mailbox.delay(pk)
        poll_mailbox.delay(pk)
    time.sleep(1.0)
"""


@pytest.fixture
def logged_dovecot(tmp_path):
    """A Dovecot of its own, logging every login and logout with microseconds."""
    server = Dovecot.start(tmp_path, extra_config=SESSION_LOG_CONFIG)
    try:
        yield server
    finally:
        server.stop()


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _message(n: int, user: MailUser) -> bytes:
    return (
        f"From: sender@example.net\r\nTo: {user.address}\r\nSubject: race {n}\r\n"
        f"Message-ID: <race{n}.{user.name}@example.net>\r\n\r\nBody {n}.\r\n"
    ).encode()


def _message_id(data: bytes) -> str:
    for line in data.split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    return ""


# Each host's workers: (node, queues, concurrency).
WORKERS = [
    ("w1@hostA", "polls,push,interactive,celery", 2),
    ("w2@hostB", "polls,push,interactive,celery", 2),
]


def test_two_workers_and_two_idle_processes_never_poll_one_mailbox_twice(
    logged_dovecot, smtp_listener, redis_url, tmp_path
):
    dovecot = logged_dovecot
    users, sent = _race(dovecot, smtp_listener, redis_url, tmp_path, WORKERS, {})
    logs = _each_message_once(dovecot, smtp_listener, users, sent, tmp_path)

    found = _settled_sessions(dovecot)
    polls = [s for s in found if s.method == POLL_METHOD]
    watchers = [s for s in found if s.method == IDLE_METHOD]
    assert {s.method for s in found} == {POLL_METHOD, IDLE_METHOD}
    # The invariant: no two poll sessions of one mailbox at the same moment.
    clashes = overlapping(polls)
    assert not clashes, "\n".join(
        f"{a.user}: {a.session} {a.start}-{a.end} and {b.session} {b.start}-{b.end}"
        for a, b in clashes
    )
    # Every poll session ended (logged out) before the processes stopped.
    unended = [s for s in polls if s.end is None]
    assert not unended, unended

    # The race was on: each mailbox was polled many times, by both workers, with
    # polls queued while another held it (skipped); and both IDLE processes held
    # every mailbox at the same time (two watcher sessions overlapping per user).
    per_user = Counter(s.user for s in polls)
    assert set(per_user) == {u.name for u in users}
    assert min(per_user.values()) >= 3, per_user
    for node in ("w1", "w2"):
        assert "succeeded" in logs[f"{node}.log"], _tail(logs)
    skipped = sum(log.count(": skipped") for log in logs.values())
    assert skipped > 0, "no poll ever found its mailbox held by another"
    watched = {a.user for a, _ in overlapping(watchers)}
    assert watched == {u.name for u in users}, watched
    triggers = set(PollRun.objects.values_list("trigger", flat=True))
    assert {PollRun.Trigger.SCHEDULE, PollRun.Trigger.PUSH} <= triggers


# Sessions kept between polls (FETCH_KEEP_SESSIONS): on each host a worker per
# shard queue (FETCH_POLL_SHARDS=2), beside one for push, "Poll now" and beat.
KEPT_WORKERS = [
    ("w1@hostA", "push,interactive,celery", 2),
    ("w1s0@hostA", "polls.0", 1),
    ("w1s1@hostA", "polls.1", 1),
    ("w2@hostB", "push,interactive,celery", 2),
    ("w2s0@hostB", "polls.0", 1),
    ("w2s1@hostB", "polls.1", 1),
]
KEPT_SETTINGS = {
    "FETCH_KEEP_SESSIONS": "300",
    "FETCH_MAX_SESSIONS_PER_HOST": "0",
    "FETCH_POLL_SHARDS": "2",
}


def test_with_sessions_kept_between_polls_each_message_arrives_once(
    logged_dovecot, smtp_listener, redis_url, tmp_path
):
    """The same race with sessions kept. A kept session idles logged in while
    a push poll or the other host's shard worker polls the mailbox, so here
    Dovecot's sessions of one user do overlap by design: the invariant that
    polls never overlap is read from the run rows (each written under the
    lease), and the mail from the listener and the mailboxes."""
    dovecot = logged_dovecot
    users, sent = _race(
        dovecot, smtp_listener, redis_url, tmp_path, KEPT_WORKERS, KEPT_SETTINGS
    )
    logs = _each_message_once(dovecot, smtp_listener, users, sent, tmp_path)

    runs = list(
        PollRun.objects.exclude(finished_at=None)
        .order_by("mailbox_id", "started_at")
        .values_list("mailbox_id", "started_at", "finished_at")
    )
    for (box, _, ended), (next_box, began, _) in itertools.pairwise(runs):
        assert box != next_box or ended <= began, (box, ended, began)

    # Sessions were kept and found again, so there were fewer logins than polls,
    # and the shard workers of both hosts polled.
    reused = PollRun.objects.filter(transcript__contains="reusing the session")
    assert reused.exists()
    logins = [
        s
        for s in sessions(dovecot.log_text())
        if s.user.startswith("racer") and s.method == POLL_METHOD
    ]
    assert len(logins) < len(runs), (len(logins), len(runs))
    for node in ("w1s0", "w1s1", "w2s0", "w2s1"):
        assert "succeeded" in logs[f"{node}.log"], _tail(logs)


def _race(
    dovecot: Dovecot,
    smtp_listener: Any,
    redis_url: str,
    tmp_path: Path,
    workers: list[tuple[str, str, int]],
    settings_env: dict[str, str],
) -> tuple[list[MailUser], list[str]]:
    """Mailboxes with IDLE on, the ``workers``, beat, two IDLE processes holding
    every mailbox and the hostile dispatcher, all started; then MESSAGES
    delivered by LMTP at random mailboxes, and everything stopped once they
    have arrived (or WAIT has passed). Returns the users and the Message-IDs
    sent; the workers' logs are in ``tmp_path``."""
    owner = make_user(superuser=True)
    users, boxes = [], []
    for n in range(MAILBOXES):
        user = MailUser(name=f"racer{n}", password=f"pw-{n}-{os.getpid()}")
        dovecot.add_user(user.name, user.password)
        users.append(user)
        boxes.append(
            make_mailbox(
                owner,
                password=user.password,
                protocol="imap",
                host=dovecot.host,
                port=dovecot.imaps_port,
                ca_file=dovecot.ca_file,
                username=user.name,
                delivery_host="127.0.0.1",
                delivery_port=smtp_listener.port,
                recipient="alice@example.org",
                timeout=20,
                poll_interval=2,
                next_poll_at=timezone.now(),
                options={"user": {"idle": True}},
            )
        )
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": redis_url,
        "SECRET_KEY": settings.SECRET_KEY,
        "DJANGO_SETTINGS_MODULE": "fetchweb.settings",
        "FETCH_DISPATCH_INTERVAL": "1",
        "FETCH_IDLE_RECONCILE_SECONDS": "1",
        **settings_env,
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    processes = []
    try:
        for node, queues, concurrency in workers:
            processes.append(
                _celery(
                    [
                        "worker",
                        "--queues",
                        queues,
                        "--pool",
                        "prefork",
                        "--concurrency",
                        str(concurrency),
                        "--loglevel",
                        "info",
                        "--without-gossip",
                        "--without-mingle",
                        "--hostname",
                        node,
                    ],
                    env,
                    tmp_path / f"{node.split('@')[0]}.log",
                )
            )
        processes.append(
            _celery(
                ["beat", "--loglevel", "info", "--schedule", str(tmp_path / "beat")],
                env,
                tmp_path / "beat.log",
            )
        )
        for name in ("idleA", "idleB"):
            processes.append(
                _spawn(
                    [sys.executable, "manage.py", "idle", "--shard", "0/1"],
                    env,
                    tmp_path / f"{name}.log",
                )
            )
        hostile = _spawn(
            [sys.executable, "-c", HOSTILE_DISPATCHER, *(str(b.pk) for b in boxes)],
            env,
            tmp_path / "dispatcher.log",
        )
        processes.append(hostile)

        # Everything up (both IDLE processes watching every mailbox, both workers
        # polling) before the first message: Django and Celery start slowly on a
        # busy machine.
        _wait_for(lambda: _ready(dovecot, users), processes, tmp_path)

        rng = random.Random(14)
        sent = []
        for n in range(MESSAGES):
            user = rng.choice(users)
            raw = _message(n, user)
            with smtplib.LMTP(dovecot.host, dovecot.lmtp_port, timeout=30) as lmtp:
                lmtp.sendmail("sender@example.net", [user.address], raw)
            sent.append(_message_id(raw))
            time.sleep(rng.uniform(0.2, 1.0))

        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if len(smtp_listener.messages) >= MESSAGES and not any(
                dovecot.messages(u.name) for u in users
            ):
                break
            time.sleep(0.5)
        _stop([hostile])
        time.sleep(3)  # polls queued before the dispatcher stopped find nothing
    finally:
        _stop(processes)
    return users, sent


def _each_message_once(
    dovecot: Dovecot,
    smtp_listener: Any,
    users: list[MailUser],
    sent: list[str],
    logs: Path,
) -> dict[str, str]:
    """Every message sent reached the listener exactly once and the mailboxes
    are empty; returns the processes' logs (by file name) for messages."""
    texts = {p.name: p.read_text(errors="replace") for p in logs.glob("*.log")}
    received = Counter(_message_id(m.data) for m in smtp_listener.messages)
    assert set(received) == set(sent), _tail(texts)
    twice = {mid: n for mid, n in received.items() if n > 1}
    assert not twice, f"delivered more than once: {twice}"
    assert not any(dovecot.messages(u.name) for u in users)
    return texts


def _settled_sessions(dovecot: Dovecot) -> list[Any]:
    """The racers' sessions, once Dovecot has logged the end of every poll
    session (or after 15 s): its imap process writes "Disconnected" after the
    client has gone, which can be after the worker that logged out has exited."""
    deadline = time.monotonic() + 15
    while True:
        found = [s for s in sessions(dovecot.log_text()) if s.user.startswith("racer")]
        settled = all(s.end is not None for s in found if s.method == POLL_METHOD)
        if settled or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _ready(dovecot: Dovecot, users: list[MailUser]) -> bool:
    found = sessions(dovecot.log_text())
    for user in users:
        mine = [s for s in found if s.user == user.name]
        watching = [s for s in mine if s.method == IDLE_METHOD and s.end is None]
        if len(watching) < 2 or not any(s.method == POLL_METHOD for s in mine):
            return False
    return True


def _wait_for(
    ready: Callable[[], bool], processes: list[subprocess.Popen[bytes]], logs: Path
) -> None:
    deadline = time.monotonic() + WAIT
    while not ready():
        dead = [p.args for p in processes if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            texts = {p.name: p.read_text(errors="replace") for p in logs.glob("*.log")}
            pytest.fail(f"not ready (exited: {dead})\n{_tail(texts)}")
        time.sleep(0.5)


def _tail(logs: dict[str, str]) -> str:
    return "\n".join(f"== {name}\n{text[-2000:]}" for name, text in logs.items())
