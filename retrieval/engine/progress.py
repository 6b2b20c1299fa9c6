"""Progress for a person watching a poll, cheap enough to tell per message.

The steps of a session (connected, TLS, logged in, logging out) are few and pass
straight on. Message counts come once per message, so they are thinned: the
first and the last count of a folder always pass, the ones between at most once
every ``every`` seconds. Per message that costs one clock reading.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from retrieval.engine.ports import Progress, ProgressStep

# Seconds between two message counts told to the port (a page asks once a second).
EVERY = 0.5


class ProgressTicker:
    """Wraps a :class:`~retrieval.engine.ports.Progress` port (or none)."""

    def __init__(
        self,
        port: Progress | None,
        *,
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.port = port
        self.every = EVERY if every is None else every
        self.clock = clock
        self._last = float("-inf")

    def step(self, step: ProgressStep) -> None:
        if self.port is not None:
            self.port(step)

    def messages(self, done: int, total: int, folder: str) -> None:
        """``done`` of the folder's ``total`` messages to fetch are handled."""
        if self.port is None:
            return
        now = self.clock()
        if done in (0, total) or now - self._last >= self.every:
            self._last = now
            self.port("messages", done=done, total=total, folder=folder)
