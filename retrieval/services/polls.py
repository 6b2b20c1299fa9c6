"""Polling a stored mailbox: lock it, build the engine's spec, run, record.

Everything here runs the same way from a Celery task, from ``manage.py poll`` and from
a test; the task is only an adapter. The pages and the admin ask for a poll with
``mailbox_poll_request`` (queued after commit).
"""

from __future__ import annotations

import logging
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

# Celery re-exports it from billiard; celery.exceptions would load most of Celery
# and kombu into every process that polls (manage.py poll too).
from billiard.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from accounts.models import User
from retrieval import observability
from retrieval.engine.report import ExitCode, MessageStatus, PollReport
from retrieval.engine.run import poll as engine_poll
from retrieval.models import Mailbox, MessageResult, MultidropRule, PollRun
from retrieval.services import poll_statements
from retrieval.services.failures import (
    JITTER,
    AfterPoll,
    after_poll,
    health_settle,
    jittered,
)
from retrieval.services.hostslots import HeldSlot, host_slot_take
from retrieval.services.kept import kept_listeners, kept_sessions
from retrieval.services.latest_run import latest_run_refresh
from retrieval.services.ports import DatabaseLedger, RecordingTranscript
from retrieval.services.progress import CachedProgress
from retrieval.services.specs import SpecError, mailbox_spec, refuse_command_line_only
from retrieval.services.stats import run_recorded

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator


logger = logging.getLogger(__name__)

# Mailboxes the schedule and new mail leave alone: paused after failures, or
# waiting for a new OAuth2 consent.
OFF_SCHEDULE = (Mailbox.Health.PAUSED, Mailbox.Health.REAUTH)

# Seconds one person waits between two "Poll now" (or two tests) of one mailbox.
ACTION_INTERVAL = 10
# Polls a person asked for and may be following step by step (services/progress.py).
WATCHED_TRIGGERS = frozenset({PollRun.Trigger.MANUAL, PollRun.Trigger.COMMAND})
# Messages a poll reports without fetching them: left alone, or deleted by age.
UNFETCHED = frozenset({MessageStatus.SKIPPED, MessageStatus.EXPIRED})


# --- the lock ----------------------------------------------------------------------


@dataclass
class _Hold:
    """A claimed mailbox: the row, this poll's lease and advisory lock (None
    when not taken); ``released`` once a statement gave them back
    (services/poll_statements.py finish)."""

    mailbox: Mailbox
    owner: str
    advisory_key: int | None
    released: bool = False


@contextmanager
def mailbox_lease(*, mailbox_id: int) -> Iterator[Mailbox | None]:
    """Hold the mailbox for one poll, or yield None when someone else holds it.

    Two locks, for two failure modes:

    1. A lease on the row (conditional UPDATE, with an expiry past the task's hard
       time limit): works on SQLite and PostgreSQL, and shows "polling since" in
       the admin. A killed worker's lease expires by itself.
    2. On PostgreSQL, a session advisory lock on the remote account (host, port,
       user), so two rows naming the same remote mailbox never poll at once; it
       dies with the worker's database connection. Its key is a hash of the
       three taken in SQL, by the statement that takes the lease
       (services/poll_statements.py).
    """
    with _lease(mailbox_id=mailbox_id) as hold:
        yield None if hold is None else hold.mailbox


@contextmanager
def _lease(*, mailbox_id: int) -> Iterator[_Hold | None]:
    owner = uuid.uuid4().hex
    now = timezone.now()
    until = now + timedelta(seconds=settings.FETCH_LEASE_SECONDS)
    if connection.vendor == "postgresql":
        # Lease, row and advisory lock in one statement.
        claimed = poll_statements.claim(
            mailbox_id=mailbox_id, owner=owner, now=now, until=until
        )
        if claimed is None:
            yield None
            return
        if claimed.stolen:
            observability.lease_stolen(mailbox_id)
        key = claimed.advisory_key if claimed.locked else None
        hold = _Hold(claimed.mailbox, owner, key)
        # Not locked: the remote account is being polled through another row.
        busy = not claimed.locked
    else:
        portable = _lease_portable(mailbox_id, owner, now, until)
        if portable is None:
            yield None
            return
        hold, busy = portable, False
    try:
        yield None if busy else hold
    finally:
        if not hold.released:
            _lease_release(mailbox_id, owner, hold.advisory_key)


