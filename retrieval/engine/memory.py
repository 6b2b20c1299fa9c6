"""In-memory ``Ledger`` and ``Transcript``, for tests and the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from retrieval.engine.ports import utc_now

if TYPE_CHECKING:
    from collections.abc import Collection
    from datetime import datetime

    from retrieval.engine.ports import Direction, MessageKey


@dataclass
class MemoryLedger:
    """Delivered UIDs per (folder, UIDVALIDITY); ``marks`` counts every call.

    Memory is never durable; ``durable_marks`` says how many of ``marks`` a
    durable ledger would have on stable storage (those before the last ``sync``).
    """

    delivered: dict[tuple[str, int | None], dict[str, str]] = field(
        default_factory=dict
    )
    uidvalidity: dict[str, int | None] = field(default_factory=dict)
    marks: list[MessageKey] = field(default_factory=list)
    # Partial deliveries: recipients that already have a message still kept.
    partial: dict[MessageKey, set[str]] = field(default_factory=dict)
    durable_marks: int = 0
    syncs: int = 0
    # When each delivered UID was first delivered (delete_after_days counts from it).
    dates: dict[tuple[str, int | None], dict[str, datetime]] = field(
        default_factory=dict
    )

    def delivered_uids(self, folder: str, uidvalidity: int | None) -> set[str]:
        return set(self.delivered.get((folder, uidvalidity), {}))

    def mark_delivered(
        self, key: MessageKey, message_id: str = "", at: datetime | None = None
    ) -> None:
        folder, uidvalidity, uid = key
        self.delivered.setdefault((folder, uidvalidity), {})[uid] = message_id
        dates = self.dates.setdefault((folder, uidvalidity), {})
        dates.setdefault(uid, at or utc_now())
        self.uidvalidity[folder] = uidvalidity
        self.marks.append(key)

    def delivery_dates(
        self, folder: str, uidvalidity: int | None, *, now: datetime
    ) -> dict[str, datetime]:
        return dict(self.dates.get((folder, uidvalidity), {}))

    def last_uidvalidity(self, folder: str) -> int | None:
        return self.uidvalidity.get(folder)

    def sync(self) -> None:
        self.durable_marks = len(self.marks)
        self.syncs += 1

    def forget_missing(
        self, folder: str, uidvalidity: int | None, present: set[str]
    ) -> None:
        uids = self.delivered.get((folder, uidvalidity), {})
        dates = self.dates.get((folder, uidvalidity), {})
        for uid in set(uids) - present:
            del uids[uid]
            dates.pop(uid, None)
        for key in [k for k in self.partial if k[:2] == (folder, uidvalidity)]:
            if key.uid not in present:
                del self.partial[key]

    def delivered_recipients(self, key: MessageKey) -> set[str]:
        return set(self.partial.get(key, ()))

    def mark_recipients_delivered(
        self, key: MessageKey, recipients: Collection[str]
    ) -> None:
        self.partial.setdefault(key, set()).update(recipients)
        self.uidvalidity[key.folder] = key.uidvalidity


class NullTranscript:
    """Keeps nothing: a poll whose transcript nobody reads (the command line
    without ``-v``). ``keeps`` tells the engine to skip formatting the lines."""

    keeps = False

    def record(self, direction: Direction, text: str) -> None:
        pass


@dataclass
class ListTranscript:
    """Collects ``(direction, text)`` pairs; ``text()`` renders them for people."""

    lines: list[tuple[Direction, str]] = field(default_factory=list)

    def record(self, direction: Direction, text: str) -> None:
        self.lines.append((direction, text))

    def text(self) -> str:
        return "\n".join(f"{direction}: {text}" for direction, text in self.lines)
