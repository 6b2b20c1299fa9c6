"""Which messages of a folder a poll fetches, deletes unread, or leaves alone.

fetchmail's rules, on our UID ledger:

* **old** messages are those an earlier poll delivered (the ledger) and, on
  IMAP, those some client has read (``\\Seen``). ``fetchall`` makes read
  messages new; it makes delivered ones new only with ``keep`` (fetchmail's
  "fetch everything again"). Old messages are left alone, except that one
  delivered before is deleted when not kept, ``fetchall`` or not (a session
  cut before its delete was committed, invariant 5: a delivered UID is never
  delivered again), and ``flush`` deletes every old message, read or
  delivered, before fetching;
* a new message over ``limit`` is skipped and reported, or deleted unread with
  ``limitflush``; one over the hard cap is always skipped;
* at most ``fetchlimit`` messages are fetched; the rest wait for the next poll
  and the poll ends with fetchmail's exit code 13 (MAXFETCH);
* ``delete_after_days`` (ours; fetchmail never had it), with ``keep``: a message
  the ledger shows delivered at least that many days ago is deleted without
  being fetched again, ``fetchall`` or not, and reported as expired. Nothing
  else is ever deleted by age: not a message the ledger does not know, not one
  delivered less than that many days ago.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import TYPE_CHECKING

from retrieval.engine.report import MessageStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

    from retrieval.engine.fetch.session import FolderListing, RemoteMessage
    from retrieval.engine.spec import MailboxSpec


@dataclass(frozen=True)
class Untouched:
    """A message not fetched this time, and why; ``delete`` says if it goes."""

    message: RemoteMessage
    reason: str
    delete: bool
    status: MessageStatus = MessageStatus.SKIPPED


@dataclass(frozen=True)
class Ages:
    """For ``delete_after_days``: when each delivered UID was first delivered,
    and the time of this poll (the engine's clock)."""

    delivered_at: Mapping[str, datetime]
    now: datetime


@dataclass
class FolderPlan:
    fetch: list[RemoteMessage] = field(default_factory=list)  # in this order
    skipped: list[Untouched] = field(default_factory=list)  # reported, per message
    left: int = 0  # new messages left for the next poll by fetchlimit
    notes: list[str] = field(default_factory=list)

    def in_order(self, listing: FolderListing) -> list[RemoteMessage | Untouched]:
        """Everything to fetch or report, in the folder's order."""
        rank = {message.uid: at for at, message in enumerate(listing.messages)}
        steps: list[RemoteMessage | Untouched] = [*self.fetch, *self.skipped]
        return sorted(
            steps,
            key=lambda s: rank[s.message.uid if isinstance(s, Untouched) else s.uid],
        )


def read_only(spec: MailboxSpec) -> bool:
    """True when this poll must not change the folder (IMAP EXAMINE)."""
    return spec.keep and not spec.flush and not spec.limitflush and not expires(spec)


def expires(spec: MailboxSpec) -> bool:
    """True when kept messages are deleted by age (``delete_after_days``)."""
    return spec.keep and bool(spec.delete_after_days)


def fastuidl_applies(spec: MailboxSpec) -> bool:
    """fetchmail's choice: binary search in polls 2..N of every N, with keep.

    Not with ``delete_after_days``: the search lists only the new messages,
    and the old ones are those that may have to go.
    """
    if not spec.fastuidl or not spec.keep or spec.fetchall or spec.flush:
        return False
    if expires(spec):
        return False
    return spec.fastuidl == 1 or spec.poll_number % spec.fastuidl != 0


def _refetch_all(spec: MailboxSpec) -> bool:
    """fetchmail's ``keep`` + ``fetchall``: every message again, delivered or not.

    Without keep, a delivered UID still on the server is one whose delete a cut
    session never committed; fetching it again would be a duplicate.
    """
    return spec.keep and spec.fetchall


def waiting(spec: MailboxSpec, message: RemoteMessage, known: set[str]) -> bool:
    """True when a poll would fetch ``message`` (size limits aside); for ``-c``."""
    if _refetch_all(spec):
        return True
    return message.uid not in known and (spec.fetchall or not message.seen)


def plan_folder(
    spec: MailboxSpec,
    listing: FolderListing,
    known: set[str],
    *,
    sized: Callable[[list[RemoteMessage]], list[RemoteMessage]],
    ages: Ages | None = None,
) -> FolderPlan:
    """Sort ``listing`` into fetch / delete unread / leave; ``sized`` adds sizes.

    ``ages`` is needed only when :func:`expires`; without it nothing expires.
    """
    plan = FolderPlan()
    new: list[RemoteMessage] = []
    flushed = 0
    expired = 0
    for message in listing.messages:
        reason = _expired(spec, message.uid, known, ages)
        if reason:
            expired += 1
            plan.skipped.append(
                Untouched(message, reason, delete=True, status=MessageStatus.EXPIRED)
            )
        elif _refetch_all(spec):
            new.append(message)
        elif message.uid in known:
            if not spec.keep or spec.flush:
                # Delivered and recorded by an earlier poll that did not get to
                # delete it (invariant 5), or flushed: delete, never redeliver.
                plan.skipped.append(
                    Untouched(message, "delivered by an earlier poll", delete=True)
                )
        elif message.seen and not spec.fetchall:
            if spec.flush:
                flushed += 1
                plan.skipped.append(
                    Untouched(
                        message, "read on the server before; flushed", delete=True
                    )
                )
        else:
            new.append(message)
    if expired:
        plan.notes.append(
            f"{expired} message(s) in {listing.folder} were delivered "
            f"{spec.delete_after_days} or more days ago and were deleted from the "
            "server (delete after days, with keep)."
        )
    if flushed:
        plan.notes.append(
            f"{flushed} message(s) in {listing.folder} had been read on the server "
            "and were deleted without fetching (flush)."
        )
    oversized = 0
    for message in sized(new) if new else []:
        reason = _size_refusal(spec, message.size)
        if not reason:
            plan.fetch.append(message)
            continue
        over_limit = bool(spec.limit) and message.size > spec.limit
        delete = over_limit and spec.limitflush
        oversized += over_limit
        if over_limit:
            reason += "; deleted (limitflush)" if delete else "; kept"
        plan.skipped.append(Untouched(message, reason, delete))
    if oversized:
        what = "deleted" if spec.limitflush else "left on the server"
        plan.notes.append(
            f"{oversized} message(s) in {listing.folder} are larger than the size "
            f"limit of {spec.limit} bytes and were {what}."
        )
    if spec.fetchlimit and len(plan.fetch) > spec.fetchlimit:
        plan.left = len(plan.fetch) - spec.fetchlimit
        plan.fetch = plan.fetch[: spec.fetchlimit]
        plan.notes.append(
            f"Fetch limit {spec.fetchlimit} reached; {plan.left} message(s) in "
            f"{listing.folder} are left for the next poll."
        )
    return plan


def _expired(spec: MailboxSpec, uid: str, known: set[str], ages: Ages | None) -> str:
    """Why ``uid`` goes by age now, or "" when it stays (see the module docstring)."""
    if not expires(spec) or ages is None or uid not in known:
        return ""
    delivered = ages.delivered_at.get(uid)
    days = spec.delete_after_days or 0
    if delivered is None or ages.now - delivered < timedelta(days=days):
        return ""
    when = delivered.astimezone(UTC)
    age = (ages.now - delivered).days
    return (
        f"delivered {when:%Y-%m-%d %H:%M} UTC, {age} days ago; deleted after "
        f"{days} days (keep)"
    )


def _size_refusal(spec: MailboxSpec, size: int) -> str:
    if spec.limit and size > spec.limit:
        return f"larger than the size limit ({size} > {spec.limit} bytes)"
    if spec.max_message_bytes and size > spec.max_message_bytes:
        return (
            f"larger than the largest message accepted ({size} > "
            f"{spec.max_message_bytes} bytes); kept"
        )
    return ""
