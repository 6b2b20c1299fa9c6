"""The engine's ports on the ORM: the ledger (SeenMessage rows) and the transcript.

The engine (retrieval.engine) knows nothing of Django; a poll hands it these. They
write only what the engine reports during a poll, so they are part of the write
path of retrieval.services, used by its polls and connection tests. There is no
ORM sink: delivery goes to the listener the spec names (the engine's own sinks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from retrieval.engine.redact import WITHHELD, SecretMatcher
from retrieval.models import Mailbox, SeenMessage

if TYPE_CHECKING:
    from collections.abc import Collection
    from datetime import datetime

    from django.db.models import QuerySet

    from retrieval.engine.ports import Direction

MASK = "********"


# --- the engine's ports, on the ORM ----------------------------------------------


class DatabaseLedger:
    """The engine's Ledger on SeenMessage rows.

    Django runs in autocommit mode here (``mailbox_poll`` refuses to run inside a
    transaction), so ``mark_delivered`` has committed when it returns: the engine
    deletes from the server only after that.
    """

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    def _rows(self, folder: str, uidvalidity: int | None) -> QuerySet[SeenMessage]:
        return SeenMessage.objects.filter(
            mailbox=self.mailbox, folder=folder, uidvalidity=uidvalidity or 0
        )

    def delivered_uids(self, folder: str, uidvalidity: int | None) -> set[str]:
        rows = self._rows(folder, uidvalidity).filter(complete=True)
        return set(rows.values_list("uid", flat=True))

    def mark_delivered(
        self,
        folder: str,
        uidvalidity: int | None,
        uid: str,
        message_id: str = "",
        at: datetime | None = None,
    ) -> None:
        """A new row is dated ``at``; a partial one becomes complete and is dated
        then; a complete one (``fetchall`` with keep delivered it again) keeps
        its first date, from which ``delete_after_days`` counts."""
        at = at or timezone.now()
        row, created = SeenMessage.objects.get_or_create(
            mailbox=self.mailbox,
            folder=folder,
            uidvalidity=uidvalidity or 0,
            uid=uid,
            defaults={
                "message_id": message_id[:998],
                "complete": True,
                "delivered_at": at,
            },
        )
        if not created and not row.complete:
            row.complete, row.delivered_at = True, at
            row.save(update_fields=["complete", "delivered_at"])

    def delivery_dates(
        self, folder: str, uidvalidity: int | None, *, now: datetime
    ) -> dict[str, datetime]:
        rows = self._rows(folder, uidvalidity).filter(complete=True)
        return dict(rows.values_list("uid", "delivered_at"))

    def delivered_recipients(
        self, folder: str, uidvalidity: int | None, uid: str
    ) -> set[str]:
        row = self._rows(folder, uidvalidity).filter(uid=uid).first()
        return set(row.recipients) if row is not None else set()

    def mark_recipients_delivered(
        self,
        folder: str,
        uidvalidity: int | None,
        uid: str,
        recipients: Collection[str],
    ) -> None:
        with transaction.atomic():
            row, _ = SeenMessage.objects.select_for_update().get_or_create(
                mailbox=self.mailbox,
                folder=folder,
                uidvalidity=uidvalidity or 0,
                uid=uid,
                defaults={"complete": False},
            )
            row.recipients = sorted(set(row.recipients) | set(recipients))
            row.save(update_fields=["recipients"])

    def last_uidvalidity(self, folder: str) -> int | None:
        latest = (
            SeenMessage.objects.filter(mailbox=self.mailbox, folder=folder)
            .order_by("-delivered_at", "-id")
            .values_list("uidvalidity", flat=True)
            .first()
        )
        return latest or None

    def forget_missing(
        self, folder: str, uidvalidity: int | None, present: set[str]
    ) -> None:
        known = set(self._rows(folder, uidvalidity).values_list("uid", flat=True))
        gone = known - present
        gone_list = sorted(gone)
        for start in range(0, len(gone_list), 500):
            self._rows(folder, uidvalidity).filter(
                uid__in=gone_list[start : start + 500]
            ).delete()


class RecordingTranscript:
    """Collects the wire talk for the PollRun, bounded, with secrets checked again.

    The engine masks what it sends and withholds lines that echo a secret; the
    same check here (never a substring replacement, which would show where the
    secret sat) means nothing that slipped past it reaches the database or log.
    """

    def __init__(
        self, *, secrets: tuple[str, ...], limit: int, echo: bool = False
    ) -> None:
        self._secrets = SecretMatcher(secrets)
        self._limit = limit
        self._size = 0
        self._truncated = False
        self.lines: list[str] = []
        self.echo = echo

    def mask(self, text: str) -> str:
        """``text``, or a fixed note in its place when it carries a secret."""
        return self._secrets.scrub(text)

    def record(self, direction: Direction, text: str) -> None:
        line = f"{direction}: {self._secrets.scrub(text, WITHHELD[direction])}"
        if self.echo:
            print(line, flush=True)  # noqa: T201  (manage.py poll -v)
        if self._size + len(line) > self._limit:
            if not self._truncated:
                self.lines.append("*: (transcript truncated)")
                self._truncated = True
            return
        self._size += len(line) + 1
        self.lines.append(line)

    def text(self) -> str:
        return "\n".join(self.lines)
