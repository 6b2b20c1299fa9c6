"""The engine's two outward interfaces: where seen UIDs live, and where wire talk goes.

The Django side implements them on the ORM, the command line on a file, tests in
memory (see :mod:`retrieval.engine.memory`).
"""

from __future__ import annotations

from typing import Literal, Protocol

Direction = Literal["S", "C", "*"]  # server said, client said, engine note


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


class Transcript(Protocol):
    """What was said on the wire, line by line; secrets are masked before this."""

    def record(self, direction: Direction, text: str) -> None: ...