def _lease_portable(
    mailbox_id: int, owner: str, now: datetime, until: datetime
) -> _Hold | None:
    lease = {"lease_owner": owner, "lease_until": until}
    rows = Mailbox.objects.filter(pk=mailbox_id)
    claimed = rows.filter(lease_until__isnull=True).update(**lease)
    if claimed != 1:
        # Taken over from a holder whose lease expired: its worker was lost.
        claimed = rows.filter(lease_until__lt=now).update(**lease)
        if claimed == 1:
            observability.lease_stolen(mailbox_id)
    if claimed != 1:
        return None
    return _Hold(_leased_mailbox(mailbox_id), owner, None)


def _leased_mailbox(mailbox_id: int) -> Mailbox:
    """The row with its owner, and whether it has multidrop rules, in one query.

    Most mailboxes have none: they get an empty prefetched list, so building
    the spec (rcmap reads ``mailbox.rules``) costs no second query.
    """
    mailbox = (
        Mailbox.objects.select_related("owner")
        .annotate(
            has_rules=Exists(MultidropRule.objects.filter(mailbox=OuterRef("pk")))
        )
        .get(pk=mailbox_id)
    )
    if not mailbox.has_rules:
        poll_statements.rules_none(mailbox)
    return mailbox


# The lease given back and the advisory lock let go in one round trip (a poll's
# service cost is mostly its statements). The UPDATE in the WITH runs whether or
# not the SELECT reads it.
_RELEASE_POSTGRESQL = """
WITH released AS (
    UPDATE {table} SET lease_owner = '', lease_until = NULL
    WHERE id = %s AND lease_owner = %s RETURNING id)
SELECT pg_advisory_unlock(%s)
"""


def _lease_release(mailbox_id: int, owner: str, advisory_key: int | None) -> None:
    """Give the lease back (only this poll's: never another holder's)."""
    if advisory_key is None:
        Mailbox.objects.filter(pk=mailbox_id, lease_owner=owner).update(
            lease_owner="", lease_until=None
        )
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                _sql(_RELEASE_POSTGRESQL, ""), [mailbox_id, owner, advisory_key]
            )
    except Exception:
        # The advisory lock belongs to the session, and the session outlives the
        # task (CONN_MAX_AGE): end it, or the remote account stays locked for
        # every other worker until the connection ages out. The lease expires.
        connection.close()
        raise


# --- the poll ----------------------------------------------------------------------


@dataclass(frozen=True)
class PollSummary:
    mailbox_id: int
    run_id: int | None
    outcome: str
    exit_code: int | None
    delivered: int = 0
    error: str = ""

    def __str__(self) -> str:
        text = f"mailbox {self.mailbox_id}: {self.outcome}"
        if self.run_id is not None:
            text += f" (run {self.run_id}, exit {self.exit_code}, {self.delivered} delivered)"
        return text + (f": {self.error}" if self.error else "")


def _outcome_for(code: ExitCode) -> str:
    # MAXFETCH: the poll stopped at the fetch limit after delivering; more waits.
    if code in (ExitCode.SUCCESS, ExitCode.MAXFETCH):
        return PollRun.Outcome.SUCCESS
    if code is ExitCode.NOMAIL:
        return PollRun.Outcome.NOMAIL
    return PollRun.Outcome.ERROR


class InsideTransaction(RuntimeError):
    """mailbox_poll was called inside ``transaction.atomic``."""


