"""Polling a stored mailbox: lock it, build the engine's spec, run, record.

Everything here runs the same way from a Celery task, from ``manage.py poll`` and from
a test; the task is only an adapter.
"""

from __future__ import annotations

import logging
import uuid
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import Domain, User
from retrieval import netpolicy, observability, rcmap
from retrieval.crypto import DecryptionError
from retrieval.engine.redact import WITHHELD, SecretMatcher
from retrieval.engine.report import ExitCode, PollReport
from retrieval.engine.run import poll as engine_poll
from retrieval.models import (
    ConnectionTest,
    Mailbox,
    MessageResult,
    PollRun,
    SeenMessage,
)
from retrieval.rcfile.env import Environment
from retrieval.rcfile.specs import user_spec

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator

    from django.db.models import QuerySet

    from retrieval.engine import spec as engine_spec
    from retrieval.engine.ports import Direction
    from retrieval.rcfile.model import ServerOptions, UserOptions

logger = logging.getLogger(__name__)

MASK = "********"


# --- the engine's ports, on the ORM ----------------------------------------------


class DatabaseLedger:
    """The engine's Ledger on SeenMessage rows.

    Django runs in autocommit mode here (``mailbox_poll`` refuses to run inside a
    transaction), so ``mark_delivered`` has committed when it returns: the engine
    deletes from the server only after that.
    """

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    def _rows(self, folder: str, uidvalidity: int | None) -> QuerySet[SeenMessage]:
        return SeenMessage.objects.filter(
            mailbox=self.mailbox, folder=folder, uidvalidity=uidvalidity or 0
        )

    def delivered_uids(self, folder: str, uidvalidity: int | None) -> set[str]:
        rows = self._rows(folder, uidvalidity).filter(complete=True)
        return set(rows.values_list("uid", flat=True))

    def mark_delivered(
        self, folder: str, uidvalidity: int | None, uid: str, message_id: str = ""
    ) -> None:
        SeenMessage.objects.update_or_create(
            mailbox=self.mailbox,
            folder=folder,
            uidvalidity=uidvalidity or 0,
            uid=uid,
            defaults={"complete": True},
            create_defaults={"message_id": message_id[:998], "complete": True},
        )

    def delivered_recipients(
        self, folder: str, uidvalidity: int | None, uid: str
    ) -> set[str]:
        row = self._rows(folder, uidvalidity).filter(uid=uid).first()
        return set(row.recipients) if row is not None else set()

    def mark_recipients_delivered(
        self,
        folder: str,
        uidvalidity: int | None,
        uid: str,
        recipients: Collection[str],
    ) -> None:
        with transaction.atomic():
            row, _ = SeenMessage.objects.select_for_update().get_or_create(
                mailbox=self.mailbox,
                folder=folder,
                uidvalidity=uidvalidity or 0,
                uid=uid,
                defaults={"complete": False},
            )
            row.recipients = sorted(set(row.recipients) | set(recipients))
            row.save(update_fields=["recipients"])

    def last_uidvalidity(self, folder: str) -> int | None:
        latest = (
            SeenMessage.objects.filter(mailbox=self.mailbox, folder=folder)
            .order_by("-delivered_at", "-id")
            .values_list("uidvalidity", flat=True)
            .first()
        )
        return latest or None

    def forget_missing(
        self, folder: str, uidvalidity: int | None, present: set[str]
    ) -> None:
        known = set(self._rows(folder, uidvalidity).values_list("uid", flat=True))
        gone = known - present
        gone_list = sorted(gone)
        for start in range(0, len(gone_list), 500):
            self._rows(folder, uidvalidity).filter(
                uid__in=gone_list[start : start + 500]
            ).delete()


