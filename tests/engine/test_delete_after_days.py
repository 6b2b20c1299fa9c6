"""``delete_after_days`` with keep: the rule in selection.plan_folder, the ledgers' dates.

The clock is a plain value here (``Ages.now``, or the ledger's ``at``); the live
tests (tests/live/test_delete_after_days_dovecot.py) move the engine's clock
against the real Dovecot.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from retrieval.cli.idfile import IdFile
from retrieval.engine.fetch import selection
from retrieval.engine.fetch.session import FolderListing, RemoteMessage
from retrieval.engine.memory import MemoryLedger
from retrieval.engine.ports import MessageKey
from retrieval.engine.report import MessageStatus
from retrieval.engine.spec import MailboxSpec, MailProtocol, ServerSpec

if TYPE_CHECKING:
    from pathlib import Path

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SPEC = MailboxSpec(
    server=ServerSpec(host="mail.example.org", protocol=MailProtocol.IMAP),
    username="alice",
    keep=True,
    delete_after_days=30,
)


def listing(*uids: str, seen: bool = False) -> FolderListing:
    messages = [RemoteMessage(uid, int(uid), 100, seen) for uid in uids]
    return FolderListing(folder="INBOX", uidvalidity=7, messages=messages)


def plan(
    spec: MailboxSpec, folder: FolderListing, dates: dict[str, datetime], now: datetime
) -> selection.FolderPlan:
    return selection.plan_folder(
        spec,
        folder,
        set(dates),
        sized=lambda messages: messages,
        ages=selection.Ages(dates, now),
    )


def expired(result: selection.FolderPlan) -> list[str]:
    return [
        s.message.uid
        for s in result.skipped
        if s.status is MessageStatus.EXPIRED and s.delete
    ]


def test_a_message_goes_once_the_days_have_passed_and_not_a_moment_before() -> None:
    folder = listing("1", "2", "3")
    dates = {"1": T0, "2": T0 + 2 * DAY, "3": T0 + 29 * DAY}

    assert expired(plan(SPEC, folder, dates, T0 + 29 * DAY)) == []
    assert (
        expired(plan(SPEC, folder, dates, T0 + 30 * DAY - timedelta(seconds=1))) == []
    )
    at_30 = plan(SPEC, folder, dates, T0 + 30 * DAY)
    assert expired(at_30) == ["1"]
    assert at_30.fetch == []  # kept and delivered: nothing fetched again
    (step,) = at_30.skipped
    assert step.reason == (
        "delivered 2026-11-01 12:00 UTC, 30 days ago; deleted after 30 days (keep)"
    )
    assert "1 message(s) in INBOX were delivered 30 or more days ago" in at_30.notes[0]
    assert expired(plan(SPEC, folder, dates, T0 + 40 * DAY)) == ["1", "2"]


def test_a_message_the_ledger_does_not_show_delivered_is_never_deleted() -> None:
    folder = listing("1", "2", seen=True)  # read by another client, never ours
    result = plan(SPEC, folder, {"1": T0}, T0 + 400 * DAY)
    assert expired(result) == ["1"]
    assert [s.message.uid for s in result.skipped] == ["1"]
    # A UID in the ledger without a date (no ledger answers so) is left alone too.
    undated = selection.plan_folder(
        SPEC,
        folder,
        {"1", "2"},
        sized=lambda m: m,
        ages=selection.Ages({"1": T0}, T0 + 400 * DAY),
    )
    assert expired(undated) == ["1"]


def test_without_keep_the_option_changes_nothing() -> None:
    spec = replace(SPEC, keep=False)
    result = plan(spec, listing("1"), {"1": T0}, T0 + 400 * DAY)
    # Delivered but not yet deleted (a cut session): deleted as always, as skipped.
    assert [(s.status, s.delete) for s in result.skipped] == [
        (MessageStatus.SKIPPED, True)
    ]
    assert not selection.expires(spec)


def test_fetchall_with_keep_fetches_again_only_what_is_young_enough() -> None:
    spec = replace(SPEC, fetchall=True)
    result = plan(
        spec, listing("1", "2", "3"), {"1": T0, "2": T0 + 20 * DAY}, T0 + 31 * DAY
    )
    assert expired(result) == ["1"]
    assert [m.uid for m in result.fetch] == ["2", "3"]


def test_the_option_needs_a_read_write_folder_and_a_full_listing() -> None:
    assert not selection.read_only(SPEC)  # IMAP SELECT: the deletes must stick
    assert selection.read_only(replace(SPEC, delete_after_days=None))
    assert not selection.fastuidl_applies(replace(SPEC, fastuidl=1))
    assert selection.fastuidl_applies(replace(SPEC, fastuidl=1, delete_after_days=None))


@pytest.mark.parametrize("first", [T0, T0 + 3 * DAY])
def test_the_memory_ledger_keeps_the_first_delivery_date(first: datetime) -> None:
    ledger = MemoryLedger()
    key = MessageKey("INBOX", 7, "1")
    ledger.mark_delivered(key, "<a@x>", at=first)
    ledger.mark_delivered(key, "<a@x>", at=first + 10 * DAY)  # fetchall
    assert ledger.delivery_dates("INBOX", 7, now=T0) == {"1": first}
    ledger.forget_missing("INBOX", 7, set())
    assert ledger.delivery_dates("INBOX", 7, now=T0) == {}


def test_the_idfile_keeps_dates_and_dates_an_older_file_from_its_first_use(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ids"
    box = "imap://alice@mail.example.org"
    # An idfile as fetchweb wrote it before dates were kept.
    path.write_text(
        json.dumps(
            {
                "format": "fetchweb-idfile",
                "version": 1,
                "mailboxes": {
                    box: {"INBOX": {"uidvalidity": 7, "uids": {"1": "<a@x>"}}}
                },
            }
        )
    )
    path.chmod(0o600)
    with IdFile.open(str(path)) as ids:
        ledger = ids.ledger(box)
        key = MessageKey("INBOX", 7, "2")
        ledger.mark_delivered(key, "<b@x>", at=T0)
        ledger.mark_delivered(key, "<b@x>", at=T0 + DAY)  # kept: first
        first_use = T0 + 5 * DAY
        assert ledger.delivery_dates("INBOX", 7, now=first_use) == {
            "1": first_use,
            "2": T0,
        }
    with IdFile.open(str(path)) as ids:  # both dates were written down
        later = ids.ledger(box).delivery_dates("INBOX", 7, now=T0 + 99 * DAY)
        assert later == {"1": T0 + 5 * DAY, "2": T0}
    stored = json.loads(path.read_text())["mailboxes"][box]["INBOX"]
    assert stored["dates"] == {
        "1": "2026-11-06T12:00:00+00:00",
        "2": "2026-11-01T12:00:00+00:00",
    }
