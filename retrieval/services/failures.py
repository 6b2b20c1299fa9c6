"""What a failed poll means for the mailbox: when to try again, and when to stop.

* Every next poll is the interval less up to JITTER (10 %) of it, so mailboxes
  added together do not stay in step; jitter only ever makes a poll early, never
  late, so the schedule's spread spends none of a poll's lateness allowance.
* A failing mailbox backs off: interval x 2^(failures - 1), capped at
  FETCH_BACKOFF_MAX (24 h by default), then jittered the same way (so mailboxes
  at the cap stay apart too, and none waits longer than the cap); the first
  success resets it.
* A failure that waiting cannot cure (``classify``: wrong password, unusable
  settings, a certificate that does not verify, a host name that has not resolved
  for a day) counts towards a pause: after FETCH_PAUSE_AFTER of them the mailbox
  "needs attention" and the schedule leaves it alone until someone resumes it.
* The state people are told about (Mailbox.health: ok, failing, paused) changes
  by a conditional UPDATE from the state read before; only the writer that made
  the change queues the alert, so each change is announced once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from retrieval.engine.report import ExitCode
from retrieval.models import Mailbox, PollRun

JITTER = 0.1
# A host name that does not resolve may be a passing DNS fault; for a day, it is
# a name that no longer exists.
DNS_PERMANENT_AFTER = timedelta(days=1)
# The start of the engine's message for a certificate that did not verify
# (retrieval/engine/tls.py describe_ssl_error); the report carries no class.


def jittered(seconds: float, rng: random.Random | None = None) -> float:
    """``seconds`` less up to JITTER of it: spread, but never later than asked."""
    return seconds * (rng or random).uniform(1 - JITTER, 1)


def backoff_seconds(
    interval: int, failures: int, rng: random.Random | None = None
) -> float:
    """Seconds to the next poll after ``failures`` consecutive failed polls (0: the
    mailbox works): interval, 2 x interval, 4 x ..., jittered, at most
    FETCH_BACKOFF_MAX."""
    base = interval * 2 ** min(max(failures - 1, 0), 32)
    return jittered(min(base, float(settings.FETCH_BACKOFF_MAX)), rng)


@dataclass(frozen=True)
class Failure:
    permanent: bool
    kind: str  # a short name: authentication, configuration, certificate, dns, ...
    explanation: str  # plain words for the owner


# The one mapping from the engine's report to "will waiting help?".
PERMANENT_CODES = {
    ExitCode.AUTHFAIL: (
        "authentication",
        "The server refused the user name or password. Check them on the mailbox "
        "page (or the server's settings for this account), then resume polling.",
    ),
    ExitCode.SYNTAX: (
        "configuration",
        "The mailbox's settings cannot be used as they are. Correct them on the "
        "mailbox page, then resume polling.",
    ),
}


def classify(
    *,
    exit_code: int | None,
    permanent: bool,
    failing_since: datetime | None,
    now: datetime,
) -> Failure:
    """Is this failed poll one that retrying later cannot cure? The engine says
    (``PollReport.permanent``, from its error hierarchy); this adds the words and
    the one rule of our own: a name unknown counts only after a day of it."""
    code = (
        ExitCode(exit_code)
        if exit_code is not None and exit_code in ExitCode._value2member_map_
        else None
    )
    if code in PERMANENT_CODES:
        kind, text = PERMANENT_CODES[code]
        return Failure(permanent=True, kind=kind, explanation=text)
    if code is ExitCode.SOCKET and permanent:
        return Failure(
            permanent=True,
            kind="certificate",
            explanation="The server's certificate could not be verified, so no password was "
            "sent. If the server's certificate is right, the administrator can add "
            "its CA on the mailbox page; then resume polling.",
        )
    if (
        code is ExitCode.DNS
        and permanent
        and failing_since is not None
        and now - failing_since >= DNS_PERMANENT_AFTER
    ):
        return Failure(
            permanent=True,
            kind="dns",
            explanation="The server's name has not resolved for a day. Check the server name "
            "on the mailbox page, then resume polling.",
        )
    return Failure(
        permanent=False,
        kind="temporary",
        explanation="Polls are retried, less and less often while the failure lasts.",
    )


FAILED_OUTCOMES = (PollRun.Outcome.ERROR, PollRun.Outcome.TIMEOUT)


@dataclass(frozen=True)
class AfterPoll:
    """What a recorded run means for its mailbox: the columns to set (failure
    counts, next poll) and, when its state changes, the new one and why."""

    values: dict[str, Any]
    health: str | None = None
    reason: str = ""


def after_poll(
    *, mailbox: Mailbox, run: PollRun, permanent: bool, now: datetime
) -> AfterPoll:
    """The next poll and the mailbox's state after ``run`` (no writes).

    ``mailbox`` is the row as read under the poll's lease.
    """
    if run.outcome not in FAILED_OUTCOMES:
        values: dict[str, Any] = {
            "failure_count": 0,
            "permanent_failures": 0,
            "failing_since": None,
            "next_poll_at": now + timedelta(seconds=jittered(mailbox.poll_interval)),
        }
        if mailbox.health != Mailbox.Health.OK:
            return AfterPoll(values, Mailbox.Health.OK)
        return AfterPoll(values)
    failures = mailbox.failure_count + 1
    failing_since = mailbox.failing_since or run.started_at
    failure = classify(
        exit_code=run.exit_code,
        permanent=permanent,
        failing_since=failing_since,
        now=now,
    )
    permanent_count = mailbox.permanent_failures + (1 if failure.permanent else 0)
    values = {
        "failure_count": failures,
        "permanent_failures": permanent_count,
        "failing_since": failing_since,
        "next_poll_at": now
        + timedelta(seconds=backoff_seconds(mailbox.poll_interval, failures)),
    }
    pause = failure.permanent and permanent_count >= settings.FETCH_PAUSE_AFTER
    after = Mailbox.Health.PAUSED if pause else Mailbox.Health.FAILING
    if mailbox.health in (Mailbox.Health.PAUSED, Mailbox.Health.REAUTH, after):
        # A paused mailbox stays paused until someone resumes it; one that
        # needs a new OAuth2 consent until it is given.
        return AfterPoll(values)
    error = run.error or "The poll failed."
    return AfterPoll(values, after, f"{error} {failure.explanation}")


def health_settle(*, mailbox: Mailbox, after: AfterPoll, now: datetime) -> None:
    """Move the mailbox to the state ``after`` names, if any (alerting once)."""
    if after.health is not None:
        health_change(
            mailbox_id=mailbox.pk,
            before=mailbox.health,
            after=after.health,
            reason=after.reason,
            now=now,
        )


def poll_recorded(
    *, mailbox: Mailbox, run: PollRun, permanent: bool, now: datetime
) -> None:
    """After a run is recorded: set the next poll and the mailbox's state.

    ``mailbox`` is the row as read under the poll's lease.
    """
    after = after_poll(mailbox=mailbox, run=run, permanent=permanent, now=now)
    Mailbox.objects.filter(pk=mailbox.pk).update(**after.values)
    health_settle(mailbox=mailbox, after=after, now=now)


def health_change(
    *, mailbox_id: int, before: str, after: str, reason: str, now: datetime
) -> bool:
    """Move the mailbox from ``before`` to ``after``; alert if this call did it."""
    from retrieval.services.alerts import alert_queue

    changed = Mailbox.objects.filter(pk=mailbox_id, health=before).update(
        health=after, health_reason=reason, health_changed_at=now
    )
    if changed != 1:
        return False
    event = {
        Mailbox.Health.OK: "recovered",
        Mailbox.Health.FAILING: "failing",
        Mailbox.Health.PAUSED: "paused",
        Mailbox.Health.REAUTH: "reconnect",
    }[Mailbox.Health(after)]
    alert_queue(mailbox_id=mailbox_id, event=event, reason=reason)
    return True


def mailbox_resume(*, mailbox: Mailbox, now: datetime | None = None) -> bool:
    """Take a paused mailbox back into the schedule: polled at once, its failures
    forgotten. It stays "failing" until a poll succeeds (which alerts "recovered").
    Returns False when it was not paused."""
    now = now or timezone.now()
    resumed = Mailbox.objects.filter(
        pk=mailbox.pk, health=Mailbox.Health.PAUSED
    ).update(
        health=Mailbox.Health.FAILING,
        health_changed_at=now,
        failure_count=0,
        permanent_failures=0,
        next_poll_at=now,
    )
    return resumed == 1