class RecordingTranscript:
    """Collects the wire talk for the PollRun, bounded, with secrets checked again.

    The engine masks what it sends and withholds lines that echo a secret; the
    same check here (never a substring replacement, which would show where the
    secret sat) means nothing that slipped past it reaches the database or log.
    """

    def __init__(
        self, *, secrets: tuple[str, ...], limit: int, echo: bool = False
    ) -> None:
        self._secrets = SecretMatcher(secrets)
        self._limit = limit
        self._size = 0
        self._truncated = False
        self.lines: list[str] = []
        self.echo = echo

    def mask(self, text: str) -> str:
        """``text``, or a fixed note in its place when it carries a secret."""
        return self._secrets.scrub(text)

    def record(self, direction: Direction, text: str) -> None:
        line = f"{direction}: {self._secrets.scrub(text, WITHHELD[direction])}"
        if self.echo:
            print(line, flush=True)  # noqa: T201  (manage.py poll -v)
        if self._size + len(line) > self._limit:
            if not self._truncated:
                self.lines.append("*: (transcript truncated)")
                self._truncated = True
            return
        self._size += len(line) + 1
        self.lines.append(line)

    def text(self) -> str:
        return "\n".join(self.lines)


# --- the lock ----------------------------------------------------------------------


def _remote_key(mailbox: Mailbox) -> int:
    """A 63-bit key for the remote account, shared by every row naming it."""
    ident = f"{mailbox.host.lower()}|{mailbox.port or 0}|{mailbox.username}".encode()
    return (zlib.crc32(ident) << 31) ^ zlib.adler32(ident)


@contextmanager
def mailbox_lease(mailbox_id: int) -> Iterator[Mailbox | None]:
    """Hold the mailbox for one poll, or yield None when someone else holds it.

    Two locks, for two failure modes:

    1. A lease on the row (conditional UPDATE, with an expiry past the task's hard
       time limit): works on SQLite and PostgreSQL, and shows "polling since" in
       the admin. A killed worker's lease expires by itself.
    2. On PostgreSQL, a session advisory lock on the remote account (host, port,
       user), so two rows naming the same remote mailbox never poll at once; it
       dies with the worker's database connection.
    """
    owner = uuid.uuid4().hex
    now = timezone.now()
    lease = {
        "lease_owner": owner,
        "lease_until": now + timedelta(seconds=settings.FETCH_LEASE_SECONDS),
    }
    rows = Mailbox.objects.filter(pk=mailbox_id)
    claimed = rows.filter(lease_until__isnull=True).update(**lease)
    if claimed != 1:
        # Taken over from a holder whose lease expired: its worker was lost.
        claimed = rows.filter(lease_until__lt=now).update(**lease)
        if claimed == 1:
            observability.lease_stolen(mailbox_id)
    if claimed != 1:
        yield None
        return
    advisory_key: int | None = None
    try:
        mailbox = Mailbox.objects.select_related("owner").get(pk=mailbox_id)
        if connection.vendor == "postgresql":
            key = _remote_key(mailbox)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
                if not cursor.fetchone()[0]:
                    yield None
                    return
            advisory_key = key
        yield mailbox
    finally:
        if advisory_key is not None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [advisory_key])
        Mailbox.objects.filter(pk=mailbox_id, lease_owner=owner).update(
            lease_owner="", lease_until=None
        )


# --- building the spec -------------------------------------------------------------


class SpecError(Exception):
    """The mailbox's settings cannot be turned into a poll; the text says why."""


BSMTP_STDOUT = (
    "bsmtp '-' writes to standard output, which only the command line has; name "
    "a file for the web service."
)


def _refuse_command_line_only(spec: engine_spec.MailboxSpec) -> None:
    """What only makes sense for ``python -m retrieval.engine``."""
    if spec.delivery.bsmtp == "-":
        raise SpecError(BSMTP_STDOUT)


