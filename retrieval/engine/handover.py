"""One spooled message to the sink: envelope, edits, the listener's answer, bounces.

``run.py`` fetches, records and deletes; everything between "the message is in
the spool" and "this is its fate" happens here, so the poll loop reads the same
whatever the listener is:

1. the envelope: the sender as fetchmail chooses it (``set invisible`` does
   not change it), the recipients that do not have the message yet;
2. ``bad-header reject``: a header line without a colon refuses the message;
3. the sink gets an :class:`~retrieval.engine.transforms.OutgoingMessage`;
4. :func:`~retrieval.engine.policy.decide` turns the answer into a fate, and a
   bounce is sent when the policy orders one; a bounce that fails is noted
   and changes nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from retrieval.engine.bounce import Bounce
from retrieval.engine.errors import ListenerError
from retrieval.engine.headers import bad_header_line, envelope_sender
from retrieval.engine.policy import Decision, decide
from retrieval.engine.report import MessageStatus
from retrieval.engine.sink import Envelope, Verdict
from retrieval.engine.transforms import Edits, OutgoingMessage

if TYPE_CHECKING:
    from retrieval.engine.policy import BounceOrder
    from retrieval.engine.sink import Observe, Sink
    from retrieval.engine.spec import MailboxSpec
    from retrieval.engine.spool import MessageSpool
    from retrieval.engine.trace import TraceInfo


@dataclass
class Handed:
    """What became of one message at the listener."""

    decision: Decision
    reply: str  # the listener's deciding answer, verbatim
    recipients: tuple[str, ...]  # those it was offered to this time
    notes: list[str]


def hand_over(
    spool: MessageSpool,
    *,
    spec: MailboxSpec,
    sink: Sink,
    recipients: tuple[str, ...],
    served: set[str],
    trace: TraceInfo,
    local_name: str,
    observe: Observe | None = None,
) -> Handed:
    """Deliver ``spool`` to those of ``recipients`` not in ``served``."""
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
        trace=None if delivery.invisible else trace,
        dropstatus=options.dropstatus,
        dropdelivered=options.dropdelivered,
        mimedecode=options.mimedecode,
        rewrite_host=spec.server.host if options.rewrite else "",
    )
    message = OutgoingMessage(spool, edits, pass8bits=delivery.pass8bits)
    outcome = sink.deliver(message, Envelope(sender, remaining), observe)
    decision = decide(outcome, delivery, keep=spec.keep, sender=sender)
    notes: list[str] = []
    if decision.bounce is not None:
        notes.append(_bounce(sink, decision.bounce, spool.header_block, local_name))
    if outcome.verdict is Verdict.DEFERRED and outcome.accepted:
        notes.append(
            f"accepted for {', '.join(outcome.accepted)} only; kept for the others"
        )
    return Handed(decision, outcome.reply, remaining, notes)


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
        outcome = sink.deliver(report, Envelope("", (order.to,)))
    except ListenerError as exc:
        return f"the bounce to {order.to} could not be sent: {exc}"
    if outcome.verdict is Verdict.ACCEPTED:
        return f"a bounce was sent to {order.to}"
    return f"the bounce to {order.to} was not accepted: {outcome.reply}"