def _require_autocommit() -> None:
    """Refuse to poll inside a transaction: the delete must follow the commit.

    Inside ``transaction.atomic`` the ledger's row is written but not committed
    when the engine sends the delete; a crash (or a rollback) then loses a message
    the server no longer has. Django's TestCase wraps each test in a transaction
    that stands in for autocommit (it marks it, as Django's own durable check
    reads it): only blocks opened by code count.
    """
    if connection.in_atomic_block and not all(
        getattr(block, "_from_testcase", False) for block in connection.atomic_blocks
    ):
        raise InsideTransaction(
            "mailbox_poll must run in autocommit mode, not inside "
            "transaction.atomic: each delivery has to be committed before the "
            "message is deleted from the server. Call it outside the transaction "
            "(or queue it with transaction.on_commit)."
        )


def mailbox_poll(
    *,
    mailbox_id: int,
    trigger: str = PollRun.Trigger.SCHEDULE,
    echo: bool = False,
    clock: Callable[[], datetime] = timezone.now,
) -> PollSummary:
    """Poll one mailbox now, if nobody else is, and record the run.

    Never raises for what a server or listener does: every such fault ends as a
    PollRun with an error in plain words, so the worker goes on to the next mailbox.
    Raises InsideTransaction when called inside ``transaction.atomic``.
    ``clock`` is the engine's (delivery dates, ``delete_after_days``); tests move it.
    """
    _require_autocommit()
    with _lease(mailbox_id=mailbox_id) as hold:
        if hold is None or trigger == PollRun.Trigger.PUSH or _held_in_idle(hold):
            # This poll will see whatever mail is there now: new mail may ask
            # again (mailbox_push_request). Only the IDLE process asks, for the
            # mailboxes it holds: the others have no key to clear, and a poll
            # spares the cache round trip.
            cache.delete(_push_key(mailbox_id))
        if hold is None:
            logger.info("mailbox %s is being polled elsewhere; skipped", mailbox_id)
            return PollSummary(mailbox_id, None, PollRun.Outcome.SKIPPED, None)
        mailbox = hold.mailbox
        if (
            trigger in (PollRun.Trigger.SCHEDULE, PollRun.Trigger.PUSH)
            and mailbox.health in OFF_SCHEDULE
        ):
            # Queued before it was paused (or lost its OAuth2 grant): only a
            # person may poll it now.
            return PollSummary(mailbox_id, None, PollRun.Outcome.SKIPPED, None)
        # mailbox.lease_owner was read after the claim: it is this poll's lease.
        run = PollRun(mailbox=mailbox, trigger=trigger, lease_owner=mailbox.lease_owner)
        with _run_started(run, host=mailbox.host) as slot:
            if slot is None:
                return _postpone(mailbox)
            return _poll_locked(hold, slot, run, echo=echo, clock=clock)


def _held_in_idle(hold: _Hold) -> bool:
    """Does the IDLE process hold this mailbox (push/supervisor.py's choice)?"""
    options = hold.mailbox.options
    user = options.get("user") if isinstance(options, dict) else None
    return isinstance(user, dict) and bool(user.get("idle"))


@contextmanager
def _run_started(run: PollRun, *, host: str) -> Iterator[HeldSlot | None]:
    """A session slot of ``host`` held (services/hostslots.py) and ``run``
    inserted, for the block; None (and no run) when every slot is held."""
    if connection.vendor == "postgresql":
        slot = poll_statements.run_start(run=run, host=host)
    else:
        slot = _run_start_portable(run, host=host)
    if slot is None:
        yield None
        return
    try:
        yield slot
    finally:
        slot.release()


def _run_start_portable(run: PollRun, *, host: str) -> HeldSlot | None:
    if settings.FETCH_MAX_SESSIONS_PER_HOST <= 0:
        slot = HeldSlot(None, "")
    else:
        taken = host_slot_take(host=host)
        if taken is None:
            return None
        slot = HeldSlot(*taken)
    run.save(force_insert=True)
    return slot