def _refuse_server_commands(mailbox: Mailbox, s: ServerOptions, u: UserOptions) -> None:
    """The run-time guard beside the importer's: commands are for superusers only."""
    if mailbox.owner.is_superuser:
        if mailbox.delivery_kind == Mailbox.DeliveryKind.MDA and u.mda is None:
            raise SpecError("Delivery to a program is chosen but no command is set.")
        return
    names = list(rcmap.commands_in(s, u))
    if mailbox.delivery_kind == Mailbox.DeliveryKind.MDA and "mda" not in names:
        names.insert(0, "mda")
    if names:
        raise SpecError(
            f"This mailbox asks to run commands on the server ({', '.join(names)}); "
            "only a mailbox of an administrator (superuser) may do that."
        )


def mailbox_spec(mailbox: Mailbox) -> engine_spec.MailboxSpec:
    """The engine's frozen view of one row, built as for an rcfile entry.

    Decrypts the password. The recipient is the owner's address unless the row
    names one (``recipient``, multidrop rules).
    """
    try:
        g, s, u = rcmap.mailbox_to_rc(mailbox, with_password=True)
    except DecryptionError as exc:
        raise SpecError(f"The stored password cannot be read: {exc}") from exc
    _refuse_server_commands(mailbox, s, u)
    spec = user_spec(g, s, u, Environment.fixed(mailbox.owner.email))
    timeout = min(spec.server.timeout, float(settings.FETCH_TIMEOUT))
    server = replace(spec.server, timeout=timeout)
    if not (mailbox.owner.is_superuser or settings.FETCH_ALLOW_PRIVATE_HOSTS):
        try:
            netpolicy.check_destination(server.host, server.effective_port)
        except netpolicy.DestinationRefused as exc:
            raise SpecError(str(exc)) from exc
        server = replace(server, public_only=True)
    recipients = spec.delivery.recipients
    if not recipients or not (u.smtpname or u.localnames):
        recipients = (mailbox.delivery_address,)
    delivery = replace(spec.delivery, recipients=recipients, timeout=timeout)
    return replace(spec, server=server, delivery=delivery)


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
) -> PollSummary:
    """Poll one mailbox now, if nobody else is, and record the run.

    Never raises for what a server or listener does: every such fault ends as a
    PollRun with an error in plain words, so the worker goes on to the next mailbox.
    Raises InsideTransaction when called inside ``transaction.atomic``.
    """
    _require_autocommit()
    with mailbox_lease(mailbox_id) as mailbox:
        if mailbox is None:
            logger.info("mailbox %s is being polled elsewhere; skipped", mailbox_id)
            return PollSummary(mailbox_id, None, PollRun.Outcome.SKIPPED, None)
        return _poll_locked(mailbox, trigger=trigger, echo=echo)


def _poll_locked(mailbox: Mailbox, *, trigger: str, echo: bool) -> PollSummary:
    # mailbox.lease_owner was read after the claim: it is this poll's lease.
    run = PollRun.objects.create(
        mailbox=mailbox, trigger=trigger, lease_owner=mailbox.lease_owner
    )
    outcome: str | None = None
    secrets: tuple[str, ...] = ()
    try:
        spec = mailbox_spec(mailbox)
        _refuse_command_line_only(spec)
        secrets = tuple(
            s.reveal() for s in (spec.password, spec.delivery.esmtp_password) if s
        )
        transcript = RecordingTranscript(
            secrets=secrets, limit=settings.FETCH_TRANSCRIPT_MAX_CHARS, echo=echo
        )
        report = engine_poll(
            spec, ledger=DatabaseLedger(mailbox), transcript=transcript
        )
    except SpecError as exc:
        transcript = RecordingTranscript(secrets=secrets, limit=1000)
        report = PollReport(exit_code=ExitCode.SYNTAX, error=str(exc))
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
    _record(run, report, transcript, outcome=outcome)
    observability.poll_finished(mailbox, run, report)
    now = timezone.now()
    Mailbox.objects.filter(pk=mailbox.pk).update(next_poll_at=mailbox.next_after(now))
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


