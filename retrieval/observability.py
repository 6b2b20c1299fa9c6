"""What the service tells its operators: Prometheus metrics and one log line per
poll and per delivery.

The poll service calls :func:`poll_finished` once a PollRun is recorded and
:func:`lease_stolen` when it takes over a mailbox whose holder's lease expired;
nothing else in the service knows about metrics. Everything here is best effort:
a metric or log failure never fails a poll.

Counters and the histogram live in the process that polls (a Celery worker
child). With ``PROMETHEUS_MULTIPROC_DIR`` set (``bin/run``, docker-compose.yml),
prometheus_client writes them to files there and the web process's ``/metrics``
adds them up (:func:`registry`); without it each process only sees its own.
What describes the database (due, overdue, failing mailboxes) and the broker
(queue depth) is computed at scrape time by :class:`StateCollector`, so it is
right however many workers run. See docs/metrics.md.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.registry import Collector

    from retrieval.engine.report import PollReport
    from retrieval.models import Mailbox, PollRun

logger = logging.getLogger("fetchweb.polls")

# No "_created" samples: multiprocess mode has none, so /metrics looks the same
# with and without PROMETHEUS_MULTIPROC_DIR.
disable_created_metrics()

# Seconds; a poll ends at FETCH_HARD_LIMIT (1800 s by default).
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

POLLS = Counter(
    "fetchweb_polls",
    "Polls finished, by outcome (success, nomail, error, timeout) and protocol.",
    ["outcome", "protocol"],
)
MESSAGES_DELIVERED = Counter(
    "fetchweb_messages_delivered",
    "Messages the local listener (or MDA) accepted.",
    ["protocol"],
)
BYTES_DELIVERED = Counter(
    "fetchweb_delivered_bytes",
    "Size in bytes of the messages the local listener (or MDA) accepted.",
    ["protocol"],
)
LISTENER_REFUSALS = Counter(
    "fetchweb_listener_refusals",
    "Messages the local listener did not accept: permanent (5xx, kept on the "
    "server unless the mailbox says otherwise) or temporary (4xx or no answer, "
    "kept for the next poll).",
    ["kind"],
)
POLL_DURATION = Histogram(
    "fetchweb_poll_duration_seconds",
    "Wall time of one poll, from the start of its run to its record.",
    ["protocol"],
    buckets=DURATION_BUCKETS,
)
LEASE_STEALS = Counter(
    "fetchweb_lease_steals",
    "Polls that took over a mailbox whose previous holder's lease had expired "
    "(its worker was killed or lost).",
)
# Set by the IDLE push process (retrieval/push/supervisor.py), one value per process.
IDLE_CONNECTIONS = Gauge(
    "fetchweb_idle_connections",
    "IMAP IDLE connections held open by the IDLE process (manage.py idle).",
    multiprocess_mode="livesum",
)


# --- the service's hooks -------------------------------------------------------------


def poll_finished(mailbox: Mailbox, run: PollRun, report: PollReport) -> None:
    """Count one recorded poll and log it, with one line per message handled.

    The duration is the run's own, from ``started_at`` to ``finished_at``.
    """
    try:
        end = run.finished_at or run.started_at
        duration = (end - run.started_at).total_seconds()
        _count(mailbox, run, report, duration)
        _log(mailbox, run, report, duration)
    except Exception:  # never fail a poll for its metrics
        logger.exception("recording the metrics of run %s failed", run.pk)


def lease_stolen(mailbox_id: int) -> None:
    LEASE_STEALS.inc()
    logger.warning(
        "mailbox %s: took over an expired lease (its worker was lost)",
        mailbox_id,
        extra={"event": "lease_steal", "mailbox_id": mailbox_id},
    )


def process_dead(pid: int) -> None:
    """A worker child exited: drop its live gauges (Celery worker_process_shutdown)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)


