"""The ledger's marks of a long poll, sent on a connection of their own without
waiting for each answer (retrieval/services/pipelined.py); the kill tests are in
tests/live/test_crash_ledger.py."""

from __future__ import annotations

import time

import pytest
from django.db import DatabaseError, connection

from retrieval import services
from retrieval.engine.ports import MessageKey
from retrieval.models import SeenMessage
from retrieval.services import ports
from tests.factories import make_mailbox, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no second connection to send marks on")


def _alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return bool(cursor.fetchone()[0])


def _ends(pid: int) -> bool:
    """Whether the session leaves pg_stat_activity (once its backend has seen
    the close)."""
    for _ in range(200):
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_a_long_poll_sends_its_marks_on_a_connection_of_its_own():
    mailbox = make_mailbox()
    ledger = services.DatabaseLedger(mailbox)
    for uid in range(1, ports.PIPELINE_AFTER + 1):
        ledger.mark_delivered(MessageKey("INBOX", 7, str(uid)), f"<{uid}@x>")
    assert ledger._pipe is None  # a few messages: no second connection
    extra = range(ports.PIPELINE_AFTER + 1, ports.PIPELINE_AFTER + 13)
    for uid in extra:
        ledger.mark_delivered(MessageKey("INBOX", 7, str(uid)), f"<{uid}@x>")
    pid = ledger._pipe._conn.info.backend_pid
    assert pid != connection.connection.info.backend_pid and _alive(pid)
    # Every read waits for the last answer: it sees every mark.
    everything = {str(uid) for uid in range(1, extra[-1] + 1)}
    assert ledger.delivered_uids("INBOX", 7) == everything
    ledger.forget_missing("INBOX", 7, everything - {"3"})
    ledger.sync()
    ledger.close()
    assert _ends(pid)
    rows = SeenMessage.objects.filter(mailbox=mailbox)
    assert set(rows.values_list("uid", flat=True)) == everything - {"3"}
    assert rows.get(uid=str(extra[-1])).message_id == f"<{extra[-1]}@x>"
    assert all(rows.values_list("complete", flat=True))


def test_a_mark_that_fails_is_reported_before_the_sync_returns(monkeypatch):
    monkeypatch.setattr(ports, "PIPELINE_AFTER", 0)
    ledger = services.DatabaseLedger(make_mailbox())
    ledger.mark_delivered(MessageKey("INBOX", 7, "1"))
    too_long = "x" * 600  # the folder column holds 500 characters
    ledger.mark_delivered(MessageKey(too_long, 7, "2"))  # sent, answer unread
    with pytest.raises(DatabaseError, match="too long"):
        ledger.sync()  # before the server may commit a deletion
    ledger.close()


def test_a_failed_mark_is_reported_by_the_next_one():
    ledger = services.DatabaseLedger(make_mailbox())
    for uid in range(1, ports.PIPELINE_AFTER + 2):
        ledger.mark_delivered(MessageKey("INBOX", 7, str(uid)))
    ledger.mark_delivered(MessageKey("x" * 600, 7, "bad"))
    with pytest.raises(DatabaseError, match="too long"):
        ledger.mark_delivered(MessageKey("INBOX", 7, "after"))
    ledger.close()


def test_inside_a_transaction_the_marks_stay_in_it(monkeypatch):
    from django.db import transaction

    monkeypatch.setattr(ports, "PIPELINE_AFTER", 0)
    mailbox = make_mailbox()
    with transaction.atomic():
        ledger = services.DatabaseLedger(mailbox)
        for uid in ("1", "2", "3"):
            ledger.mark_delivered(MessageKey("INBOX", 7, uid))
        assert ledger._pipe is None
        assert ledger.delivered_uids("INBOX", 7) == {"1", "2", "3"}
        transaction.set_rollback(True)
    assert not SeenMessage.objects.filter(mailbox=mailbox).exists()


def test_behind_a_transaction_pooler_nothing_is_prepared(monkeypatch):
    """DATABASE_TRANSACTION_POOLING (Django's DISABLE_SERVER_SIDE_CURSORS): a
    statement prepared on one server connection is unknown to the next."""
    monkeypatch.setitem(connection.settings_dict, "DISABLE_SERVER_SIDE_CURSORS", True)
    monkeypatch.setattr(ports, "PIPELINE_AFTER", 0)
    mailbox = make_mailbox()
    ledger = services.DatabaseLedger(mailbox)
    for uid in ("1", "2", "3"):
        ledger.mark_delivered(MessageKey("INBOX", 7, uid))
    ledger.sync()
    prepared = ledger._pipe._conn.execute("SELECT count(*) FROM pg_prepared_statements")
    assert prepared.fetchone()[0] == 0
    ledger.close()
    rows = SeenMessage.objects.filter(mailbox=mailbox)
    assert sorted(rows.values_list("uid", flat=True)) == ["1", "2", "3"]


def test_otherwise_the_marks_are_prepared_once(monkeypatch):
    monkeypatch.setattr(ports, "PIPELINE_AFTER", 0)
    ledger = services.DatabaseLedger(make_mailbox())
    for uid in ("1", "2", "3"):
        ledger.mark_delivered(MessageKey("INBOX", 7, uid))
    ledger.sync()
    prepared = ledger._pipe._conn.execute("SELECT count(*) FROM pg_prepared_statements")
    assert prepared.fetchone()[0] == 2  # the mark and the sync
    ledger.close()


@pytest.mark.parametrize("fails", [False, True], ids=["poll-ends", "poll-raises"])
def test_the_poll_ends_the_marks_connection(monkeypatch, fails):
    """services.mailbox_poll closes the ledger's own connection whatever the
    engine did, and the marks sent on it are there. (After a clean return the
    connection would also go with the ledger object; after an exception, whose
    traceback keeps the ledger alive, only the poll's close ends it.)"""
    from retrieval.engine.report import ExitCode, PollReport

    mailbox = make_mailbox(make_user(superuser=True))  # its host need not resolve
    pids: list[int] = []

    def engine_poll(spec, *, ledger, **_options):
        for uid in range(1, ports.PIPELINE_AFTER + 4):
            ledger.mark_delivered(MessageKey("INBOX", 7, str(uid)))
        pids.append(ledger._pipe._conn.info.backend_pid)
        if fails:
            raise RuntimeError("a bug in the engine")
        ledger.sync()
        return PollReport(exit_code=ExitCode.SUCCESS)

    monkeypatch.setattr(services.polls, "engine_poll", engine_poll)
    summary = services.mailbox_poll(mailbox_id=mailbox.pk)

    assert summary.outcome == ("error" if fails else "success"), summary.error

    assert pids and _ends(pids[0])
    rows = SeenMessage.objects.filter(mailbox=mailbox)
    assert rows.count() == ports.PIPELINE_AFTER + 3
