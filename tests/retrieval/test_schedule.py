from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from retrieval import services
from retrieval.engine.ports import MessageKey
from retrieval.engine.redact import WITHHELD, WITHHELD_TEXT
from retrieval.models import Mailbox
from tests.factories import make_mailbox

pytestmark = pytest.mark.django_db


class LeaseTests:
    def test_it_skips_when_the_lease_is_held(self):
        mailbox = make_mailbox()
        with services.mailbox_lease(mailbox_id=mailbox.pk) as first:
            assert first is not None
            with services.mailbox_lease(mailbox_id=mailbox.pk) as second:
                assert second is None
        mailbox.refresh_from_db()
        assert mailbox.lease_until is None and mailbox.lease_owner == ""

    def test_an_expired_lease_frees_the_mailbox(self):
        mailbox = make_mailbox()
        Mailbox.objects.filter(pk=mailbox.pk).update(
            lease_owner="dead-worker", lease_until=timezone.now() - timedelta(seconds=1)
        )
        with services.mailbox_lease(mailbox_id=mailbox.pk) as held:
            assert held is not None

    def test_a_held_lease_is_reported_as_skipped(self):
        mailbox = make_mailbox()
        Mailbox.objects.filter(pk=mailbox.pk).update(
            lease_owner="other", lease_until=timezone.now() + timedelta(minutes=5)
        )
        summary = services.mailbox_poll(mailbox_id=mailbox.pk)
        assert summary.outcome == "skipped"
        assert mailbox.runs.count() == 0

    def test_release_never_frees_another_holders_lease(self):
        mailbox = make_mailbox()
        with services.mailbox_lease(mailbox_id=mailbox.pk):
            # Someone else took over after our lease expired.
            Mailbox.objects.filter(pk=mailbox.pk).update(lease_owner="other")
        mailbox.refresh_from_db()
        assert mailbox.lease_owner == "other"

    @pytest.mark.skipif(
        "connection.vendor != 'postgresql'", reason="advisory locks: PostgreSQL"
    )
    @pytest.mark.django_db(transaction=True)
    def test_a_failed_release_ends_the_session_that_holds_the_advisory_lock(
        self, monkeypatch
    ):
        # Connections outlive tasks (CONN_MAX_AGE); a lock left in one would keep
        # the remote account from every other worker.
        from retrieval.services import poll_statements, polls

        mailbox = make_mailbox()
        with connection.cursor() as cursor:  # the key the claim locks
            cursor.execute(
                f"SELECT {poll_statements._REMOTE_KEY} FROM retrieval_mailbox m "
                "WHERE m.id = %s",
                [mailbox.pk],
            )
            key = cursor.fetchone()[0]
        monkeypatch.setattr(
            polls, "_RELEASE_POSTGRESQL", "SELECT no_such_function(%s, %s, %s)"
        )
        with (
            pytest.raises(Exception, match="no_such_function"),
            services.mailbox_lease(mailbox_id=mailbox.pk) as held,
        ):
            assert held is not None
        assert connection.connection is None
        other = connections.create_connection("default")  # another worker
        try:
            with other.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
                assert cursor.fetchone()[0]
        finally:
            other.close()


class DispatchTests:
    def test_it_claims_due_mailboxes_once(self):
        now = timezone.now()
        due = make_mailbox(next_poll_at=now - timedelta(seconds=1))
        never = make_mailbox()  # never polled: due at once
        make_mailbox(next_poll_at=now + timedelta(minutes=1))  # not yet
        make_mailbox(enabled=False)
        assert sorted(services.mailboxes_claim_due(now=now)) == sorted(
            [due.pk, never.pk]
        )
        # A second dispatcher (two beats by mistake) finds nothing.
        assert services.mailboxes_claim_due(now=now) == []
        due.refresh_from_db()
        # The next poll: one interval on, less up to 10 % (jitter), never later.
        ahead = (due.next_poll_at - now).total_seconds()
        assert 0.9 * due.poll_interval <= ahead <= due.poll_interval

    def test_it_leaves_leased_mailboxes_alone(self):
        now = timezone.now()
        make_mailbox(lease_owner="w", lease_until=now + timedelta(minutes=1))
        assert services.mailboxes_claim_due(now=now) == []

    def test_the_dispatch_task_queues_one_poll_per_due_mailbox(
        self, monkeypatch, django_capture_on_commit_callbacks
    ):
        from retrieval import tasks

        queued: list[int] = []
        monkeypatch.setattr(tasks.poll_mailbox, "delay", queued.append)
        due = timezone.now() - timedelta(seconds=1)
        a, b = make_mailbox(next_poll_at=due), make_mailbox(next_poll_at=due)
        with django_capture_on_commit_callbacks(execute=True):
            assert tasks.dispatch_due_polls() == 2
        assert sorted(queued) == sorted([a.pk, b.pk])