def _count(mailbox: Mailbox, run: PollRun, report: PollReport, duration: float) -> None:
    from retrieval.engine.report import MessageStatus

    protocol = str(mailbox.protocol)
    POLLS.labels(outcome=str(run.outcome), protocol=protocol).inc()
    POLL_DURATION.labels(protocol=protocol).observe(max(duration, 0.0))
    delivered = [m for m in report.messages if m.status is MessageStatus.DELIVERED]
    if delivered:
        MESSAGES_DELIVERED.labels(protocol=protocol).inc(len(delivered))
        BYTES_DELIVERED.labels(protocol=protocol).inc(sum(m.size for m in delivered))
    refused = sum(1 for m in report.messages if m.status is MessageStatus.REFUSED)
    deferred = sum(1 for m in report.messages if m.status is MessageStatus.DEFERRED)
    if refused:
        LISTENER_REFUSALS.labels(kind="permanent").inc(refused)
    if deferred:
        LISTENER_REFUSALS.labels(kind="temporary").inc(deferred)


def _log(mailbox: Mailbox, run: PollRun, report: PollReport, duration: float) -> None:
    """Ids, outcome, counts and duration: never a password, a transcript, an
    error text or a listener reply (they are in the PollRun, masked, for people
    allowed to see them)."""
    for m in report.messages:
        if str(m.status) == "skipped":
            continue
        logger.info(
            "mailbox %s run %s: message %s %s",
            mailbox.pk,
            run.pk,
            m.uid,
            m.status,
            extra={
                "event": "delivery",
                "mailbox_id": mailbox.pk,
                "run_id": run.pk,
                "folder": m.folder,
                "uid": m.uid,
                "status": str(m.status),
                "size": m.size,
                "recipients": len(m.recipients),
                "deleted": m.deleted,
            },
        )
    logger.info(
        "mailbox %s run %s: %s, %s fetched, %s delivered, %s deleted in %.2f s",
        mailbox.pk,
        run.pk,
        run.outcome,
        run.fetched,
        run.delivered,
        run.deleted,
        duration,
        extra={
            "event": "poll",
            "mailbox_id": mailbox.pk,
            "run_id": run.pk,
            "protocol": str(mailbox.protocol),
            "trigger": str(run.trigger),
            "outcome": str(run.outcome),
            "exit_code": run.exit_code,
            "fetched": run.fetched,
            "delivered": run.delivered,
            "deleted": run.deleted,
            "bytes": run.bytes_fetched,
            "duration": round(duration, 3),
        },
    )


# --- scrape time ----------------------------------------------------------------------

# bin/run and docker-compose.yml serve these (retrieval.tasks.route_task).
QUEUES = ("celery", "polls", "interactive", "push")
# kombu's Redis transport keeps priorities 3, 6 and 9 in lists of their own.
_REDIS_PRIORITY_SEP = "\x06\x16"
_REDIS_PRIORITIES = (3, 6, 9)
FAILED_OUTCOMES = ("error", "timeout", "lost")