def _record(
    run: PollRun,
    report: PollReport,
    transcript: RecordingTranscript,
    *,
    outcome: str | None = None,
) -> None:
    """``outcome``: one that no fetchmail exit status names (a time limit); the
    run then has no exit code."""
    run.finished_at = timezone.now()
    run.exit_code = int(report.exit_code) if outcome is None else None
    run.outcome = outcome or _outcome_for(report.exit_code)
    run.fetched = sum(1 for m in report.messages if m.status != "skipped")
    run.delivered = report.delivered
    run.deleted = report.deleted
    run.bytes_fetched = report.bytes_fetched
    run.greeting = transcript.mask(report.greeting)[:2000]
    run.error = transcript.mask(report.error)
    notes = [f"*: note: {transcript.mask(n)}" for n in report.notes]
    run.transcript = "\n".join([transcript.text(), *notes]).strip()
    run.save()
    MessageResult.objects.bulk_create(
        MessageResult(
            run=run,
            folder=m.folder,
            uid=m.uid[:255],
            message_id=m.message_id[:998],
            size=m.size,
            recipients=list(m.recipients),
            status=str(m.status),
            listener_reply=transcript.mask(m.listener_reply)[:2000],
            deleted=m.deleted,
        )
        for m in report.messages
    )


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
    for pk in list(lost.values_list("pk", flat=True)):
        closed += PollRun.objects.filter(pk=pk, outcome=PollRun.Outcome.RUNNING).update(
            outcome=PollRun.Outcome.LOST,
            finished_at=now,
            exit_code=None,
            error=WORKER_LOST,
        )
    if closed:
        logger.warning("closed %s poll run(s) whose worker was lost", closed)
    return closed


