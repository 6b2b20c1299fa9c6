"""Alerts when a mailbox starts failing, is paused, or recovers.

One alert per change of Mailbox.health (services.failures.health_change queues
it once, after commit). The poll never waits for them: the Celery task
``retrieval.tasks.send_alert`` sends the mail (Django's mail backend) to the
owner and the domain's administrators, and queues ``post_webhook``, which POSTs
a JSON body to FETCH_WEBHOOK_URL signed with HMAC-SHA256 under
FETCH_WEBHOOK_SECRET (header X-Fetchweb-Signature: sha256=<hex>) and retries.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import urllib.request
from functools import partial

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from retrieval.display import shown_to
from retrieval.models import Mailbox

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Fetchweb-Signature"
WEBHOOK_TIMEOUT = 10  # seconds

EVENT_STATES = {
    "failing": "failing",
    "paused": "paused",
    "recovered": "ok",
    "reconnect": "reauth",
}
EVENT_WORDS = {
    "failing": "polls are failing",
    "reconnect": "reconnect needed (OAuth2 consent)",
    "paused": "polling paused, needs attention",
    "recovered": "polls work again",
}


def alert_queue(*, mailbox_id: int, event: str, reason: str) -> None:
    """Queue the alert for after the surrounding transaction commits."""
    from retrieval.tasks import send_alert

    transaction.on_commit(partial(send_alert.delay, mailbox_id, event, reason))


def alert_recipients(mailbox: Mailbox) -> list[str]:
    """The owner, then the administrators of the mailbox's domain."""
    found = [mailbox.owner.email]
    if mailbox.domain is not None:
        found += mailbox.domain.admins.order_by("email").values_list("email", flat=True)
    return list(dict.fromkeys(e for e in found if e))


def signature(body: bytes, secret: str | None = None) -> str:
    key = (settings.FETCH_WEBHOOK_SECRET if secret is None else secret).encode()
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


class AlertMailFailed(RuntimeError):
    """The mail server did not take the alert; the task retries the mail."""


def alert_send(
    *, mailbox_id: int, event: str, reason: str, webhook: bool = True
) -> str:
    """Queue the webhook (unless ``webhook`` is False: a retry, which queued it
    already), then mail the alert; returns what was done. Raises AlertMailFailed
    when the mail could not be handed to the mail server."""
    mailbox = (
        Mailbox.objects.select_related("owner", "domain").filter(pk=mailbox_id).first()
    )
    if mailbox is None:
        return f"mailbox {mailbox_id} is gone; no alert"
    # Said to people who may not see the mailbox's commands (display.shown_to).
    reason = shown_to(AnonymousUser(), mailbox).text(reason)
    url = settings.FETCH_BASE_URL + reverse(
        "retrieval:mailbox-detail", args=[mailbox.pk]
    )
    words = EVENT_WORDS.get(event, event)
    if event == "recovered":
        text = "The last poll of this mailbox worked: polling goes on as scheduled."
    elif event == "paused":
        text = (
            f"{reason}\n\nPolling is paused until someone presses Resume on the "
            "mailbox page."
        )
    else:
        text = reason
    done = []
    if webhook and settings.FETCH_WEBHOOK_URL:
        body = json.dumps(
            {
                "event": event,
                "state": EVENT_STATES.get(event, event),
                "mailbox": {
                    "id": mailbox.pk,
                    "name": str(mailbox),
                    "host": mailbox.host,
                    "owner": mailbox.owner.email,
                },
                "reason": reason,
                "url": url,
                "at": timezone.now().isoformat(),
            },
            sort_keys=True,
        )
        from retrieval.tasks import post_webhook

        post_webhook.delay(body)
        done.append("webhook queued")
    recipients = alert_recipients(mailbox)
    if settings.FETCH_ALERT_MAIL and recipients:
        try:
            send_mail(
                subject=f"[fetchweb] {mailbox}: {words}",
                message=f"Mailbox: {mailbox}\nState: {words}\n\n{text}\n\n{url}\n",
                from_email=None,
                recipient_list=recipients,
            )
        except OSError as exc:  # smtplib's errors are OSErrors
            raise AlertMailFailed(str(exc)) from exc
        done.append(f"mailed {len(recipients)}")
    return f"mailbox {mailbox_id} {event}: " + (", ".join(done) or "nobody to tell")


def webhook_post(*, body: str) -> int:
    """POST ``body`` to FETCH_WEBHOOK_URL, signed; returns the HTTP status.

    Raises OSError (urllib's errors are OSErrors) when the receiver cannot be
    reached or answers an error, so that the task retries.
    """
    url = settings.FETCH_WEBHOOK_URL
    if not url:
        return 0
    if not url.startswith(("http://", "https://")):
        logger.error("FETCH_WEBHOOK_URL must be an http or https URL: not sent")
        return 0
    if not settings.FETCH_WEBHOOK_SECRET:
        logger.error(
            "FETCH_WEBHOOK_URL is set but FETCH_WEBHOOK_SECRET is not: not sent"
        )
        return 0
    data = body.encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "fetchweb",
            SIGNATURE_HEADER: signature(data),
        },
    )
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:
        return int(response.status)
