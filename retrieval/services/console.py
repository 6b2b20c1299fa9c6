"""The mailbox list's bulk actions: pause, resume, poll now, delete.

The view hands over only the mailboxes the person may change
(retrieval.console.changeable); these functions carry the action out on each,
through the same code as the single-object pages, and say how many it touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.utils import timezone

from retrieval.services import polls
from retrieval.services.mailboxes import MailboxBusy, mailbox_delete

if TYPE_CHECKING:
    from collections.abc import Iterable

    from accounts.models import User
    from retrieval.models import Mailbox

BULK_ACTIONS = ("poll", "pause", "resume", "delete")


@dataclass
class BulkResult:
    done: int = 0
    skipped: list[str] = field(default_factory=list)  # why, in plain words


def mailboxes_set_enabled(*, mailboxes: Iterable[Mailbox], enabled: bool) -> int:
    """Pause (enabled=False) or resume each mailbox; one save per row, so that the
    audit log records each change. Returns how many changed."""
    changed = 0
    now = timezone.now()
    for mailbox in mailboxes:
        if mailbox.enabled == enabled:
            continue
        mailbox.enabled = enabled
        fields = ["enabled", "updated_at"]
        if enabled:
            # Resumed: due now, not after whatever interval was pending.
            mailbox.next_poll_at = now
            fields.append("next_poll_at")
        mailbox.save(update_fields=fields)
        changed += 1
    return changed


def mailbox_set_enabled(*, mailbox: Mailbox, enabled: bool) -> bool:
    """The mailbox page's Pause and Resume buttons; True when it changed."""
    return mailboxes_set_enabled(mailboxes=[mailbox], enabled=enabled) == 1


def mailboxes_bulk(
    *, user: User, action: str, mailboxes: Iterable[Mailbox]
) -> BulkResult:
    """Do ``action`` (one of BULK_ACTIONS) on each of ``mailboxes``."""
    rows = list(mailboxes)
    result = BulkResult()
    if action == "pause":
        result.done = mailboxes_set_enabled(mailboxes=rows, enabled=False)
    elif action == "resume":
        result.done = mailboxes_set_enabled(mailboxes=rows, enabled=True)
    elif action == "poll":
        allowed = []
        for mailbox in rows:
            if polls.action_allowed(user=user, mailbox=mailbox, action="poll"):
                allowed.append(mailbox.pk)
            else:
                result.skipped.append(f"{mailbox}: a poll was asked a moment ago")
        result.done = polls.mailboxes_poll_request(mailbox_ids=allowed)
    elif action == "delete":
        for mailbox in rows:
            try:
                mailbox_delete(mailbox=mailbox)
            except MailboxBusy:
                result.skipped.append(f"{mailbox}: being polled right now")
            else:
                result.done += 1
    else:
        raise ValueError(f"unknown bulk action {action!r}")
    return result


__all__ = ["BULK_ACTIONS", "BulkResult", "MailboxBusy", "mailboxes_bulk"]
