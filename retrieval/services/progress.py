"""How far a running poll or connection test has come, for the page following it.

The engine tells its steps through its ``Progress`` port (the session's steps,
and "N of M messages" at most a few times a second: retrieval/engine/progress.py);
:class:`CachedProgress` keeps the latest one in the shared cache (Redis, or files
on a single host, as the settings choose), where the status fragments read it
with :func:`progress_text`. No database write: a step is worth a glance, not a
row, and it is gone when the run or test is recorded.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal, TypedDict

from django.conf import settings
from django.core.cache import cache

if TYPE_CHECKING:
    from retrieval.engine.ports import ProgressStep

logger = logging.getLogger(__name__)

Kind = Literal["run", "test"]  # a PollRun, a ConnectionTest


class Step(TypedDict):
    step: str
    done: int
    total: int
    folder: str


def _key(kind: Kind, pk: int) -> str:
    return f"fetchweb:progress:{kind}:{pk}"


class CachedProgress:
    """The engine's Progress port on the cache, for one run or test."""

    def __init__(self, kind: Kind, pk: int) -> None:
        self.key = _key(kind, pk)

    def __call__(
        self, step: ProgressStep, *, done: int = 0, total: int = 0, folder: str = ""
    ) -> None:
        value: Step = {"step": step, "done": done, "total": total, "folder": folder}
        try:
            # Outlives the longest poll; deleted when the poll is recorded.
            cache.set(self.key, value, timeout=settings.FETCH_HARD_LIMIT + 60)
        except Exception:
            # A page's progress line is not worth a poll: log, and poll on.
            logger.warning(
                "could not store the progress of %s", self.key, exc_info=True
            )

    def clear(self) -> None:
        try:
            cache.delete(self.key)
        except Exception:
            logger.warning(
                "could not clear the progress of %s", self.key, exc_info=True
            )


def progress_text(*, kind: Kind, pk: int, host: str) -> str:
    """The latest step of a run or test in words; "" when none is known."""
    try:
        step: Step | None = cache.get(_key(kind, pk))
    except Exception:
        logger.warning("could not read the progress of %s %s", kind, pk, exc_info=True)
        return ""
    return "" if step is None else _words(step, kind, host)


def _words(step: Step, kind: Kind, host: str) -> str:
    name = step["step"]
    if name == "messages":
        done, total, folder = step["done"], step["total"], step["folder"]
        where = f" in {folder}" if folder else ""
        if total == 0:
            return f"Logged in; no new messages{where}."
        noun = "message" if total == 1 else "messages"
        return f"Logged in; {done} of {total} {noun}{where} done."
    return {
        "connecting": f"Connecting to {host}…",
        "connected": f"Connected to {host}; logging in…",
        "tls": "TLS established; logging in…",
        "logged_in": (
            "Logged in; listing messages…" if kind == "run" else "Logged in."
        ),
        "logging_out": "Logging out…",
    }.get(name, "")
