"""The engine's ports on the ORM: the ledger (SeenMessage rows) and the transcript.

The engine (retrieval.engine) knows nothing of Django; a poll hands it these. They
write only what the engine reports during a poll, so they are part of the write
path of retrieval.services, used by its polls and connection tests. There is no
ORM sink: delivery goes to the listener the spec names (the engine's own sinks).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from django.db import connections, router, transaction
from django.db.models import F
from django.utils import timezone

from retrieval.engine.redact import WITHHELD, SecretMatcher
from retrieval.models import Mailbox, SeenMessage
from retrieval.services.pipelined import (
    INT8,
    TEXT,
    TIMESTAMPTZ,
    PipelinedWrites,
    numbered,
)

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator
    from datetime import datetime

    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models import QuerySet

    from retrieval.engine.ports import Direction, MessageKey

MASK = "********"
# Marks in one poll after which the rest go through a connection of their own,
# without waiting for each answer (PipelinedWrites): opening it costs about as
# much as a few round trips, so a poll of a few messages does not.
PIPELINE_AFTER = 8


# --- the engine's ports, on the ORM ----------------------------------------------


class DatabaseLedger:
    """The engine's Ledger on SeenMessage rows, with group commit on PostgreSQL.

    Django runs in autocommit mode here (``mailbox_poll`` refuses to run inside a
    transaction). Each mark is its own transaction committed with
    ``synchronous_commit = off`` for that transaction alone (``SET LOCAL``, or
    ``set_config(..., true)`` inside the one upsert statement of a full
    delivery): the commit returns once the record is
    in the server's WAL buffers, before the WAL is flushed, so it survives the
    death of this worker (the server flushes it within 3 x wal_writer_delay) but
    not a crash of the database host. :meth:`sync`, which the engine calls before
    the server may commit a deletion (POP3 QUIT, IMAP EXPUNGE), commits one more
    write with ``synchronous_commit = on``: its commit waits for the WAL to be
    flushed up to its own commit record, which follows every earlier mark's, so
    every mark is durable when it returns. It must be a write: a transaction that
    wrote no WAL commits without waiting for the flush (``SELECT 1`` would not do).

    After PIPELINE_AFTER marks in a poll, the rest are sent on a connection of
    their own without waiting for each answer (see retrieval/services/pipelined.py:
    sent is written, as far as a killed worker goes); every other method reads
    the last answer first, so it sees every mark, and ``sync`` commits on that
    connection, after its marks. A failed mark is then reported one message
    later: a database failure in the middle of such a poll can deliver two
    messages again, not one. :meth:`close` ends that connection.

    SQLite has no asynchronous commit per transaction: every mark is durable when
    it returns (Django's SQLite runs with ``synchronous = FULL``), and ``sync``
    has nothing left to do.
    """

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self._using = router.db_for_write(SeenMessage)
        self._group_commit = connections[self._using].vendor == "postgresql"
        # The row written last and not yet made durable (folder, uidvalidity, uid).
        self._unsynced: tuple[str, int, str] | None = None
        # The driver's own cursor for the marks, kept for the poll (see
        # _mark_asynchronously).
        self._raw_cursor: Any = None
        self._recipients: dict[tuple[str, int], dict[str, set[str]]] = {}
        # Folders last_uidvalidity found without a single row: none of their
        # messages was served to anyone yet, at any UIDVALIDITY.
        self._unserved: set[str] = set()
        # Read with last_uidvalidity for delivered_uids, which the engine asks
        # next: (folder, uidvalidity or None for "the folder has no rows", uids).
        self._ahead: tuple[str, int | None, set[str]] | None = None
        self._marks = 0
        self._pipe: PipelinedWrites | None = None

    @contextmanager
    def _written(self, key: MessageKey) -> Iterator[None]:
        """One mark's transaction: committed without waiting for the WAL flush."""
        with transaction.atomic(using=self._using):
            if self._group_commit:
                with connections[self._using].cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit = off")
            yield
        if self._group_commit:
            self._unsynced = (key.folder, key.uidvalidity or 0, key.uid)

    def _answered(self) -> None:
        """Every mark sent so far answered (committed, or its error raised)."""
        if self._pipe is not None:
            self._pipe.wait()

    def close(self) -> None:
        """End the poll's own connection for marks, if it opened one."""
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            pipe.close()

    def sync(self) -> None:
        self._answered()
        if self._unsynced is None:
            return
        folder, uidvalidity, uid = self._unsynced
        if self._pipe is not None:
            # On the marks' own connection: its commit follows theirs.
            params = [str(self.mailbox.pk), folder, str(uidvalidity or 0), uid]
            self._pipe.send(_SYNC_PIPELINED, params, (INT8, TEXT, INT8, TEXT))
            self._pipe.wait()
            self._unsynced = None
            return
        if self._group_commit:
            # The same in one statement and one round trip (not four: BEGIN, SET
            # LOCAL, UPDATE, COMMIT), as _UPSERT_ASYNC does with "off".
            with connections[self._using].cursor() as cursor:
                cursor.execute(
                    _SYNC_POSTGRESQL,
                    [self.mailbox.pk, folder, uidvalidity or 0, uid],
                )
            self._unsynced = None
            return
        with transaction.atomic(using=self._using):
            with connections[self._using].cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = on")
            # Rewrite the last mark (the same values). Should forget_missing have
            # deleted that row since, its own synchronous commit came after the
            # mark and flushed it already; this transaction then waits for nothing.
            self._rows(folder, uidvalidity).filter(uid=uid).update(
                complete=F("complete")
            )
        self._unsynced = None

    def _rows(self, folder: str, uidvalidity: int | None) -> QuerySet[SeenMessage]:
        return SeenMessage.objects.filter(
            mailbox=self.mailbox, folder=folder, uidvalidity=uidvalidity or 0
        )

    def delivered_uids(self, folder: str, uidvalidity: int | None) -> set[str]:
        self._answered()
        ahead, self._ahead = self._ahead, None
        if (
            ahead is not None
            and ahead[0] == folder
            and ahead[1] in (None, uidvalidity or 0)
        ):
            return ahead[2]
        rows = self._rows(folder, uidvalidity).filter(complete=True)
        return set(rows.values_list("uid", flat=True))

    def mark_delivered(
        self, key: MessageKey, message_id: str = "", at: datetime | None = None
    ) -> None:
        """A new row is dated ``at``; a partial one becomes complete and is dated
        then; a complete one (``fetchall`` with keep delivered it again) keeps
        its first date, from which ``delete_after_days`` counts."""
        folder, uidvalidity, uid = key
        self._ahead = None
        at = at or timezone.now()
        if self._group_commit:
            self._mark_asynchronously(folder, uidvalidity or 0, uid, message_id, at)
            return
        with self._written(key):
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

    def _mark_asynchronously(
        self, folder: str, uidvalidity: int, uid: str, message_id: str, at: datetime
    ) -> None:
        """The same upsert in one statement and one round trip (not four: BEGIN,
        SET LOCAL, INSERT, COMMIT). ``set_config(..., true)`` is SET LOCAL: it
        holds until the end of the statement's own transaction, whose commit
        reads it; the next statement runs with the session's setting again.

        One statement a message, so its client side counts (issue 14, per
        message): it goes through the database driver's cursor, kept for the
        poll, not through a new Django cursor wrapper each time (a third of
        the mark's CPU). The same statement on the same connection and
        transaction state; database errors still arrive as Django's. With
        DEBUG, or while a test captures the statements, it goes through
        Django's cursor so that it is logged like any other."""
        params: tuple[int, str, int, str, str, datetime] = (
            self.mailbox.pk,
            folder,
            uidvalidity,
            uid,
            message_id[:998],
            at,
        )
        db = connections[self._using]
        self._marks += 1
        logged = db.queries_logged or db.execute_wrappers
        if (
            self._pipe is None
            and self._marks > PIPELINE_AFTER
            and not logged
            # In a transaction (a test's), the marks belong to it: another
            # connection would not even see the mailbox's row.
            and not db.in_atomic_block
        ):
            self._pipe = PipelinedWrites(db)
        if self._pipe is not None:
            self._pipe.send(
                _UPSERT_PIPELINED,
                [str(v) for v in params[:5]] + [at.isoformat()],
                (INT8, TEXT, INT8, TEXT, TEXT, TIMESTAMPTZ),
            )
        elif logged:
            with db.cursor() as cursor:
                cursor.execute(_UPSERT_ASYNC, params)
        else:
            with db.wrap_database_errors:
                self._driver_cursor(db).execute(_UPSERT_ASYNC, params)
        self._unsynced = (folder, uidvalidity, uid)

    def _driver_cursor(self, db: BaseDatabaseWrapper) -> Any:
        """The driver's cursor on Django's current connection (a new one should
        Django have reconnected since the last mark)."""
        db.ensure_connection()
        cursor = self._raw_cursor
        if cursor is None or cursor.closed or cursor.connection is not db.connection:
            cursor = self._raw_cursor = db.connection.cursor()
        return cursor

    def _served(self, folder: str, uidvalidity: int | None) -> dict[str, set[str]]:
        """The folder's rows that name recipients, read once per poll (one query,
        not one per message): this poll holds the mailbox's lease and lock, so
        it is the only writer, and keeps the copy current itself."""
        key = (folder, uidvalidity or 0)
        if key not in self._recipients and folder in self._unserved:
            self._recipients[key] = {}  # nothing to read: kept current from here
        if key not in self._recipients:
            self._answered()
            rows = (
                self._rows(folder, uidvalidity)
                .exclude(recipients=[])
                .values_list("uid", "recipients")
            )
            self._recipients[key] = {uid: set(names) for uid, names in rows}
        return self._recipients[key]

    def delivery_dates(
        self, folder: str, uidvalidity: int | None, *, now: datetime
    ) -> dict[str, datetime]:
        self._answered()
        rows = self._rows(folder, uidvalidity).filter(complete=True)
        return dict(rows.values_list("uid", "delivered_at"))

    def delivered_recipients(self, key: MessageKey) -> set[str]:
        return set(self._served(key.folder, key.uidvalidity).get(key.uid, ()))

    def mark_recipients_delivered(
        self, key: MessageKey, recipients: Collection[str]
    ) -> None:
        folder, uidvalidity, uid = key
        self._ahead = None
        self._answered()
        with self._written(key):
            row, _ = SeenMessage.objects.select_for_update().get_or_create(
                mailbox=self.mailbox,
                folder=folder,
                uidvalidity=uidvalidity or 0,
                uid=uid,
                defaults={"complete": False},
            )
            row.recipients = sorted(set(row.recipients) | set(recipients))
            row.save(update_fields=["recipients"])
        self._served(folder, uidvalidity)[uid] = set(row.recipients)

    def last_uidvalidity(self, folder: str) -> int | None:
        """The UIDVALIDITY of the folder's newest delivery, read in the same
        statement as the rows under it: the engine asks next for the UIDs
        delivered (run.py ``_known``) and, per message, for the recipients
        already served (``delivered_recipients``), at the server's
        UIDVALIDITY, which is this one unless the server renumbered the
        folder. One round trip on every IMAP poll, where there were three."""
        self._answered()
        with connections[self._using].cursor() as cursor:
            cursor.execute(_LAST_UIDVALIDITY, [self.mailbox.pk, folder] * 2)
            rows = cursor.fetchall()
        if not rows:
            self._ahead = (folder, None, set())  # no rows: nothing delivered
            self._unserved.add(folder)
            return None
        latest = rows[0][0]
        delivered: set[str] = set()
        served: dict[str, set[str]] = {}
        for _, uid, complete, recipients in rows:
            if uid is None:
                continue  # the LEFT JOIN's row when there are none
            if complete:
                delivered.add(uid)
            names = (
                json.loads(recipients) if isinstance(recipients, str) else recipients
            )
            if names:
                served[uid] = set(names)
        self._ahead = (folder, latest, delivered)
        # Kept up to date by this ledger's own writes from now on (_served).
        self._recipients.setdefault((folder, latest), served)
        return latest or None

    def forget_missing(
        self, folder: str, uidvalidity: int | None, present: set[str]
    ) -> None:
        self._ahead = None
        self._answered()
        if self._group_commit:
            # PostgreSQL: one statement, where the ORM took three (the rows'
            # UIDs, the recipients' rows, the delete): a poll after one that
            # deleted mail prunes those rows, and this was its largest cost.
            with connections[self._using].cursor() as cursor:
                cursor.execute(
                    _FORGET_POSTGRESQL,
                    [self.mailbox.pk, folder, uidvalidity or 0, sorted(present)],
                )
                gone = {row[0] for row in cursor.fetchall()}
        else:
            known = set(self._rows(folder, uidvalidity).values_list("uid", flat=True))
            gone = known - present
            gone_list = sorted(gone)
            for start in range(0, len(gone_list), 500):
                self._rows(folder, uidvalidity).filter(
                    uid__in=gone_list[start : start + 500]
                ).delete()
        # The recipients' copy, if this poll read it (else it is read after this).
        served = self._recipients.get((folder, uidvalidity or 0))
        if served is not None:
            for uid in gone:
                served.pop(uid, None)


_SEEN = SeenMessage._meta.db_table
_UPSERT_ASYNC = (
    f"INSERT INTO {_SEEN} "  # a table name from the model, no input
    "(mailbox_id, folder, uidvalidity, uid, message_id, delivered_at, recipients, "
    "complete) SELECT %s, %s, %s, %s, %s, %s, '[]'::jsonb, true "
    "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS group_commit "
    "ON CONFLICT (mailbox_id, folder, uidvalidity, uid) DO UPDATE SET complete = true, "
    # A partial row is dated now that it is complete; a complete one (fetchall
    # with keep delivered it again) keeps its first date (delete_after_days).
    f"delivered_at = CASE WHEN {_SEEN}.complete THEN {_SEEN}.delivered_at "
    "ELSE EXCLUDED.delivered_at END"
)


# sync: the last mark rewritten (the same values: a write, so its commit waits
# for the WAL flush) in a transaction committed with synchronous_commit on.
_SYNC_POSTGRESQL = (
    f"UPDATE {_SEEN} SET complete = {_SEEN}.complete "  # no input
    "FROM (SELECT set_config('synchronous_commit', 'on', true)) AS durable "
    "WHERE mailbox_id = %s AND folder = %s AND uidvalidity = %s AND uid = %s"
)
# The same two on the marks' own connection (libpq's $n placeholders).
_UPSERT_PIPELINED = numbered(_UPSERT_ASYNC)
_SYNC_PIPELINED = numbered(_SYNC_POSTGRESQL)
# The rows of a folder's UIDVALIDITY whose UID the server no longer lists.
_FORGET_POSTGRESQL = (
    f"DELETE FROM {_SEEN} WHERE mailbox_id = %s AND folder = %s "  # no input
    "AND uidvalidity = %s AND uid <> ALL(%s::text[]) RETURNING uid"
)
# The newest delivery's UIDVALIDITY with the rows under it (one row of NULLs
# when there are none; no row when the folder has no rows at all). The order is
# the one the ORM's order_by("-delivered_at", "-id") gives. JSON arrives as text
# (Django's PostgreSQL backend loads jsonb so; SQLite stores text).
_LAST_UIDVALIDITY = (
    "SELECT last.uidvalidity, s.uid, s.complete, s.recipients FROM ("  # no input
    f"SELECT uidvalidity FROM {_SEEN} WHERE mailbox_id = %s AND folder = %s "
    "ORDER BY delivered_at DESC, id DESC LIMIT 1) AS last "
    f"LEFT JOIN {_SEEN} AS s ON s.mailbox_id = %s AND s.folder = %s "
    "AND s.uidvalidity = last.uidvalidity"
)


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
        # False once full (unless echoing): the engine then stops formatting
        # and checking lines for it (retrieval/engine/ports.py Transcript),
        # most of a long poll's lines.
        self.keeps = True

    def mask(self, text: str) -> str:
        """``text``, or a fixed note in its place when it carries a secret."""
        return self._secrets.scrub(text)

    def record(self, direction: Direction, text: str) -> None:
        if self._truncated and not self.echo:
            # Full: the line would be dropped, so it is not checked either (a
            # long poll's lines were checked twice each, for nothing).
            return
        line = f"{direction}: {self._secrets.scrub(text, WITHHELD[direction])}"
        if self.echo:
            print(line, flush=True)  # noqa: T201  (manage.py poll -v)
        if self._size + len(line) > self._limit:
            if not self._truncated:
                self.lines.append("*: (transcript truncated)")
                self._truncated = True
                self.keeps = self.echo
            return
        self._size += len(line) + 1
        self.lines.append(line)

    def text(self) -> str:
        return "\n".join(self.lines)
