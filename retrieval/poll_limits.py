"""The time limits of one poll inside a task that runs several
(tasks.poll_mailboxes, a shard's scheduled polls).

Celery's limits (``soft_time_limit``, ``time_limit``) hold for a whole task;
each poll of a shard's batch gets the poll task's own instead. At the soft
limit SoftTimeLimitExceeded is raised inside the poll, as Celery raises it
(services.mailbox_poll records the run as timed out, the batch goes on). A poll
still running at the hard limit ends its process, as Celery's hard limit does:
the pool starts a new one, the lease runs out, and the batch's later mailboxes
are due again at their next poll time (the dispatcher's claim moved it on).

Signals reach only the main thread, where the prefork and solo pools run
their tasks; elsewhere (a thread pool) the polls run without limits and a
warning says so.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

from billiard.exceptions import SoftTimeLimitExceeded

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import FrameType

logger = logging.getLogger(__name__)


def _end_process() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def poll_time_limits(
    soft: float, hard: float, *, end_process: Callable[[], None] = _end_process
) -> Iterator[None]:
    """The block raises SoftTimeLimitExceeded after ``soft`` seconds, and its
    process ends after ``hard`` (a soft limit not below the hard one is none)."""
    if threading.current_thread() is not threading.main_thread():
        logger.warning("polls outside the main thread run without time limits")
        yield
        return
    soft_first = 0 < soft < hard

    def expired(signum: int, frame: FrameType | None) -> None:
        nonlocal soft_first
        if soft_first:
            soft_first = False
            signal.setitimer(signal.ITIMER_REAL, hard - soft)
            raise SoftTimeLimitExceeded(soft)
        logger.error("a poll still ran at its hard time limit (%s s): ending", hard)
        end_process()

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, soft if soft_first else hard)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