POSTPONED = "postponed"


def _postpone(mailbox: Mailbox) -> PollSummary:
    """Every session slot of the host is taken: try again shortly (not a failure,
    so no run is recorded and no backoff counted)."""
    delay = jittered(settings.FETCH_HOST_BUSY_DELAY)
    Mailbox.objects.filter(pk=mailbox.pk).update(
        next_poll_at=timezone.now() + timedelta(seconds=delay)
    )
    logger.info(
        "mailbox %s: %s has FETCH_MAX_SESSIONS_PER_HOST sessions open; postponed",
        mailbox.pk,
        mailbox.host,
    )
    return PollSummary(mailbox.pk, None, POSTPONED, None)


def _poll_locked(
    hold: _Hold,
    slot: HeldSlot,
    run: PollRun,
    *,
    echo: bool,
    clock: Callable[[], datetime],
) -> PollSummary:
    mailbox = hold.mailbox
    outcome: str | None = None
    secrets: tuple[str, ...] = ()
    # Read by the status fragment of "Poll now" (views.mailbox_poll_status). A
    # scheduled or push poll has nobody watching it step by step: its steps
    # would be seven cache round trips in a poll that, empty, takes a few
    # milliseconds of CPU (bench/poll_cpu.py). Should the fragment follow such
    # a run (one that started before the asked-for one), it says "starting…"
    # until the run's result.
    progress = (
        CachedProgress("run", run.pk) if run.trigger in WATCHED_TRIGGERS else None
    )
    ledger = DatabaseLedger(mailbox)
    try:
        # A poll of the service ends when the mailbox is empty: waiting in IDLE
        # inside it would hold a worker (and the lease) until the time limit. On a
        # row, ``idle`` means that the IDLE process (retrieval/push) holds the
        # mailbox and queues a poll on new mail.
        spec = replace(mailbox_spec(mailbox), idle=False)
        refuse_command_line_only(spec)
        secrets = tuple(spec.secrets())
        transcript = RecordingTranscript(
            secrets=secrets, limit=settings.FETCH_TRANSCRIPT_MAX_CHARS, echo=echo
        )
        report = engine_poll(
            spec,
            ledger=ledger,
            transcript=transcript,
            clock=clock,
            progress=progress,
            kept=kept_sessions(),
            listeners=kept_listeners(),
        )
    except SpecError as exc:
        transcript = RecordingTranscript(secrets=secrets, limit=1000)
        report = PollReport(
            exit_code=exc.exit_code, error=str(exc), permanent=exc.permanent
        )
    except SoftTimeLimitExceeded:
        # Celery's soft limit, not a bug: say so, and end before the hard limit
        # kills the worker. Deliveries so far are in the ledger; the rest stays on
        # the server for the next poll. The wire talk went with the engine's stack.
        logger.warning("poll of mailbox %s hit the soft time limit", mailbox.pk)
        transcript = RecordingTranscript(secrets=secrets, limit=1000)
        outcome = PollRun.Outcome.TIMEOUT
        report = PollReport(
            exit_code=ExitCode.UNDEFINED,
            error=(
                f"The poll took longer than {settings.FETCH_SOFT_LIMIT} s and was "
                "stopped. Messages delivered before that are recorded; the others "
                "stay on the server for the next poll."
            ),
        )
    except Exception:
        # A bug, not a server fault: record it (without the secret) and go on.
        logger.exception("poll of mailbox %s failed unexpectedly", mailbox.pk)
        transcript = RecordingTranscript(secrets=secrets, limit=1000)
        report = PollReport(
            exit_code=ExitCode.UNDEFINED,
            error="fetchweb failed unexpectedly; the administrator can see the log.",
        )
    finally:
        ledger.close()
    _fill(run, report, transcript, outcome=outcome)
    now = timezone.now()
    after = after_poll(mailbox=mailbox, run=run, permanent=report.permanent, now=now)
    _record(hold, slot, run, after, _results(report, transcript))
    health_settle(mailbox=mailbox, after=after, now=now)
    if progress is not None:
        progress.clear()  # the run's own record says the rest
    observability.poll_finished(mailbox, run, report)
    logger.info(
        "mailbox %s polled: exit %s, %s delivered%s",
        mailbox.pk,
        int(report.exit_code),
        report.delivered,
        f", error: {transcript.mask(report.error)}" if report.error else "",
    )
    return PollSummary(
        mailbox.pk,
        run.pk,
        run.outcome,
        run.exit_code,
        delivered=run.delivered,
        error=run.error,
    )