def mailboxes_claim_due(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Ids of mailboxes due for a poll, each claimed by moving its next poll on.

    Claiming (a conditional UPDATE per row) makes a duplicate dispatcher harmless:
    the second one finds nothing due. If the queued task is lost, the mailbox is due
    again after one interval.
    """
    now = now or timezone.now()
    due = (
        Mailbox.objects.filter(enabled=True)
        .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .order_by("next_poll_at")
        .values_list("pk", "next_poll_at", "poll_interval")[:limit]
    )
    claimed: list[int] = []
    for pk, previous, interval in due:
        moved = Mailbox.objects.filter(pk=pk, next_poll_at=previous).update(
            next_poll_at=now + timedelta(seconds=interval)
        )
        if moved == 1:
            claimed.append(pk)
    return claimed


# --- quotas (issue 11) ----------------------------------------------------------------


class QuotaExceeded(Exception):
    """A new mailbox would pass a quota; the text says which, in plain words."""


def _mailboxes(count: int) -> str:
    return f"{count} mailbox" if count == 1 else f"{count} mailboxes"


def mailbox_quota_refusal(
    *, owner: User, creator: User, domain: Domain | None = None
) -> str:
    """Why ``creator`` may not add one more mailbox for ``owner`` (in ``domain``,
    by default the owner's); "" if they may.

    FETCH_MAX_MAILBOXES_PER_USER counts the owner's mailboxes,
    FETCH_MAX_MAILBOXES_PER_DOMAIN those of the domain (0: no limit). A
    superuser's additions are not limited: they set the limits.
    """
    domain = domain if domain is not None else owner.domain
    if creator.is_superuser:
        return ""
    per_user = settings.FETCH_MAX_MAILBOXES_PER_USER
    if per_user and Mailbox.objects.filter(owner=owner).count() >= per_user:
        whose = "You have" if owner.pk == creator.pk else f"{owner.email} has"
        return (
            f"{whose} {_mailboxes(per_user)}, the most one person may have here. "
            "Delete one first, or ask an administrator to raise the limit."
        )
    per_domain = settings.FETCH_MAX_MAILBOXES_PER_DOMAIN
    if (
        per_domain
        and domain is not None
        and Mailbox.objects.filter(domain=domain).count() >= per_domain
    ):
        return (
            f"The domain {domain.name} has {_mailboxes(per_domain)}, the most one "
            "domain may have here. Delete one first, or ask an administrator to "
            "raise the limit."
        )
    return ""


def mailbox_quota_check(
    *, owner: User, creator: User, domain: Domain | None = None
) -> None:
    """The same, inside the creating transaction: the owner's row (and the
    domain's) is locked first, so two requests at once cannot both take the
    last place."""
    domain = domain if domain is not None else owner.domain
    User.objects.select_for_update().filter(pk=owner.pk).first()
    if domain is not None:
        Domain.objects.select_for_update().filter(pk=domain.pk).first()
    refusal = mailbox_quota_refusal(owner=owner, creator=creator, domain=domain)
    if refusal:
        raise QuotaExceeded(refusal)


# --- connection tests (issue 11) ------------------------------------------------------

# Seconds after which a test still queued or running is taken as lost (a worker
# died, the broker dropped it): it no longer counts against its requester.
PROBE_STALE_SECONDS = 300
PROBES_KEPT = 20  # per mailbox; older tests are deleted when a new one is asked for


class ProbeLimit(Exception):
    """The person has as many connection tests waiting or running as allowed."""


def connection_test_request(*, mailbox: Mailbox, user: User) -> ConnectionTest:
    """Record a connection test and queue it after commit; never waits on the
    network. At most FETCH_MAX_PROBES_PER_USER per person are queued or running."""
    from retrieval.tasks import probe_connection

    with transaction.atomic():
        # Serialize one person's requests, so two clicks cannot both pass the count.
        User.objects.select_for_update().filter(pk=user.pk).first()
        since = timezone.now() - timedelta(seconds=PROBE_STALE_SECONDS)
        pending = ConnectionTest.objects.filter(
            requested_by=user,
            status__in=(ConnectionTest.Status.QUEUED, ConnectionTest.Status.RUNNING),
            created_at__gte=since,
        ).count()
        limit = settings.FETCH_MAX_PROBES_PER_USER
        if pending >= limit:
            raise ProbeLimit(
                f"You have {pending} connection tests waiting or running, the most "
                "at once: wait for one to finish."
            )
        probe = ConnectionTest.objects.create(mailbox=mailbox, requested_by=user)
        # The history of tests is for looking at the last few, not an archive.
        old = ConnectionTest.objects.filter(mailbox=mailbox).order_by("-created_at")
        ConnectionTest.objects.filter(
            pk__in=list(old.values_list("pk", flat=True)[PROBES_KEPT:])
        ).delete()
        transaction.on_commit(partial(probe_connection.delay, probe.pk))
    return probe


def connection_test_run(probe_id: int) -> str:
    """Run one queued connection test (the worker's side); returns a summary."""
    from retrieval.editing import mailbox_login_check

    claimed = ConnectionTest.objects.filter(
        pk=probe_id, status=ConnectionTest.Status.QUEUED
    ).update(status=ConnectionTest.Status.RUNNING, started_at=timezone.now())
    if not claimed:
        return f"connection test {probe_id}: not queued (gone or already run)"
    probe = ConnectionTest.objects.select_related("mailbox__owner").get(pk=probe_id)
    try:
        result, transcript = mailbox_login_check(mailbox=probe.mailbox)
        ok, greeting, error = result.ok, result.greeting, result.error
    except Exception:
        # A bug, not a server fault: say so on the page, keep the details in the log.
        logger.exception("connection test %s failed unexpectedly", probe_id)
        ok, greeting, transcript = False, "", ""
        error = "fetchweb failed unexpectedly; the administrator can see the log."
    ConnectionTest.objects.filter(pk=probe_id).update(
        status=ConnectionTest.Status.DONE,
        finished_at=timezone.now(),
        ok=ok,
        greeting=greeting[:2000],
        error=error,
        transcript=transcript,
    )
    return f"connection test {probe_id}: {'ok' if ok else 'failed'}"
