"""The engine's two outward interfaces: where seen UIDs live, and where wire talk goes.

The Django side implements them on the ORM, the command line on a file, tests in
memory (see :mod:`retrieval.engine.memory`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Collection

Direction = Literal["S", "C", "*"]  # server said, client said, engine note

# The points of one message's journey at which a test may stop the poll (see
# ``poll(..., observe=...)``): after the fetch, once DATA is under way, after the
# final dot but before the reply is read, after the reply but before the
# ledger commit, after the commit, and after the delete command was answered.
PollStep = Literal["fetched", "data", "dot", "replied", "recorded", "deleted"]

# How far a poll (or a connection test) has come, for a person watching it:
# TCP being opened, TCP up, TLS established (implicit or STARTTLS), credentials
# accepted, messages of a folder handled so far, the session being ended.
ProgressStep = Literal[
    "connecting", "connected", "tls", "logged_in", "messages", "logging_out"
]


class Ledger(Protocol):
    """The record of messages already delivered, per folder and UIDVALIDITY.

    ``mark_delivered`` must be durable when it returns: the engine sends the delete
    command to the server only afterwards, so a crash can at worst cause one
    duplicate delivery, never a lost message.
    """

    def delivered_uids(self, folder: str, uidvalidity: int | None) -> set[str]: ...

    def mark_delivered(
        self,
        folder: str,
        uidvalidity: int | None,
        uid: str,
        message_id: str = "",
    ) -> None: ...

    def last_uidvalidity(self, folder: str) -> int | None: ...

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

    def delivered_recipients(
        self, folder: str, uidvalidity: int | None, uid: str
    ) -> set[str]:
        """Recipients already given this message; empty when none is recorded."""
        ...

    def mark_recipients_delivered(
        self,
        folder: str,
        uidvalidity: int | None,
        uid: str,
        recipients: Collection[str],
    ) -> None:
        """Add ``recipients`` to the message's record; durable when it returns.

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
    """What was said on the wire, line by line; secrets are masked before this."""

    def record(self, direction: Direction, text: str) -> None: ...