def _fill(
    run: PollRun,
    report: PollReport,
    transcript: RecordingTranscript,
    *,
    outcome: str | None = None,
) -> None:
    """What the run records, on the instance (``_record`` writes it).
    ``outcome``: one that no fetchmail exit status names (a time limit); the
    run then has no exit code."""
    run.finished_at = timezone.now()
    run.exit_code = int(report.exit_code) if outcome is None else None
    run.outcome = outcome or _outcome_for(report.exit_code)
    run.fetched = sum(1 for m in report.messages if m.status not in UNFETCHED)
    run.delivered = report.delivered
    run.deleted = report.deleted
    run.bytes_fetched = report.bytes_fetched
    run.greeting = transcript.mask(report.greeting)[:2000]
    run.error = transcript.mask(report.error)
    notes = [f"*: note: {transcript.mask(n)}" for n in report.notes]
    run.transcript = "\n".join([transcript.text(), *notes]).strip()


def _record(
    hold: _Hold,
    slot: HeldSlot,
    run: PollRun,
    after: AfterPoll,
    results: list[poll_statements.ResultRow],
) -> None:
    """Write the run and its messages' ``results``, its counters
    (services/stats.py), the mailbox's last run (services/latest_run.py),
    failure counts and next poll (``after``, services/failures.py); on
    PostgreSQL in one statement, with the lease, slot and lock given back."""
    if connection.vendor == "postgresql" and hold.advisory_key is not None:
        poll_statements.finish(
            run=run,
            mailbox_values=after.values,
            lease_owner=hold.owner,
            advisory_key=hold.advisory_key,
            slot=slot,
            results=results,
        )
        hold.released = True
        return
    # An empty poll (the usual one) skips bulk_create, which would still open a
    # transaction (two round trips) to insert nothing.
    if results:
        MessageResult.objects.bulk_create(
            MessageResult(
                run=run, **dict(zip(poll_statements.RESULT_FIELDS, row, strict=True))
            )
            for row in results
        )
    run.save(update_fields=poll_statements.RECORDED_FIELDS)
    run_recorded(run=run)
    latest_run_refresh(mailboxes=[run.mailbox_id])
    Mailbox.objects.filter(pk=run.mailbox_id).update(**after.values)


def _results(
    report: PollReport, transcript: RecordingTranscript
) -> list[poll_statements.ResultRow]:
    """One row per message of the report, as plain values."""
    mask = transcript.mask
    return [
        (
            m.folder,
            m.uid[:255],
            m.message_id[:998],
            m.size,
            list(m.recipients),
            str(m.status),
            mask(m.listener_reply)[:2000],
            m.deleted,
        )
        for m in report.messages
    ]


# --- the schedule ------------------------------------------------------------------

WORKER_LOST = (
    "The worker running this poll stopped before it finished (it was killed at "
    "the hard time limit, ran out of memory, or its host went away). Messages it "
    "had recorded as delivered are not fetched again; the others stay on the "
    "server for the next poll."
)