class LedgerTests:
    def test_it_records_and_forgets_per_folder_and_uidvalidity(self):
        ledger = services.DatabaseLedger(make_mailbox())
        ledger.mark_delivered(MessageKey("INBOX", 7, "1"), "<a@x>")
        ledger.mark_delivered(MessageKey("INBOX", 7, "1"), "<a@x>")  # a rerun: harmless
        ledger.mark_delivered(MessageKey("INBOX", 7, "2"))
        ledger.mark_delivered(MessageKey("Sent", 7, "1"))
        ledger.mark_delivered(MessageKey("INBOX", None, "uidl-abc"))  # POP3
        assert ledger.delivered_uids("INBOX", 7) == {"1", "2"}
        assert ledger.delivered_uids("INBOX", 8) == set()
        assert ledger.delivered_uids("INBOX", None) == {"uidl-abc"}
        ledger.forget_missing("INBOX", 7, {"2"})
        assert ledger.delivered_uids("INBOX", 7) == {"2"}
        assert ledger.delivered_uids("Sent", 7) == {"1"}

    def test_it_remembers_partial_deliveries_per_recipient(self):
        from retrieval.engine.ports import RecipientLedger

        ledger = services.DatabaseLedger(make_mailbox())
        assert isinstance(ledger, RecipientLedger)
        key = MessageKey("INBOX", 7, "1")
        ledger.mark_recipients_delivered(key, ["a@x"])
        ledger.mark_recipients_delivered(key, ["b@x", "a@x"])
        assert ledger.delivered_recipients(key) == {"a@x", "b@x"}
        assert ledger.delivered_uids("INBOX", 7) == set()  # not complete yet
        ledger.mark_delivered(key)
        assert ledger.delivered_uids("INBOX", 7) == {"1"}
        ledger.forget_missing("INBOX", 7, set())
        assert ledger.delivered_recipients(key) == set()

    def test_it_knows_the_last_uidvalidity(self):
        ledger = services.DatabaseLedger(make_mailbox())
        assert ledger.last_uidvalidity("INBOX") is None
        ledger.mark_delivered(MessageKey("INBOX", 7, "1"))
        ledger.mark_delivered(MessageKey("INBOX", 9, "1"))
        assert ledger.last_uidvalidity("INBOX") == 9

    def test_the_last_uidvalidity_and_its_uids_come_in_one_statement(self):
        """What an IMAP poll asks (run.py: last_uidvalidity, then delivered_uids at
        the server's UIDVALIDITY): one round trip when the UIDVALIDITY is the
        last one, the same answers as two."""
        mailbox = make_mailbox()
        ledger = services.DatabaseLedger(mailbox)
        for uidvalidity, uid in ((7, "1"), (9, "1"), (9, "2")):
            ledger.mark_delivered(MessageKey("INBOX", uidvalidity, uid))
        ledger.mark_recipients_delivered(MessageKey("INBOX", 9, "3"), ["a@x"])
        ledger.mark_delivered(MessageKey("Sent", 9, "5"))
        fresh = services.DatabaseLedger(mailbox)
        with CaptureQueriesContext(connection) as queries:
            assert fresh.last_uidvalidity("INBOX") == 9
            assert fresh.delivered_uids("INBOX", 9) == {"1", "2"}  # "3": partial
            # The recipients served of a partial delivery come with them.
            assert fresh.delivered_recipients(MessageKey("INBOX", 9, "3")) == {"a@x"}
            assert fresh.delivered_recipients(MessageKey("INBOX", 9, "1")) == set()
        assert len(queries) == 1
        fresh.mark_recipients_delivered(MessageKey("INBOX", 9, "3"), ["b@x"])
        assert fresh.delivered_recipients(MessageKey("INBOX", 9, "3")) == {
            "a@x",
            "b@x",
        }
        # Read once: asked again, the ledger asks the database again.
        with CaptureQueriesContext(connection) as again:
            assert fresh.delivered_uids("INBOX", 9) == {"1", "2"}
        assert len(again) == 1
        # The server renumbered the folder: the UIDs of that UIDVALIDITY, read.
        assert fresh.last_uidvalidity("INBOX") == 9
        assert fresh.delivered_uids("INBOX", 7) == {"1"}
        # Another folder's question is not answered from this folder's rows.
        assert fresh.last_uidvalidity("INBOX") == 9
        assert fresh.delivered_uids("Sent", 9) == {"5"}

    def test_a_folder_without_rows_is_known_empty_in_one_statement(self):
        ledger = services.DatabaseLedger(make_mailbox())
        with CaptureQueriesContext(connection) as queries:
            assert ledger.last_uidvalidity("INBOX") is None
            assert ledger.delivered_uids("INBOX", 12) == set()
            # Nor was any message served to a recipient (the first mail of a
            # mailbox whose last poll pruned the ledger): nothing more to read.
            assert ledger.delivered_recipients(MessageKey("INBOX", 12, "1")) == set()
        assert len(queries) == 1
        # What this poll serves is kept current from there.
        ledger.mark_recipients_delivered(MessageKey("INBOX", 12, "1"), ["a@x"])
        assert ledger.delivered_recipients(MessageKey("INBOX", 12, "1")) == {"a@x"}
        # Another folder was not asked about: read as before.
        with CaptureQueriesContext(connection) as other:
            assert ledger.delivered_recipients(MessageKey("Sent", 12, "1")) == set()
        assert len(other) == 1

    def test_forgetting_what_the_server_no_longer_has(self):
        """Only the rows of that folder and UIDVALIDITY whose UID is not listed;
        on PostgreSQL in one statement (a poll after one that deleted mail)."""
        mailbox = make_mailbox()
        ledger = services.DatabaseLedger(mailbox)
        for uid in ("1", "2", "3", "it's"):
            ledger.mark_delivered(MessageKey("INBOX", 9, uid))
        ledger.mark_delivered(MessageKey("INBOX", 8, "1"))
        ledger.mark_delivered(MessageKey("Sent", 9, "1"))
        ledger.mark_recipients_delivered(MessageKey("INBOX", 9, "4"), ["a@x"])
        with CaptureQueriesContext(connection) as queries:
            ledger.forget_missing("INBOX", 9, {"2", "it's", "99"})
        if connection.vendor == "postgresql":
            assert len(queries) == 1
        fresh = services.DatabaseLedger(mailbox)
        assert fresh.delivered_uids("INBOX", 9) == {"2", "it's"}
        assert fresh.delivered_recipients(MessageKey("INBOX", 9, "4")) == set()
        assert fresh.delivered_uids("INBOX", 8) == {"1"}
        assert fresh.delivered_uids("Sent", 9) == {"1"}
        ledger.forget_missing("INBOX", 9, set())  # the folder emptied
        assert fresh.delivered_uids("INBOX", 9) == set()
        assert fresh.delivered_uids("INBOX", 8) == {"1"}

    def test_a_write_after_the_read_is_seen(self):
        ledger = services.DatabaseLedger(make_mailbox())
        ledger.mark_delivered(MessageKey("INBOX", 9, "1"))
        assert ledger.last_uidvalidity("INBOX") == 9
        ledger.mark_delivered(MessageKey("INBOX", 9, "2"))
        assert ledger.delivered_uids("INBOX", 9) == {"1", "2"}
        assert ledger.last_uidvalidity("INBOX") == 9
        ledger.forget_missing("INBOX", 9, {"2"})
        assert ledger.delivered_uids("INBOX", 9) == {"2"}


