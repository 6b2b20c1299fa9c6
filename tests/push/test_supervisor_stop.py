"""Stopping the IDLE push process (SIGTERM sets the supervisor's stop event):
every watcher ends, even one whose first cancellation was lost.

No database and no server: the supervisor's database calls and the IMAP session
are stand-ins, so that the test sets up the race exactly.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from retrieval.push import supervisor as push


def test_a_watcher_whose_cancellation_was_lost_is_stopped_all_the_same(
    monkeypatch: Any,
) -> None:
    """Python 3.11's asyncio.wait_for returns the result when what it awaits
    completes in the loop iteration of the cancel: the watcher goes on holding
    IDLE. close() used to wait for it for ever (manage.py idle ignored SIGTERM)."""
    reads: list[asyncio.Future[None]] = []
    waiting = asyncio.Event()
    cancels_seen = [0]

    async def session(spec: Any, **kwargs: Any) -> None:
        kwargs["on_idling"]("idling")
        loop = asyncio.get_running_loop()
        while True:
            read: asyncio.Future[None] = loop.create_future()
            reads.append(read)
            waiting.set()
            try:
                await asyncio.wait_for(read, 3600)  # a line from the server
            except asyncio.CancelledError:
                cancels_seen[0] += 1
                raise

    monkeypatch.setattr(push, "watch", session)

    async def scenario() -> list[asyncio.Task[None]]:
        supervisor = push.Supervisor(
            wanted=lambda shard, shards: {1: "v1"},
            load=lambda pk: object(),  # type: ignore[arg-type,return-value]
            queue=lambda pk: True,
        )
        await supervisor.reconcile()
        await asyncio.wait_for(waiting.wait(), 30)
        tasks = [w.task for w in supervisor.watches.values() if w.task is not None]
        # A line arrives and the stop comes in the same iteration of the loop.
        reads[-1].set_result(None)
        await asyncio.wait_for(supervisor.close(), 30)
        return tasks

    tasks = asyncio.run(scenario())
    assert tasks and all(task.done() for task in tasks)
    assert cancels_seen == [1]
    if sys.version_info < (3, 12):
        # The race was real: the first cancel was lost, the session read on
        # (a second read), and the second cancel ended it.
        assert len(reads) == 2
