"""One spooled message to the sink: envelope, edits, the listener's answer, bounces.

``run.py`` fetches, records and deletes; everything between "the message is in
the spool" and "this is its fate" happens here, so the poll loop reads the same
whatever the listener is:

1. the envelope: the sender as fetchmail chooses it (``set invisible`` does
   not change it), the recipients that do not have the message yet;
2. ``bad-header reject``: a header line without a colon refuses the message;
3. the sink gets an :class:`~retrieval.engine.deliver.transforms.OutgoingMessage`;
4. :func:`~retrieval.engine.deliver.policy.decide` turns the answer into a fate, and a
   bounce is sent when the policy orders one; a bounce that fails is noted
   and changes nothing else;
5. multidrop only: when the listener refuses every recipient permanently
   before taking the message, it goes to the postmaster instead, as
   fetchmail's ``open_smtp_sink`` does ("no address matches; forwarding to
   postmaster"), with a bounce for the refusals as ``bouncemail`` says.
   Otherwise it would stay on the server and be refused again at every poll.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from retrieval.engine.deliver.bounce import Bounce
from retrieval.engine.deliver.headers import bad_header_line, envelope_sender
from retrieval.engine.deliver.policy import NEVER_BOUNCE, Decision, bounce_order, decide
from retrieval.engine.deliver.sink import Envelope, Handoff, Upcoming, Verdict
from retrieval.engine.deliver.transforms import Edits, OutgoingMessage
from retrieval.engine.errors import ListenerError
from retrieval.engine.report import MessageStatus
from retrieval.engine.spec import DeliveryKind

if TYPE_CHECKING:
    from collections.abc import Callable

    from retrieval.engine.deliver.policy import BounceOrder
    from retrieval.engine.deliver.sink import DeliveryOutcome, Observe, Sink
    from retrieval.engine.deliver.trace import TraceInfo
    from retrieval.engine.ports import PollStep
    from retrieval.engine.spec import DeliverySpec, MailboxSpec
    from retrieval.engine.wire.spool import MessageSpool


@dataclass
class Handed:
    """What became of one message at the listener."""

    decision: Decision
    reply: str  # the listener's deciding answer, verbatim
    recipients: tuple[str, ...]  # those it was offered to this time
    notes: list[str]


@dataclass
class Prepared:
    """A message ready for the sink: what it is sent as, and to whom."""

    spool: MessageSpool
    message: OutgoingMessage
    envelope: Envelope

    @property
    def upcoming(self) -> Upcoming:
        return Upcoming(self.message, self.envelope)


def prepare(
    spool: MessageSpool,
    *,
    spec: MailboxSpec,
    recipients: tuple[str, ...],
    served: set[str],
    trace: TraceInfo,
) -> Prepared | Handed:
    """Steps 1-2 above: the envelope and the edits for ``spool``, or its fate
    when it goes to no listener at all (nobody left to serve, a bad header)."""
    delivery, options = spec.delivery, spec.message
    remaining = tuple(r for r in recipients if r not in served)
    if not remaining:
        decision = Decision(MessageStatus.DELIVERED, delete=not spec.keep)
        return Handed(decision, "delivered to every recipient by earlier polls", (), [])
    if not options.badheader_accept:
        bad = bad_header_line(spool.header_block)
        if bad is not None:
            return _bad_header(spec, bad, remaining)
    sender = envelope_sender(
        spool.header_block, remote_user=spec.username, server=spec.server.host
    )
    edits = Edits(
        # Into a mailbox (kind IMAP) the message goes as it was on the source.
        trace=None
        if delivery.invisible or delivery.kind is DeliveryKind.IMAP
        else trace,
        dropstatus=options.dropstatus,
        dropdelivered=options.dropdelivered,
        mimedecode=options.mimedecode,
        rewrite_host=spec.server.host if options.rewrite else "",
    )
    message = OutgoingMessage(spool, edits, pass8bits=delivery.pass8bits)
    return Prepared(spool, message, Envelope(sender, remaining))


def deliver(
    ready: Prepared | Handed,
    *,
    spec: MailboxSpec,
    sink: Sink,
    local_name: str,
    observe: Observe | None = None,
    postmaster: tuple[str, ...] = (),
    then: Prepared | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> Handed:
    """Steps 3-5 above for a prepared message; ``then`` is the one the poll
    delivers next, announced to the sink, and ``meanwhile`` what the poll
    does while the listener judges this one (see ``Handoff``)."""
    if isinstance(ready, Handed):
        return ready
    delivery = spec.delivery
    spool, message, envelope = ready.spool, ready.message, ready.envelope
    sender = envelope.mail_from
    sent: list[PollStep] = []

    def watch(step: PollStep) -> None:
        sent.append(step)
        if observe is not None:
            observe(step)

    outcome = sink.deliver(
        Handoff(
            message,
            envelope,
            watch,
            then.upcoming if then is not None else None,
            meanwhile,
        )
    )
    if postmaster and "data" not in sent and _everyone_refused(outcome, delivery):
        rerouted = _to_postmaster(
            message, outcome, spec, sink, postmaster, sender, observe
        )
        if rerouted is not None:
            order = rerouted.decision.bounce
            if order is not None:
                rerouted.notes.append(
                    _bounce(sink, order, spool.header_block, local_name)
                )
                rerouted.decision.bounce = None
            return rerouted
    decision = decide(outcome, delivery, keep=spec.keep, sender=sender)
    notes: list[str] = []
    if decision.bounce is not None:
        notes.append(_bounce(sink, decision.bounce, spool.header_block, local_name))
    if outcome.verdict is Verdict.DEFERRED and outcome.accepted:
        notes.append(
            f"accepted for {', '.join(outcome.accepted)} only; kept for the others"
        )
    return Handed(decision, outcome.reply, envelope.recipients, notes)


def _everyone_refused(outcome: DeliveryOutcome, delivery: DeliverySpec) -> bool:
    """Every recipient refused for good, none for the message itself.

    552 (too large), 553 (bad sender) and the antispam codes refuse the
    message, not a recipient: the postmaster would refuse it too.
    """
    if delivery.kind not in (DeliveryKind.SMTP, DeliveryKind.LMTP):
        return False
    if outcome.verdict is not Verdict.REFUSED or outcome.accepted:
        return False
    about_message = {552, NEVER_BOUNCE, *delivery.antispam}
    return bool(outcome.recipients) and all(
        r.permanent and r.code not in about_message for r in outcome.recipients
    )


def _to_postmaster(
    message: OutgoingMessage,
    refused: DeliveryOutcome,
    spec: MailboxSpec,
    sink: Sink,
    postmaster: tuple[str, ...],
    sender: str,
    observe: Observe | None,
) -> Handed | None:
    """Deliver to the postmaster what every recipient refused; None when the
    postmaster was among them. A refusing postmaster leaves the usual rules."""
    if _among(postmaster, [r.recipient for r in refused.recipients]):
        return None
    names = ", ".join(r.recipient for r in refused.recipients)
    outcome = sink.deliver(Handoff(message, Envelope(sender, postmaster), observe))
    to = ", ".join(postmaster)
    reply = f"{refused.reply}; to the postmaster ({to}): {outcome.reply}"
    if outcome.verdict is Verdict.REFUSED:
        decision = decide(refused, spec.delivery, keep=spec.keep, sender=sender)
        decision.note += f"; the postmaster ({to}) refused it too ({outcome.reply})"
        return Handed(
            decision, reply, tuple(r.recipient for r in refused.recipients), []
        )
    if outcome.verdict is Verdict.DEFERRED:
        decision = Decision(
            MessageStatus.DEFERRED,
            note=f"every recipient ({names}) was refused permanently "
            f"({refused.reply}); the postmaster ({to}) could not take it now "
            f"({outcome.reply}); kept for the next poll",
        )
        return Handed(decision, reply, postmaster, [])
    failures = [r for r in refused.recipients if r.permanent]
    decision = Decision(
        MessageStatus.DELIVERED,
        delete=not spec.keep,
        bounce=bounce_order(failures, spec.delivery, sender),
        note=f"every recipient ({names}) was refused permanently "
        f"({refused.reply}); delivered to the postmaster ({to}) instead, as "
        "fetchmail does",
    )
    return Handed(decision, reply, postmaster, [])


def _among(postmaster: tuple[str, ...], refused: list[str]) -> bool:
    """True when every postmaster address was refused already; a bare name
    matches by local part, as the listener qualifies it."""
    full = {a.lower() for a in refused}
    local = {a.rpartition("@")[0] or a for a in full}
    return all(p.lower() in (full if "@" in p else local) for p in postmaster)


def _bad_header(spec: MailboxSpec, line: bytes, recipients: tuple[str, ...]) -> Handed:
    shown = line.decode("latin-1")[:80]
    final = not spec.keep and not spec.delivery.softbounce
    fate = "deleted because soft bounces are off" if final else "kept on the server"
    decision = Decision(
        MessageStatus.REFUSED,
        delete=final,
        note=f"refused for a bad header line ({shown!r}; see bad-header); {fate}",
    )
    return Handed(decision, f"bad header line: {shown!r}", recipients, [])


def _bounce(sink: Sink, order: BounceOrder, header: bytes, local_name: str) -> str:
    report = Bounce(
        to=order.to,
        failures=order.failures,
        reason=order.reason,
        reporting_host=local_name,
        original_header=header,
    )
    try:
        outcome = sink.deliver(Handoff(report, Envelope("", (order.to,))))
    except ListenerError as exc:
        return f"the bounce to {order.to} could not be sent: {exc}"
    if outcome.verdict is Verdict.ACCEPTED:
        return f"a bounce was sent to {order.to}"
    return f"the bounce to {order.to} was not accepted: {outcome.reply}"
