"""What the listener's answer means for the copy on the server, and who is told.

fetchmail's rules (``sink.c``, ``driver.c``), with the changes reliability.md
asks for:

* every recipient accepted: delivered, deleted unless ``keep``;
* any temporary answer (4xx, 530, a dropped or silent listener): kept for the
  next poll; recipients that did accept are recorded so the retry skips them;
* only permanent answers (5xx): kept by default (``softbounce``) and shown as
  needing attention; deleted when every refusal is an ``antispam`` code, or
  when softbounce is off. Unlike fetchmail 6.4, whose softbounce also keeps
  antispam refusals, a configured antispam code deletes: configuring it is
  the explicit choice.
* a bounce (RFC 3464 report) is sent only for a refusal that is final (the
  message is being deleted): to the envelope sender with ``bouncemail``, else
  to ``postmaster`` (none when that is empty); never for 553, never for
  antispam codes unless ``spambounce``, never to a null or MAILER-DAEMON
  sender. fetchmail bounces on every 5xx even when softbounce keeps the
  message, which repeats the bounce on each poll; we do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from retrieval.engine.deliver.sink import Verdict
from retrieval.engine.report import MessageStatus

if TYPE_CHECKING:
    from retrieval.engine.deliver.sink import DeliveryOutcome, RecipientReply
    from retrieval.engine.spec import DeliverySpec

NEVER_BOUNCE = 553  # "invalid sending domain": the sender is most likely forged


@dataclass
class BounceOrder:
    """One report to send: to whom, about which refusals, in what words."""

    to: str
    failures: list[RecipientReply]
    reason: str


@dataclass
class Decision:
    status: MessageStatus
    delete: bool = False
    # Recipients to record as served while the message itself stays.
    served: list[str] = field(default_factory=list)
    bounce: BounceOrder | None = None
    note: str = ""


def decide(
    outcome: DeliveryOutcome, delivery: DeliverySpec, *, keep: bool, sender: str
) -> Decision:
    """The fate of one message from its :class:`DeliveryOutcome`."""
    if outcome.verdict is Verdict.ACCEPTED:
        return Decision(MessageStatus.DELIVERED, delete=not keep)
    if outcome.verdict is Verdict.DEFERRED:
        return Decision(MessageStatus.DEFERRED, served=outcome.accepted)
    refused = [r for r in outcome.recipients if r.permanent]
    spam = [r for r in refused if r.code in delivery.antispam]
    as_spam = bool(refused) and len(spam) == len(refused)
    final = not keep and (as_spam or not delivery.softbounce)
    if not final:
        return Decision(
            MessageStatus.REFUSED,
            served=outcome.accepted,
            note=f"refused permanently ({outcome.reply}); kept on the server and "
            "needs attention",
        )
    why = "refused as spam" if as_spam else "refused permanently"
    because = "as configured" if as_spam else "because soft bounces are off"
    return Decision(
        MessageStatus.REFUSED,
        delete=True,
        bounce=bounce_order(refused, delivery, sender),
        note=f"{why} ({outcome.reply}); deleted {because}",
    )


def bounce_order(
    refused: list[RecipientReply], delivery: DeliverySpec, sender: str
) -> BounceOrder | None:
    local = sender.split("@", 1)[0].lower()
    if not sender or local in ("mailer-daemon", "<>"):
        return None  # never bounce a bounce
    to = sender if delivery.bouncemail else delivery.postmaster
    failures = [
        r
        for r in refused
        if r.code != NEVER_BOUNCE
        and (r.code not in delivery.antispam or delivery.spambounce)
    ]
    if not to or not failures:
        return None
    if all(r.code in delivery.antispam for r in failures):
        reason = "A spam filter or virus scanner rejected the message."
    elif all(r.code == 552 for r in failures):
        reason = "The message was too large (SMTP error 552)."
    else:
        reason = "The local mail system refused the message permanently."
    return BounceOrder(to, failures, reason)
