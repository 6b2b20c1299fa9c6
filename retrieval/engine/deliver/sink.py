"""Where fetched mail goes: the shared shape of SMTP, LMTP and MDA delivery.

A sink takes one message at a time and says, per recipient, what the listener
answered. ``run.py`` (with :mod:`retrieval.engine.deliver.policy`) turns the
:class:`DeliveryOutcome` into keep or delete; the sinks themselves never decide
anything about the remote copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from retrieval.engine.errors import ConfigError
from retrieval.engine.spec import DeliveryKind

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from retrieval.engine.deliver.kept_listeners import KeptListeners
    from retrieval.engine.ports import PollStep, Transcript
    from retrieval.engine.spec import DeliverySpec, MessageOptions

    Observe = Callable[[PollStep], None]


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

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    def shown(self) -> str:
        return f"{self.code} {self.text}".strip() if self.code else self.text


@dataclass
class DeliveryOutcome:
    verdict: Verdict
    reply: str  # the answer that decided the verdict, verbatim ("451 4.3.0 ...")
    recipients: list[RecipientReply] = field(default_factory=list)

    @property
    def accepted(self) -> list[str]:
        """Recipients that have the message now."""
        return [r.recipient for r in self.recipients if r.accepted]

    @classmethod
    def from_replies(cls, replies: list[RecipientReply]) -> DeliveryOutcome:
        """Combine per-recipient replies: one temporary failure keeps the message.

        530 (STARTTLS required) counts as temporary, as in fetchmail: it is a
        listener configuration problem, not a verdict on the message.
        """
        temporary = [
            r for r in replies if not r.accepted and (not r.permanent or r.code == 530)
        ]
        permanent = [r for r in replies if r.permanent and r.code != 530]
        if temporary:
            return cls(Verdict.DEFERRED, temporary[0].shown(), replies)
        if permanent:
            return cls(Verdict.REFUSED, permanent[0].shown(), replies)
        last = replies[-1] if replies else RecipientReply("", 0, "no recipients")
        return cls(Verdict.ACCEPTED, last.shown(), replies)


class Deliverable(Protocol):
    """A message as a sink sends it (see :class:`~retrieval.engine.deliver.transforms.
    OutgoingMessage`; bounces are deliverables too)."""

    @property
    def needs_8bit(self) -> bool: ...

    @property
    def size(self) -> int: ...

    def chunks(self, recipients: Sequence[str]) -> Iterator[bytes]:
        """The bytes to send, given the recipients the listener accepted."""
        ...


@dataclass(frozen=True)
class Upcoming:
    """The message the poll will deliver next, announced with this one."""

    message: Deliverable
    envelope: Envelope


@dataclass(frozen=True)
class Handoff:
    """One message for a sink: what to send, to whom, and who watches it go.

    ``observe`` is told "data" once the first bytes of the message are on
    their way and "dot" when all of it is, before any reply is read (the
    crash tests stop the poll there); bounces go unobserved. ``then``, when
    given, is the next hand-off's message and envelope: a sink that
    ``sends_ahead`` may send that envelope behind this message's final dot.
    The next hand-off must then be for exactly that message, or it costs the
    listener connection.

    ``meanwhile``, when given, is work of the poll's own (reading a later
    message from the server) that a sink may do while the listener judges
    this message: once, after the final dot and before the first reply is
    read, so that the listener's work and ours overlap. A sink that does not
    call it leaves that work to the poll, after the verdict.
    """

    message: Deliverable
    envelope: Envelope
    observe: Observe | None = None
    then: Upcoming | None = None
    meanwhile: Callable[[], None] | None = None

    def reached(self, step: PollStep) -> None:
        """The sink says how far the message got (see ``observe``)."""
        if self.observe is not None:
            self.observe(step)

    def awaiting_verdict(self) -> None:
        """The sink says all of the message is sent and it now waits for the
        listener's answer: the poll's ``meanwhile`` runs here."""
        if self.meanwhile is not None:
            self.meanwhile()


class Sink(Protocol):
    """Opened lazily on the first message; one connection serves the whole poll."""

    @property
    def sends_ahead(self) -> bool:
        """Whether announcing the next message (``Handoff.then``) saves a round
        trip: the poll then reads that message from the server before this one."""
        ...

    def deliver(self, handoff: Handoff) -> DeliveryOutcome:
        """Hand over ``handoff.message``; ListenerUnavailable if nothing answers."""
        ...

    def close(self, *, keep: bool = False) -> None:
        """``keep``: the poll ended cleanly, so a connection may stay open for
        the next poll where connections are kept (``kept_listeners.py``)."""
        ...


def open_sink(
    delivery: DeliverySpec,
    transcript: Transcript,
    *,
    batch_limit: int = 0,
    helo: str = "",
    message: MessageOptions | None = None,
    kept: KeptListeners | None = None,
) -> Sink:
    """The sink for ``delivery``; ``helo`` is the name we give in EHLO/LHLO;
    ``kept``: listener connections kept between polls."""
    from retrieval.engine.deliver.bsmtp import BsmtpSink
    from retrieval.engine.deliver.mda import MdaSink
    from retrieval.engine.deliver.smtp import SmtpSink

    if delivery.kind is DeliveryKind.IMAP:
        raise ConfigError(
            "Delivery into an IMAP mailbox is not available here (ODMR and ETRN "
            "hand mail to an SMTP listener)."
        )
    if delivery.kind is DeliveryKind.BSMTP:
        return BsmtpSink(delivery, transcript)
    if delivery.kind is DeliveryKind.MDA:
        return MdaSink(delivery, transcript, message=message)
    return SmtpSink(
        delivery,
        transcript,
        lmtp=delivery.kind is DeliveryKind.LMTP,
        batch_limit=batch_limit,
        helo=helo,
        kept=kept,
    )