class StateCollector:
    """Gauges read from the database and the broker when /metrics is scraped."""

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # computed at collect time; nothing to check at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._mailboxes()
        yield from self._queues()

    def _mailboxes(self) -> Iterator[GaugeMetricFamily]:
        from django.conf import settings
        from django.db.models import OuterRef, Q, Subquery
        from django.utils import timezone

        from retrieval.models import Mailbox, PollRun

        now = timezone.now()
        enabled = Mailbox.objects.filter(enabled=True)
        states = GaugeMetricFamily(
            "fetchweb_mailboxes",
            "Mailboxes by state: enabled, disabled, failing (enabled, and its last "
            "finished poll failed), paused (enabled, but paused after repeated "
            "failures that need someone's attention).",
            labels=["state"],
        )
        last_outcome = Subquery(
            PollRun.objects.filter(mailbox=OuterRef("pk"))
            .exclude(outcome__in=("running", "skipped"))
            .order_by("-started_at", "-pk")
            .values("outcome")[:1]
        )
        failing = (
            enabled.annotate(last=last_outcome).filter(last__in=FAILED_OUTCOMES).count()
        )
        states.add_metric(["enabled"], enabled.count())
        states.add_metric(["disabled"], Mailbox.objects.filter(enabled=False).count())
        states.add_metric(["failing"], failing)
        paused = enabled.filter(health=Mailbox.Health.PAUSED)
        states.add_metric(["paused"], paused.count())
        states.add_metric(
            ["reconnect"], enabled.filter(health=Mailbox.Health.REAUTH).count()
        )
        yield states
        # A paused mailbox is not scheduled: never due, never overdue (nor one
        # waiting for a new OAuth2 consent).
        enabled = enabled.exclude(
            health__in=(Mailbox.Health.PAUSED, Mailbox.Health.REAUTH)
        )
        due = enabled.filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
        yield GaugeMetricFamily(
            "fetchweb_mailboxes_due",
            "Enabled mailboxes whose next poll time has come.",
            value=due.count(),
        )
        late = now - timedelta(seconds=settings.FETCH_METRICS_OVERDUE_SECONDS)
        yield GaugeMetricFamily(
            "fetchweb_mailboxes_overdue",
            "Enabled mailboxes due for longer than FETCH_METRICS_OVERDUE_SECONDS "
            "(the dispatcher is not running, or polls hold them too long).",
            value=enabled.filter(next_poll_at__lt=late).count(),
        )
        yield GaugeMetricFamily(
            "fetchweb_polls_running",
            "Polls recorded as running now.",
            value=PollRun.objects.filter(outcome="running").count(),
        )

    def _queues(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "fetchweb_queue_depth",
            "Tasks waiting in each Celery queue (Redis list lengths; with the file "
            "broker, the message files waiting in var/broker/queue).",
            labels=["queue"],
        )
        up = 1
        try:
            for queue, count in queue_depths().items():
                depth.add_metric([queue], count)
        except Exception as exc:
            logger.warning("queue depth unavailable: %s", exc)
            up = 0
        yield depth
        yield GaugeMetricFamily(
            "fetchweb_broker_up",
            "1 when the broker answered the queue-depth query at this scrape.",
            value=up,
        )


def queue_depths() -> dict[str, int]:
    from django.conf import settings

    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2
        )
        try:
            depths: dict[str, int] = {}
            for queue in QUEUES:
                keys = [queue] + [
                    f"{queue}{_REDIS_PRIORITY_SEP}{p}" for p in _REDIS_PRIORITIES
                ]
                pipe = client.pipeline(transaction=False)
                for key in keys:
                    pipe.llen(key)
                depths[queue] = sum(int(n) for n in pipe.execute())
            return depths
        finally:
            client.close()
    # kombu's filesystem transport: one file per message, "<ts>_<uuid>.<queue>.msg".
    folder = Path(str(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]))
    names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    return {
        queue: sum(1 for n in names if n.partition(".")[2] == f"{queue}.msg")
        for queue in QUEUES
    }


def registry() -> CollectorRegistry:
    """What /metrics shows: every process's counters and the scrape-time gauges."""
    from django.conf import settings

    path = settings.PROMETHEUS_MULTIPROC_DIR
    if path:
        reg = CollectorRegistry()
        reg.register(_TreeCollector(path))  # type: ignore[arg-type]
    else:
        reg = _Combined(REGISTRY)
    reg.register(_state)
    return reg


class _TreeCollector:
    """prometheus_client's MultiProcessCollector over a directory and its
    subdirectories: one subdirectory per worker service or host (their process
    ids may repeat across containers, so they must not share one directory)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Iterator[Any]:
        files = sorted(str(p) for p in Path(self.path).rglob("*.db"))
        return iter(multiprocess.MultiProcessCollector.merge(files, accumulate=True))  # type: ignore[no-untyped-call]


def clear_own_files() -> None:
    """Remove the metric files of earlier runs from this process's own
    directory (not its subdirectories): Celery worker_init, before the pool
    starts. A worker owns its directory; see docs/metrics.md."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.db"):
        old.unlink(missing_ok=True)


_state: Collector = StateCollector()  # type: ignore[assignment]


class _Combined(CollectorRegistry):
    """This process's own metrics (no multiprocess dir) plus the state collector,
    without registering it in the global registry twice."""

    def __init__(self, base: CollectorRegistry) -> None:
        super().__init__(auto_describe=False)
        self._base = base

    def collect(self) -> Iterator[Any]:
        yield from self._base.collect()
        yield from super().collect()