def runs_close_lost(*, now: datetime | None = None) -> int:
    """Close the runs still "running" whose worker is gone; returns how many.

    A run is alive while its mailbox holds the run's lease, unexpired. A killed
    worker never releases it, so it expires (past the hard time limit); a worker
    that died after releasing it, or whose expired lease a new poll took, has
    lost it at once.
    """
    now = now or timezone.now()
    alive = Q(mailbox__lease_owner=F("lease_owner"), mailbox__lease_until__gte=now)
    lost = PollRun.objects.filter(outcome=PollRun.Outcome.RUNNING).exclude(alive)
    # Each run is closed by a conditional UPDATE: a run that finishes meanwhile
    # keeps its own outcome.
    closed = 0
    mailbox_ids = set()
    for pk, mailbox_id in list(lost.values_list("pk", "mailbox_id")):
        done = PollRun.objects.filter(pk=pk, outcome=PollRun.Outcome.RUNNING).update(
            outcome=PollRun.Outcome.LOST,
            finished_at=now,
            exit_code=None,
            error=WORKER_LOST,
        )
        closed += done
        if done:
            mailbox_ids.add(mailbox_id)
    if closed:
        latest_run_refresh(mailboxes=mailbox_ids)
        logger.warning("closed %s poll run(s) whose worker was lost", closed)
    return closed


# The claim: one statement per batch, which picks the due rows and moves each
# one's next poll on (interval less up to JITTER of it, a safety net should the queued task be
# lost; the poll sets the real next time when it ends). PostgreSQL skips rows
# another transaction holds (a lease being taken, a concurrent dispatcher);
# SQLite (>= 3.35 for RETURNING) serializes writers, which does the same.
# ARRAY(...) runs the LIMIT once: as a plain ``IN (subquery)`` PostgreSQL may plan
# a join that scans the subquery again while the UPDATE moves rows out of it,
# claiming more than the batch (seen: 50 rows for a LIMIT of 10).
_CLAIM_POSTGRESQL = """
UPDATE {table} SET next_poll_at = %s + poll_interval
    * (%s + %s * random()) * interval '1 second'
WHERE id = ANY(ARRAY(
    SELECT id FROM {table}
    WHERE enabled AND health NOT IN (%s, %s)
      AND owner_id IN (SELECT id FROM {users} WHERE is_active)
      AND (next_poll_at IS NULL OR next_poll_at <= %s)
      AND (lease_until IS NULL OR lease_until < %s)
    ORDER BY next_poll_at NULLS FIRST
    LIMIT %s
    FOR UPDATE SKIP LOCKED))
RETURNING id
"""
_CLAIM_SQLITE = """
UPDATE {table} SET next_poll_at = strftime('%%Y-%%m-%%d %%H:%%M:%%f', %s,
    '+' || (poll_interval * (%s + %s * ((random() & 1048575) / 1048576.0)))
    || ' seconds')
WHERE id IN (
    SELECT id FROM {table}
    WHERE enabled AND health NOT IN (%s, %s)
      AND owner_id IN (SELECT id FROM {users} WHERE is_active)
      AND (next_poll_at IS NULL OR next_poll_at <= %s)
      AND (lease_until IS NULL OR lease_until < %s)
    ORDER BY next_poll_at
    LIMIT %s)
RETURNING id
"""
# A mailbox never polled (a new one, or thousands imported at once) gets a first
# poll time spread over its interval, instead of all of them falling due at once.
_SPREAD_POSTGRESQL = """
UPDATE {table} SET next_poll_at = %s + poll_interval * random() * interval '1 second'
WHERE next_poll_at IS NULL AND enabled
"""
_SPREAD_SQLITE = """
UPDATE {table} SET next_poll_at = strftime('%%Y-%%m-%%d %%H:%%M:%%f', %s,
    '+' || (poll_interval * ((random() & 1048575) / 1048576.0)) || ' seconds')
WHERE next_poll_at IS NULL AND enabled
"""


def _sql(postgresql: str, sqlite: str) -> str:
    table = connection.ops.quote_name(Mailbox._meta.db_table)
    users = connection.ops.quote_name(User._meta.db_table)
    text = postgresql if connection.vendor == "postgresql" else sqlite
    return text.format(table=table, users=users)


