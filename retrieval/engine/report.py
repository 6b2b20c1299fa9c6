"""What a poll did: the outcome, with fetchmail's exit codes, and one line per message."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum


class ExitCode(IntEnum):
    """fetchmail's exit statuses (fetchmail.h), so scripts written for it still work."""

    SUCCESS = 0  # mail delivered
    NOMAIL = 1  # no mail
    SOCKET = 2  # network error: refused, reset, timeout, TLS failure
    AUTHFAIL = 3  # the server refused the credentials
    PROTOCOL = 4  # the server said something we cannot accept
    SYNTAX = 5  # bad configuration or command line
    IOERR = 6  # bad permissions on the rcfile
    ERROR = 7  # the server reported an error
    EXCLUDE = 8  # client-side exclusion error
    LOCKBUSY = 9  # the mailbox is locked (by the server or by another poll)
    SMTP = 10  # the local listener failed
    DNS = 11  # a name did not resolve
    BSMTP = 12  # the batch SMTP file could not be opened
    MAXFETCH = 13  # the poll stopped at the fetch limit
    SERVBUSY = 14  # the server is busy
    UNDEFINED = 23  # anything else


class MessageStatus(StrEnum):
    DELIVERED = "delivered"  # the listener accepted it
    SKIPPED = "skipped"  # already delivered (ledger) or over the size limit
    DEFERRED = "deferred"  # temporary failure: kept for the next poll
    REFUSED = "refused"  # permanent failure: kept unless the mailbox says otherwise
    FAILED = "failed"  # could not be read from the server
    # Kept (keep) and delivered by an earlier poll more than ``delete_after_days``
    # ago: deleted from the server now, without fetching it again.
    EXPIRED = "expired"


@dataclass
class MessageOutcome:
    folder: str
    uid: str
    size: int = 0
    message_id: str = ""
    recipients: tuple[str, ...] = ()
    status: MessageStatus = MessageStatus.DEFERRED
    listener_reply: str = ""  # what the listener (or MDA) answered, verbatim
    deleted: bool = False  # the delete was confirmed by the server


@dataclass
class PollReport:
    exit_code: ExitCode = ExitCode.NOMAIL
    greeting: str = ""
    error: str = ""  # plain words for a person, empty on success
    # The error that ended the poll cannot go away by retrying (EngineError.permanent).
    permanent: bool = False
    messages: list[MessageOutcome] = field(default_factory=list)
    bytes_fetched: int = 0
    notes: list[str] = field(default_factory=list)  # warnings, quirks, ignored options
    properties: str = ""  # the mailbox's opaque ``properties``, passed through

    @property
    def delivered(self) -> int:
        return sum(1 for m in self.messages if m.status is MessageStatus.DELIVERED)

    @property
    def deleted(self) -> int:
        return sum(1 for m in self.messages if m.deleted)

    @property
    def kept(self) -> int:
        return sum(1 for m in self.messages if not m.deleted)
