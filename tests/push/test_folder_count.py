"""What the IDLE client counts as new mail among a server's untagged responses."""

from __future__ import annotations

from retrieval.push.client import FolderCount


def news(count: FolderCount, *lines: bytes) -> list[bool]:
    return [count.news(line + b"\r\n") for line in lines]


def test_exists_then_recent_for_one_arrival_is_one_piece_of_news():
    # Dovecot's two lines for one delivery; polling twice for them was the bug.
    count = FolderCount(exists=0)
    assert news(count, b"* 1 EXISTS", b"* 1 RECENT") == [True, False]
    assert count.exists == 1


def test_each_later_arrival_is_news_again():
    count = FolderCount(exists=0)
    news(count, b"* 1 EXISTS", b"* 1 RECENT")
    assert news(count, b"* 2 EXISTS", b"* 2 RECENT") == [True, False]


def test_a_recent_alone_is_news():
    count = FolderCount(exists=3)
    assert news(count, b"* 3 EXISTS", b"* 1 RECENT") == [False, True]
    assert news(count, b"* 0 RECENT") == [False]


def test_expunges_lower_the_count_and_a_later_arrival_is_seen():
    # Our own poll deletes the message; the next delivery brings the count back up.
    count = FolderCount(exists=1)
    assert news(count, b"* 1 EXPUNGE", b"* 0 RECENT") == [False, False]
    assert count.exists == 0
    assert news(count, b"* 1 EXISTS") == [True]


def test_other_responses_are_not_news_and_end_the_pair():
    count = FolderCount(exists=0)
    assert news(count, b"* 1 EXISTS", b"* OK Still here", b"* 1 RECENT") == [
        True,
        False,
        True,
    ]
    assert news(count, b"* 1 EXISTS") == [False]  # the same count: nothing new
