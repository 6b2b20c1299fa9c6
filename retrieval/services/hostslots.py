"""A cap on the sessions open at once to one remote host, across all workers.

A counting semaphore in rows of HostSlot: FETCH_MAX_SESSIONS_PER_HOST rows per
host (made on first use), each free or held by one poll until a deadline. Taking
one is a conditional UPDATE (free -> held), so two workers never hold the same
slot, on PostgreSQL (the second UPDATE re-reads the row after the first commits)
and on SQLite (writes are serialized) alike, with any broker. A worker that dies
holding a slot loses it when its deadline (the lease length) passes.
"""

from __future__ import annotations

import random
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from retrieval.models import HostSlot

if TYPE_CHECKING:
    from collections.abc import Iterator


def host_key(host: str) -> str:
    return host.strip().lower().rstrip(".")


@dataclass
class HeldSlot:
    """A slot a poll holds (``slot_id`` None: no cap, nothing held) until
    :meth:`release`, or until a statement that gives it back sets ``released``
    (services/poll_statements.py)."""

    slot_id: int | None
    holder: str
    released: bool = False

    @staticmethod
    def new_holder() -> str:
        return uuid.uuid4().hex

    def release(self) -> None:
        if not self.released and self.slot_id is not None:
            host_slot_release(slot_id=self.slot_id, holder=self.holder)
        self.released = True


def host_slot_take(*, host: str, cap: int | None = None) -> tuple[int, str] | None:
    """Take a free slot of ``host``: (slot id, holder), or None when all are held."""
    cap = settings.FETCH_MAX_SESSIONS_PER_HOST if cap is None else cap
    key = host_key(host)
    holder = HeldSlot.new_holder()
    take = _take_postgresql if connection.vendor == "postgresql" else _take_portable
    for attempt in range(2):
        now = timezone.now()
        until = now + timedelta(seconds=settings.FETCH_LEASE_SECONDS)
        pk = take(key=key, cap=cap, holder=holder, now=now, until=until)
        if pk is not None:
            return pk, holder
        if attempt == 0:
            if HostSlot.objects.filter(host=key, slot__lt=cap).count() >= cap:
                return None
            HostSlot.objects.bulk_create(
                [HostSlot(host=key, slot=n) for n in range(cap)], ignore_conflicts=True
            )
    return None


def _take_portable(
    *, key: str, cap: int, holder: str, now: datetime, until: datetime
) -> int | None:
    free = Q(until__isnull=True) | Q(until__lt=now)
    candidates = list(
        HostSlot.objects.filter(free, host=key, slot__lt=cap).values_list(
            "pk", flat=True
        )
    )
    random.shuffle(candidates)  # fewer collisions between workers
    for pk in candidates:
        if HostSlot.objects.filter(free, pk=pk).update(holder=holder, until=until):
            return pk
    return None


# One round trip: a free slot, picked at random (fewer collisions), locked
# without waiting for a slot another worker is taking (SKIP LOCKED), and the
# outer condition checked again on the row as locked.
TAKE_POSTGRESQL = """
UPDATE {table} SET holder = %s, until = %s
WHERE id = (
    SELECT id FROM {table}
    WHERE host = %s AND slot < %s AND (until IS NULL OR until < %s)
    ORDER BY random() LIMIT 1
    FOR UPDATE SKIP LOCKED)
  AND (until IS NULL OR until < %s)
RETURNING id
"""


def _take_postgresql(
    *, key: str, cap: int, holder: str, now: datetime, until: datetime
) -> int | None:
    table = connection.ops.quote_name(HostSlot._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            TAKE_POSTGRESQL.format(table=table), [holder, until, key, cap, now, now]
        )
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def host_slot_release(*, slot_id: int, holder: str) -> None:
    HostSlot.objects.filter(pk=slot_id, holder=holder).update(holder="", until=None)


@contextmanager
def host_slot(*, host: str) -> Iterator[bool]:
    """Hold one of ``host``'s session slots for the block; yields False (holding
    nothing) when all are taken. FETCH_MAX_SESSIONS_PER_HOST = 0: no cap."""
    if settings.FETCH_MAX_SESSIONS_PER_HOST <= 0:
        yield True
        return
    taken = host_slot_take(host=host)
    if taken is None:
        yield False
        return
    try:
        yield True
    finally:
        host_slot_release(slot_id=taken[0], holder=taken[1])
