"""What polls leave behind: their runs and the ledger of delivered messages.

Polls write them (polls, ports); a superuser may delete them in the admin. A
deleted ledger row means the message is fetched and delivered again if it is
still on the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrieval.services.latest_run import latest_run_refresh

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from retrieval.models import PollRun, SeenMessage


def run_delete(*, run: PollRun) -> None:
    """Delete a poll's record with its messages' results."""
    mailbox_id = run.mailbox_id
    run.delete()
    latest_run_refresh(mailboxes=[mailbox_id])


def runs_delete(*, runs: QuerySet[PollRun]) -> int:
    mailbox_ids = set(runs.values_list("mailbox_id", flat=True))
    count, _ = runs.delete()
    latest_run_refresh(mailboxes=mailbox_ids)
    return count


def ledger_entry_save(*, entry: SeenMessage) -> SeenMessage:
    """Store a ledger row edited by a superuser in the admin."""
    entry.save()
    return entry


def ledger_entry_delete(*, entry: SeenMessage) -> None:
    """Forget one delivered message: a poll fetches it again if it is still there."""
    entry.delete()


def ledger_entries_delete(*, entries: QuerySet[SeenMessage]) -> int:
    count, _ = entries.delete()
    return count