def mailboxes_spread_new(*, now: datetime | None = None) -> int:
    """Give every mailbox never polled a first poll within its interval (one
    statement); returns how many."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _sql(_SPREAD_POSTGRESQL, _SPREAD_SQLITE),
            [connection.ops.adapt_datetimefield_value(now)],
        )
        return max(cursor.rowcount, 0)


def mailboxes_claim_due(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Ids of up to ``limit`` mailboxes due for a poll, claimed in one statement.

    Due: enabled, not paused (needs attention), its owner not disabled
    (services.people), next poll time passed (or never set), and no lease held: a mailbox being polled is never dispatched again.
    Claiming moves each one's next poll on (jittered), which makes a duplicate
    dispatcher harmless: the second one finds nothing due. If the queued task is
    lost, the mailbox is due again after one interval.
    """
    now = now or timezone.now()
    at = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(
            _sql(_CLAIM_POSTGRESQL, _CLAIM_SQLITE),
            [at, 1 - JITTER, JITTER, *OFF_SCHEDULE, at, at, limit],
        )
        return [row[0] for row in cursor.fetchall()]


def mailboxes_dispatch(
    *, now: datetime | None = None, batch: int | None = None, batches: int | None = None
) -> list[int]:
    """One dispatcher tick: spread new mailboxes, then claim due ones in batches
    (at most ``batches`` statements of ``batch``)."""
    now = now or timezone.now()
    batch = batch or settings.FETCH_DISPATCH_BATCH
    mailboxes_spread_new(now=now)
    claimed: list[int] = []
    for _ in range(batches or settings.FETCH_DISPATCH_MAX_BATCHES):
        ids = mailboxes_claim_due(now=now, limit=batch)
        claimed += ids
        if len(ids) < batch:
            break
    return claimed


# --- asking for a poll (the pages, the admin) ------------------------------------------


def action_allowed(*, user: User, mailbox: Mailbox, action: str) -> bool:
    """True at most once per ACTION_INTERVAL for one person, mailbox and action."""
    key = f"fetchweb:{action}:{user.pk}:{mailbox.pk}"
    return bool(cache.add(key, 1, timeout=ACTION_INTERVAL))


def mailbox_poll_request(*, mailbox: Mailbox) -> None:
    """Queue a poll now, once the surrounding transaction (if any) has committed."""
    mailboxes_poll_request(mailbox_ids=[mailbox.pk])


def mailboxes_poll_request(*, mailbox_ids: Iterable[int]) -> int:
    """Queue a poll of each mailbox after commit; returns how many were queued."""
    from retrieval.tasks import poll_mailbox as poll_mailbox_task

    count = 0
    for pk in mailbox_ids:
        transaction.on_commit(partial(poll_mailbox_task.delay, pk, "manual"))
        count += 1
    return count


# --- new mail (the IDLE process, retrieval/push) -----------------------------------------


def _push_key(mailbox_id: int) -> str:
    return f"fetchweb:push-pending:{mailbox_id}"


def mailbox_push_request(*, mailbox_id: int) -> bool:
    """New mail: queue a poll with trigger "push" (the "push" queue), unless one
    is pending already; True when this call queued it.

    Coalesced by a cache key (the shared cache: Redis, or files on one host),
    set here and removed when any poll of the mailbox starts (``mailbox_poll``):
    a burst of EXISTS gives one poll, and mail that comes once a poll has started
    asks again. The key expires after FETCH_IDLE_PENDING_SECONDS in case the task
    is lost; a duplicate then finds the mailbox locked or nothing new.
    """
    from retrieval.tasks import poll_mailbox as poll_mailbox_task

    if not cache.add(
        _push_key(mailbox_id), 1, timeout=settings.FETCH_IDLE_PENDING_SECONDS
    ):
        return False
    transaction.on_commit(
        partial(poll_mailbox_task.delay, mailbox_id, PollRun.Trigger.PUSH)
    )
    return True