@pytest.mark.django_db(transaction=True)  # real commits: the WAL flush is the point
class GroupCommitTests:
    """Marks commit without waiting for the WAL flush; ``sync`` waits for it once."""

    @staticmethod
    def _lsn(function: str) -> str:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {function}()::text")
            return str(cursor.fetchone()[0])

    def test_marks_are_asynchronous_and_one_sync_flushes_them_all(self):
        ledger = services.DatabaseLedger(make_mailbox())
        with CaptureQueriesContext(connection) as marks:
            ledger.mark_delivered(MessageKey("INBOX", 7, "1"), "<a@x>")
            ledger.mark_recipients_delivered(MessageKey("INBOX", 7, "2"), ["a@x"])
        postgres = connection.vendor == "postgresql"
        written = self._lsn("pg_current_wal_insert_lsn") if postgres else ""
        if postgres:
            # Even where the session's own setting is off (a server configured
            # so), sync's commit waits for the flush.
            with connection.cursor() as cursor:
                cursor.execute("SET synchronous_commit = off")
        try:
            with CaptureQueriesContext(connection) as synced:
                ledger.sync()
            if postgres:
                flushed = self._lsn("pg_current_wal_flush_lsn")
        finally:
            if postgres:
                with connection.cursor() as cursor:
                    cursor.execute("RESET synchronous_commit")
        with CaptureQueriesContext(connection) as nothing_new:
            ledger.sync()
        sql = _statements(marks)
        if not postgres:
            # SQLite: every mark is a synchronous commit; sync has nothing to do.
            assert not any("synchronous_commit" in q for q in sql)
            assert synced.captured_queries == []
            return
        # The full delivery: one statement, its own transaction asynchronous.
        assert sql[0].startswith("INSERT") and (
            "set_config('synchronous_commit', 'off', true)" in sql[0]
        ), sql
        # The partial one: SET LOCAL in its transaction, then the row.
        assert sql[1] == "SET LOCAL synchronous_commit = off", sql
        # The flush: one statement, its own transaction synchronous.
        flush = _statements(synced)
        assert len(flush) == 1 and flush[0].startswith("UPDATE"), flush
        assert "set_config('synchronous_commit', 'on', true)" in flush[0], flush
        assert nothing_new.captured_queries == []
        # Durable: the WAL is on disk at least up to where the marks ended.
        with connection.cursor() as cursor:
            cursor.execute("SELECT %s::pg_lsn >= %s::pg_lsn", [flushed, written])
            assert cursor.fetchone()[0] is True
        assert ledger.delivered_uids("INBOX", 7) == {"1"}

    def test_a_mark_outside_debug_is_committed_through_the_drivers_cursor(self):
        """Not logged (no DEBUG, no capture): the mark goes through the driver's
        cursor, kept for the poll; it is committed when it returns (another
        connection reads it), and a mark after Django reconnected takes a
        cursor on the new connection."""
        ledger = services.DatabaseLedger(make_mailbox())
        assert not connection.queries_logged
        ledger.mark_delivered(MessageKey("INBOX", 7, "1"), "<a@x>")
        first = ledger._raw_cursor
        if connection.vendor != "postgresql":
            assert first is None  # SQLite: the portable path, synchronous
            return
        assert first is not None and first.connection is connection.connection
        assert self._seen_elsewhere() == [("1", "<a@x>", True)]
        ledger.mark_delivered(MessageKey("INBOX", 7, "2"))
        assert ledger._raw_cursor is first  # one cursor for the poll
        connection.close()
        ledger.mark_delivered(MessageKey("INBOX", 7, "3"))
        assert ledger._raw_cursor is not first
        assert ledger._raw_cursor.connection is connection.connection
        ledger.sync()
        assert [uid for uid, _, _ in self._seen_elsewhere()] == ["1", "2", "3"]
        assert ledger.delivered_uids("INBOX", 7) == {"1", "2", "3"}

    @staticmethod
    def _seen_elsewhere() -> list[tuple[str, str, bool]]:
        """The ledger's rows as another connection sees them (committed ones)."""
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute(
                    "SELECT uid, message_id, complete FROM retrieval_seenmessage "
                    "ORDER BY uid"
                )
                return [tuple(row) for row in cursor.fetchall()]
        finally:
            other.close()

    def test_sync_after_the_last_record_was_forgotten_is_harmless(self):
        ledger = services.DatabaseLedger(make_mailbox())
        ledger.mark_delivered(MessageKey("INBOX", 7, "1"))
        ledger.forget_missing("INBOX", 7, set())
        ledger.sync()
        assert ledger.delivered_uids("INBOX", 7) == set()


