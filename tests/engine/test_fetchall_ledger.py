"""``fetchall`` fetches what the server marks as read; it never forgets our deliveries.

Without ``keep`` a UID the ledger records as delivered is deleted unread, whatever
``fetchall`` says: it is there only because the session that delivered it was cut
before the deletion was committed (POP3 commits DELE at QUIT, IMAP at EXPUNGE).
With ``keep``, ``fetchall`` keeps fetchmail's meaning: fetch every message again.
"""

from __future__ import annotations

import pytest

from retrieval.engine.fetch import selection
from retrieval.engine.fetch.session import FolderListing, RemoteMessage
from retrieval.engine.spec import MailboxSpec, ServerSpec

LISTING = FolderListing(
    folder="INBOX",
    uidvalidity=7,
    messages=[
        RemoteMessage("1", 1, 10),  # delivered by a cut session
        RemoteMessage("2", 2, 10, seen=True),  # read by some client
        RemoteMessage("3", 3, 10),  # new
    ],
)


def make(
    *, keep: bool = False, fetchall: bool = False, flush: bool = False
) -> MailboxSpec:
    return MailboxSpec(
        server=ServerSpec(host="mail.example"),
        username="u",
        keep=keep,
        fetchall=fetchall,
        flush=flush,
    )


def plan(**options: bool) -> selection.FolderPlan:
    return selection.plan_folder(make(**options), LISTING, {"1"}, sized=lambda m: m)


def fetched(p: selection.FolderPlan) -> list[str]:
    return [m.uid for m in p.fetch]


def deleted_unread(p: selection.FolderPlan) -> list[str]:
    return [s.message.uid for s in p.skipped if s.delete]


@pytest.mark.parametrize("fetchall", [False, True])
def test_without_keep_a_delivered_uid_is_deleted_never_fetched(fetchall: bool) -> None:
    p = plan(fetchall=fetchall)
    assert "1" not in fetched(p)
    assert deleted_unread(p) == ["1"]


def test_fetchall_still_fetches_what_the_server_marks_as_read() -> None:
    assert fetched(plan(fetchall=True)) == ["2", "3"]
    assert fetched(plan()) == ["3"]


def test_with_keep_fetchall_fetches_everything_again_as_fetchmail_does() -> None:
    p = plan(keep=True, fetchall=True)
    assert fetched(p) == ["1", "2", "3"]
    assert deleted_unread(p) == []


def test_flush_with_fetchall_deletes_the_delivered_uid_and_fetches_the_rest() -> None:
    p = plan(fetchall=True, flush=True)
    assert fetched(p) == ["2", "3"]
    assert deleted_unread(p) == ["1"]


@pytest.mark.parametrize(
    ("options", "waiting"),
    [
        ({}, ["3"]),
        ({"fetchall": True}, ["2", "3"]),
        ({"keep": True}, ["3"]),
        ({"keep": True, "fetchall": True}, ["1", "2", "3"]),
    ],
)
def test_check_counts_by_the_same_rule(
    options: dict[str, bool], waiting: list[str]
) -> None:
    spec = make(**options)
    assert [
        m.uid for m in LISTING.messages if selection.waiting(spec, m, {"1"})
    ] == waiting
