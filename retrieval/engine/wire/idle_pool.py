"""Connections left open between polls, by key, oldest first.

The shared bookkeeping of kept IMAP sessions (``fetch/kept.py``) and kept
listener connections (``deliver/kept_listeners.py``): an entry older than
``idle_seconds`` is closed when the pool is next used, and the least recently
given one when more than ``max_items`` are kept. Thread-safe; an entry is out
of the pool while a poll uses it, so no two polls share one. Closing happens
outside the lock (a goodbye may wait on the network).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

    from retrieval.engine.ports import Direction

T = TypeVar("T")


class _Nowhere:
    """The transcript of a connection between polls: nobody reads it."""

    keeps = False

    def record(self, direction: Direction, text: str) -> None:
        pass


NOWHERE = _Nowhere()


class IdlePool(Generic[T]):
    def __init__(
        self,
        idle_seconds: float,
        max_items: int,
        *,
        close: Callable[[T], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_items = max_items
        self._close = close
        self._clock = clock
        self._lock = threading.Lock()
        self._idle: OrderedDict[str, tuple[T, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._idle)

    def take(self, key: str) -> T | None:
        """The entry kept under ``key`` (now out of the pool), or None."""
        self.sweep()
        with self._lock:
            kept = self._idle.pop(key, None)
        return kept[0] if kept is not None else None

    def give(self, key: str, item: T) -> None:
        """Keep ``item`` under ``key``; closes one it replaces and any evicted."""
        with self._lock:
            replaced = self._idle.pop(key, None)
            self._idle[key] = (item, self._clock())
            evicted = [replaced[0]] if replaced else []
            while len(self._idle) > max(self.max_items, 0):
                evicted.append(self._idle.popitem(last=False)[1][0])
        for old in evicted:
            self._close(old)

    def sweep(self) -> int:
        """Close the entries idle too long; returns how many."""
        limit = self._clock() - self.idle_seconds
        expired: list[T] = []
        with self._lock:
            while self._idle:
                key, (item, since) = next(iter(self._idle.items()))
                if since > limit:
                    break
                del self._idle[key]
                expired.append(item)
        for old in expired:
            self._close(old)
        return len(expired)

    def close_all(self) -> None:
        """Close every entry (the process is ending)."""
        with self._lock:
            kept = [item for item, _ in self._idle.values()]
            self._idle.clear()
        for old in kept:
            self._close(old)