def _statements(captured: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"]
        for q in captured.captured_queries
        if q["sql"] not in ("BEGIN", "COMMIT")
    ]


class TranscriptTests:
    def test_it_masks_secrets_even_when_the_server_echoes_them(self):
        transcript = services.RecordingTranscript(secrets=("s3cret",), limit=1000)
        transcript.record("S", "-ERR no such user s3cret")
        assert "s3cret" not in transcript.text()
        assert transcript.text() == f"S: {WITHHELD['S']}"

    @pytest.mark.parametrize("password", ["mail", "a"])
    def test_a_short_password_is_never_a_partial_mask(self, password):
        # "mailbox" must not become "********box": that shows the password.
        transcript = services.RecordingTranscript(secrets=(password,), limit=1000)
        transcript.record("S", "+OK mailbox ready")
        transcript.record("C", "PASS ********")
        assert transcript.lines == [f"S: {WITHHELD['S']}", "C: PASS ********"]
        assert transcript.mask("mailbox full") == WITHHELD_TEXT

    @pytest.mark.parametrize("user", ["j", "jo", "joe"])
    def test_an_echoed_plain_blob_is_withheld_at_every_alignment(self, user):
        blob = base64.b64encode(f"\0{user}\0mail".encode()).decode()
        transcript = services.RecordingTranscript(secrets=("mail",), limit=1000)
        transcript.record("S", f"-ERR you sent {blob}")
        transcript.record("S", f'* NO LOGIN "{user}" "mail"')
        assert transcript.lines == [f"S: {WITHHELD['S']}"] * 2

    def test_it_is_bounded(self):
        transcript = services.RecordingTranscript(secrets=(), limit=100)
        for i in range(100):
            transcript.record("S", f"line {i}")
        assert len(transcript.text()) < 150
        assert transcript.text().endswith("(transcript truncated)")

    def test_once_full_it_says_it_keeps_nothing_more_unless_it_echoes(self):
        """The engine reads ``keeps`` line by line and stops formatting and
        checking lines for a full transcript (retrieval/engine/ports.py)."""
        quiet = services.RecordingTranscript(secrets=(), limit=30)
        echoing = services.RecordingTranscript(secrets=(), limit=30, echo=True)
        for transcript in (quiet, echoing):
            assert transcript.keeps
            transcript.record("S", "line 1")
            assert transcript.keeps
            for i in range(5):
                transcript.record("S", f"line {i}")
        assert not quiet.keeps and echoing.keeps
        assert quiet.text().endswith("(transcript truncated)")

    def test_once_full_it_keeps_nothing_but_still_echoes_every_line_masked(
        self, capsys
    ):
        transcript = services.RecordingTranscript(
            secrets=("s3cret",), limit=20, echo=True
        )
        for i in range(5):
            transcript.record("S", f"line {i}")
        transcript.record("S", "-ERR s3cret")
        kept = transcript.text()
        assert kept.endswith("(transcript truncated)") and "line 4" not in kept
        echoed = capsys.readouterr().out
        assert "S: line 4" in echoed and f"S: {WITHHELD['S']}" in echoed
        assert "s3cret" not in echoed
