"""The engine's two outward interfaces: where seen UIDs live, and where wire talk goes.

The Django side implements them on the ORM, the command line on a file, tests in
memory (see :mod:`retrieval.engine.memory`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Collection

Direction = Literal["S", "C", "*"]  # server said, client said, engine note

# The points of one message's journey at which a test may stop the poll (see
# ``poll(..., observe=...)``): after the fetch, once DATA is under way, after the
# final dot but before the reply is read, after the reply but before the
# ledger commit, after the commit, and after the delete command was answered;
# "synced" (uid "") once the ledger was made durable, before QUIT or EXPUNGE.
# With an SMTP/LMTP listener that offers PIPELINING the next message is read
# before this one's body goes out (its envelope follows this final dot), so
# "fetched" of message N+1 comes between "fetched" and "data" of message N.
PollStep = Literal["fetched", "data", "dot", "replied", "recorded", "deleted", "synced"]


def utc_now() -> datetime:
    """The engine's default clock; ``poll(..., clock=...)`` replaces it in tests."""
    return datetime.now(UTC)


# How far a poll (or a connection test) has come, for a person watching it:
# TCP being opened, TCP up, TLS established (implicit or STARTTLS), credentials
# accepted, messages of a folder handled so far, the session being ended.
ProgressStep = Literal[
    "connecting", "connected", "tls", "logged_in", "messages", "logging_out"
]


class MessageKey(NamedTuple):
    """Where a ledger files one message: its folder, the folder's UIDVALIDITY
    (None where there is none: POP3) and its UID there."""

    folder: str
    uidvalidity: int | None
    uid: str


class Ledger(Protocol):
    """The record of messages already delivered, per folder and UIDVALIDITY.

    Group commit in two steps. ``mark_delivered`` (and
    ``mark_recipients_delivered``) must have *written* the record when it
    returns, out of this process's hands (an appended journal line, a committed
    transaction), so that a killed process loses nothing it reported: the engine
    records each delivery before it fetches the next message, and a crash of the
    process can at worst deliver one message twice. It need not be on stable
    storage yet. :meth:`sync` makes every record written so far durable; the
    fetch layer calls it right before the server could commit a deletion
    (POP3 ``QUIT``, IMAP ``STORE \\Deleted``/``EXPUNGE``), so a deletion never
    outlives the record of its delivery. Only a crash of the machine between a
    write and the sync can deliver that batch again; nothing is ever lost.

    Each delivered UID carries the date of its first delivery (``at``, an aware
    UTC time from the engine's clock; the ledger's own clock when None): a later
    ``mark_delivered`` of the same UID (``fetchall`` with ``keep`` delivers it
    again) keeps the first date, so ``delete_after_days`` counts from it.
    """

    def delivered_uids(self, folder: str, uidvalidity: int | None) -> set[str]: ...

    def mark_delivered(
        self, key: MessageKey, message_id: str = "", at: datetime | None = None
    ) -> None: ...

    def delivery_dates(
        self, folder: str, uidvalidity: int | None, *, now: datetime
    ) -> dict[str, datetime]:
        """When each delivered UID of the folder was first delivered.

        A ledger holding a UID without a date (an idfile written before dates
        were kept) records ``now`` for it, durably, and answers that: its age
        then counts from the first poll that asked.
        """
        ...

    def last_uidvalidity(self, folder: str) -> int | None: ...

    def sync(self) -> None:
        """Make every record written so far durable (fsync, a synchronous commit)."""
        ...

    def forget_missing(
        self, folder: str, uidvalidity: int | None, present: set[str]
    ) -> None:
        """Drop UIDs no longer on the server, as fetchmail prunes its .fetchids."""
        ...


@runtime_checkable
class RecipientLedger(Ledger, Protocol):
    """A ledger that also remembers partial deliveries, per envelope recipient.

    When an LMTP listener (or a per-recipient MDA) accepts a message for some
    recipients and defers it for others, the message stays on the server; the
    next poll must deliver it only to those still without it. Ledgers that lack
    these two methods get fetchmail's behaviour: the retry goes to everyone.
    """

    def delivered_recipients(self, key: MessageKey) -> set[str]:
        """Recipients already given this message; empty when none is recorded."""
        ...

    def mark_recipients_delivered(
        self, key: MessageKey, recipients: Collection[str]
    ) -> None:
        """Add ``recipients`` to the message's record; written when it returns,
        durable after :meth:`Ledger.sync`, like ``mark_delivered``.

        The message does not count as delivered (``delivered_uids``) until
        ``mark_delivered``; ``forget_missing`` drops these records too.
        """
        ...


class StepObserver(Protocol):
    """Told each :data:`PollStep` a message reaches; tests use it to crash there."""

    def __call__(self, step: PollStep, uid: str) -> None: ...


class Progress(Protocol):
    """Told each :data:`ProgressStep` as it happens; for ``"messages"`` also how
    many of the folder's ``total`` messages to fetch are ``done`` (the engine
    tells at most a few counts a second, see :mod:`retrieval.engine.progress`).
    Must be quick and must not raise: it runs on the poll's thread."""

    def __call__(
        self, step: ProgressStep, *, done: int = 0, total: int = 0, folder: str = ""
    ) -> None: ...


class Transcript(Protocol):
    """What was said on the wire, line by line; secrets are masked before this.

    A transcript with a ``keeps`` attribute that is False says it throws every
    line away (the command line without ``-v``): the engine then does not format,
    decode or check any line for it (see :func:`keeps_lines`). ``keeps`` may turn
    False during a poll, once the transcript will keep no more (a bounded one
    that is full), and never turns True again: the engine reads it line by line.
    """

    def record(self, direction: Direction, text: str) -> None: ...


def keeps_lines(transcript: Transcript) -> bool:
    """False only for a transcript known to keep nothing more (``keeps`` False)."""
    return getattr(transcript, "keeps", True) is not False
