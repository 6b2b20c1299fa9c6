"""Where fetched mail goes: the shared shape of SMTP, LMTP and MDA delivery.

A sink takes one spooled message at a time and says, per recipient, what the
listener answered. ``run.py`` turns the :class:`DeliveryOutcome` into keep or
delete; the sinks themselves never decide anything about the remote copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from retrieval.engine.spec import DeliveryKind

if TYPE_CHECKING:
    from retrieval.engine.ports import Transcript
    from retrieval.engine.spec import DeliverySpec
    from retrieval.engine.spool import MessageSpool


class Verdict(StrEnum):
    ACCEPTED = "accepted"  # every recipient accepted it
    DEFERRED = "deferred"  # a temporary failure somewhere: keep, retry later
    REFUSED = "refused"  # permanent failure, no temporary one


@dataclass(frozen=True)
class Envelope:
    mail_from: str  # "" is the null sender
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class RecipientReply:
    recipient: str
    code: int  # SMTP reply code; 0 when the connection failed before a reply
    text: str


@dataclass
class DeliveryOutcome:
    verdict: Verdict
    reply: str  # the answer that decided the verdict, verbatim ("451 4.3.0 ...")
    recipients: list[RecipientReply] = field(default_factory=list)

    @property
    def refusal_codes(self) -> set[int]:
        return {r.code for r in self.recipients if 500 <= r.code < 600}

    @classmethod
    def from_replies(cls, replies: list[RecipientReply]) -> DeliveryOutcome:
        """Combine per-recipient replies: one temporary failure keeps the message."""
        temporary = [r for r in replies if not 200 <= r.code < 300 and r.code < 500]
        permanent = [r for r in replies if r.code >= 500]
        if temporary:
            worst = temporary[0]
            return cls(Verdict.DEFERRED, _show(worst), replies)
        if permanent:
            return cls(Verdict.REFUSED, _show(permanent[0]), replies)
        last = replies[-1] if replies else RecipientReply("", 0, "no recipients")
        return cls(Verdict.ACCEPTED, _show(last), replies)


def _show(reply: RecipientReply) -> str:
    return f"{reply.code} {reply.text}".strip() if reply.code else reply.text


class Sink(Protocol):
    """Opened lazily on the first message; one connection serves the whole poll."""

    def deliver(
        self, message: MessageSpool, envelope: Envelope, trace: bytes
    ) -> DeliveryOutcome:
        """Hand over ``trace`` + ``message``; ListenerUnavailable if nothing answers."""
        ...

    def close(self) -> None: ...


def open_sink(
    delivery: DeliverySpec, transcript: Transcript, *, batch_limit: int = 0
) -> Sink:
    from retrieval.engine.mda import MdaSink
    from retrieval.engine.smtp import SmtpSink

    if delivery.kind is DeliveryKind.MDA:
        return MdaSink(delivery, transcript)
    return SmtpSink(
        delivery,
        transcript,
        lmtp=delivery.kind is DeliveryKind.LMTP,
        batch_limit=batch_limit,
    )
