"""Connection tests (issue 11): log in and out as a poll would, fetch nothing.

A page asks (``connection_test_request``: recorded, queued after commit, never
waiting on the network); a worker on the interactive queue runs it
(``connection_test_run``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from retrieval.engine.probe import LoginCheck, check_login
from retrieval.models import ConnectionTest, Mailbox
from retrieval.services.ports import RecordingTranscript
from retrieval.services.progress import CachedProgress
from retrieval.services.specs import SpecError, mailbox_spec

if TYPE_CHECKING:
    from retrieval.engine.ports import Progress

logger = logging.getLogger(__name__)

# Seconds for each network wait of a connection test: someone watches the page.
PROBE_TIMEOUT = 15.0
PROBE_TRANSCRIPT_CHARS = 20_000

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


def connection_test_run(*, probe_id: int) -> str:
    """Run one queued connection test (the worker's side); returns a summary."""
    claimed = ConnectionTest.objects.filter(
        pk=probe_id, status=ConnectionTest.Status.QUEUED
    ).update(status=ConnectionTest.Status.RUNNING, started_at=timezone.now())
    if not claimed:
        return f"connection test {probe_id}: not queued (gone or already run)"
    probe = ConnectionTest.objects.select_related("mailbox__owner").get(pk=probe_id)
    progress = CachedProgress("test", probe_id)  # read by the page that follows it
    try:
        result, transcript = mailbox_login_check(
            mailbox=probe.mailbox, progress=progress
        )
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
    progress.clear()
    return f"connection test {probe_id}: {'ok' if ok else 'failed'}"


def mailbox_login_check(
    *, mailbox: Mailbox, progress: Progress | None = None
) -> tuple[LoginCheck, str]:
    """Log in to the remote server and out again, as a poll would; nothing is
    fetched or recorded. Returns the answer and the masked transcript;
    ``progress`` is told the session's steps."""
    try:
        spec = mailbox_spec(mailbox)
    except SpecError as exc:
        return LoginCheck(ok=False, greeting="", error=str(exc)), ""
    timeout = min(spec.server.timeout, PROBE_TIMEOUT)
    spec = replace(spec, server=replace(spec.server, timeout=timeout))
    transcript = RecordingTranscript(
        secrets=(spec.password.reveal(),) if spec.password else (),
        limit=PROBE_TRANSCRIPT_CHARS,
    )
    return check_login(spec, transcript, progress), transcript.text()
