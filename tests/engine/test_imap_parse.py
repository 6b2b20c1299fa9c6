"""Byte-literal tables for the pure IMAP response parsers (imapclient style)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval.engine.errors import ParseError
from retrieval.engine.fetch import imap_parse as parse


@pytest.mark.parametrize(
    ("line", "size"),
    [
        (b"* 1 FETCH (UID 5 BODY[] {2048}\r\n", 2048),
        (b"* 1 FETCH (BODY[] {0}\r\n", 0),
        (b'* LIST () "/" {5+}\r\n', 5),
        (b"* 1 FETCH (UID 5 BODY[] {9999999999}\r\n", 9999999999),
        (b"* OK done\r\n", None),
        (b"* OK {not at end} here\r\n", None),
    ],
)
def test_it_reads_literal_sizes(line: bytes, size: int | None) -> None:
    assert parse.literal_size(line) == size


@pytest.mark.parametrize(
    "line",
    [b"* 1 FETCH (BODY[] {-1}\r\n", b"* 1 FETCH (BODY[] {" + b"9" * 30 + b"}\r\n"],
)
def test_it_rejects_malformed_literal_sizes(line: bytes) -> None:
    with pytest.raises(ParseError):
        parse.literal_size(line)


def test_it_recognises_the_body_literal() -> None:
    assert parse.is_body_literal(b"* 3 FETCH (UID 7 BODY[] {12}\r\n")
    assert not parse.is_body_literal(b"* 3 FETCH (UID 7 BODY[HEADER] {12}\r\n")
    assert parse.has_nil_body(b"* 3 FETCH (UID 7 BODY[] NIL)\r\n")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"A0001 OK done\r\n", ("A0001", "OK", "done")),
        (
            b"A0002 no [AUTHENTICATIONFAILED] nope\r\n",
            ("A0002", "NO", "[AUTHENTICATIONFAILED] nope"),
        ),
        (b"A3 BAD\r\n", ("A3", "BAD", "")),
        (b"* OK hello\r\n", None),
        (b"A1 MAYBE\r\n", None),
    ],
)
def test_it_parses_tagged_lines(
    line: bytes, expected: tuple[str, str, str] | None
) -> None:
    tagged = parse.parse_tagged(line)
    assert (tagged and (tagged.tag, tagged.status, tagged.text)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"[UIDVALIDITY 3857529045] UIDs valid", ("UIDVALIDITY", "3857529045")),
        (b"[READ-WRITE] done", ("READ-WRITE", "")),
        (b"no code here", None),
    ],
)
def test_it_parses_response_codes(
    text: bytes, expected: tuple[str, str] | None
) -> None:
    assert parse.response_code(text) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            b"* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN\r\n",
            {"IMAP4REV1", "STARTTLS", "AUTH=PLAIN"},
        ),
        (b"* OK [CAPABILITY IMAP4rev1 UIDPLUS] ready\r\n", {"IMAP4REV1", "UIDPLUS"}),
        (b"* OK ready\r\n", None),
    ],
)
def test_it_parses_capabilities(line: bytes, expected: set[str] | None) -> None:
    assert parse.capabilities(line) == (
        frozenset(expected) if expected is not None else None
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"* SEARCH 2 84 882\r\n", [2, 84, 882]),
        (b"* SEARCH\r\n", []),
        (b"* 3 EXISTS\r\n", None),
    ],
)
def test_it_parses_search_results(line: bytes, expected: list[int] | None) -> None:
    assert parse.search_results(line) == expected


def test_it_rejects_garbage_in_search_results() -> None:
    with pytest.raises(ParseError):
        parse.search_results(b"* SEARCH 1 two\r\n")
    with pytest.raises(ParseError):
        parse.search_results(b"* SEARCH " + b"9" * 40 + b"\r\n")


@pytest.mark.parametrize(
    ("line", "uid", "size"),
    [
        (b"* 1 FETCH (UID 101 RFC822.SIZE 74)\r\n", 101, 74),
        (b"* 1 FETCH (RFC822.SIZE 74 UID 101)\r\n", 101, 74),
        (b"* 1 FETCH (FLAGS (\\Seen))\r\n", None, None),
    ],
)
def test_it_reads_fetch_items(line: bytes, uid: int | None, size: int | None) -> None:
    assert parse.fetch_uid(line) == uid
    assert parse.fetch_size(line) == size


def test_it_numbers_untagged_responses() -> None:
    assert parse.untagged_number(b"* 23 EXISTS\r\n") == (23, "EXISTS")
    assert parse.untagged_number(b"* 4 FETCH (UID 1)\r\n") == (4, "FETCH")
    assert parse.untagged_number(b"* OK hi\r\n") is None
    assert parse.untagged_status(b"* PREAUTH welcome\r\n") == ("PREAUTH", b"welcome")
    assert parse.untagged_status(b"* 1 EXISTS\r\n") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("joe", b'"joe"'),
        ('a"b\\c', b'"a\\"b\\\\c"'),
        ("j\u00f6e", None),
        ("a\r\nb", None),
    ],
)
def test_it_quotes_arguments(value: str, expected: bytes | None) -> None:
    assert parse.quoted(value) == expected


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("INBOX", "INBOX"),
        ("Entw\u00fcrfe", "Entw&APw-rfe"),
        ("A&B", "A&-B"),
        ("\u65e5\u672c\u8a9e", "&ZeVnLIqe-"),
    ],
)
def test_it_encodes_mailbox_names_in_modified_utf7(name: str, encoded: str) -> None:
    assert parse.encode_mailbox(name) == encoded


@pytest.mark.parametrize(
    ("numbers", "text"),
    [([1, 2, 3, 7, 9, 10], "1:3,7,9:10"), ([5], "5"), ([3, 1, 2], "1:3"), ([], "")],
)
def test_it_builds_sequence_sets(numbers: list[int], text: str) -> None:
    assert parse.sequence_set(numbers) == text


def test_it_reads_a_quoted_body() -> None:
    assert parse.quoted_body(b'* 1 FETCH (UID 3 BODY[] "a\\"b")') == b'a"b'
    assert parse.quoted_body(b"* 1 FETCH (UID 3 BODY[] NIL)") is None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'* ESEARCH (TAG "A5") UID ALL 1:3,7\r\n', ("A5", [1, 2, 3, 7])),
        (b'* ESEARCH (TAG "A5") UID\r\n', ("A5", [])),
        (b"* ESEARCH UID COUNT 2 ALL 9,4\r\n", ("", [4, 9])),
        (b"* SEARCH 1 2\r\n", None),
    ],
)
def test_it_parses_esearch_results(
    line: bytes, expected: tuple[str, list[int]] | None
) -> None:
    assert parse.esearch_all(line, limit=100) == expected


def test_a_hostile_esearch_range_is_expanded_only_up_to_the_limit() -> None:
    assert parse.esearch_all(
        b'* ESEARCH (TAG "A1") UID ALL 1:4294967295,7:9\r\n', limit=5
    ) == ("A1", [1, 2, 3, 4, 5])


@pytest.mark.parametrize(
    "line",
    [
        b"* ESEARCH UID ALL 1:x\r\n",
        b"* ESEARCH UID ALL 99999999999\r\n",
        b"* ESEARCH (",
    ],
)
def test_it_rejects_bad_esearch_results(line: bytes) -> None:
    with pytest.raises(ParseError):
        parse.esearch_all(line, limit=10)


# -- the simple FETCH shapes read by one regular expression (issue 14) --------------

_PIECES = [
    b"* ",
    b"* 12 FETCH (",
    b"* 3 fetch (",
    b"UID",
    b"uid",
    b"RFC822.SIZE",
    b"BODY[]",
    b"body[]",
    b"BODY[HEADER]",
    b"FLAGS",
    b" ",
    b"  ",
    b"7",
    b"0",
    b"99999999999",
    b"{5}\r\n",
    b"{12}\n",
    b"{3+}\r\n",
    b"{99999999999}\r\n",
    b"(",
    b")",
    b'"a b"',
    b"NIL",
    b"\\Seen",
    b"\r\n",
    b"\n",
    b"x",
]


def _outcome(parse_it: object, text: bytes, partial: bool) -> object:
    try:
        return parse_it(text, partial=partial)  # type: ignore[operator]
    except ParseError:
        return ParseError


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(st.sampled_from(_PIECES), max_size=14),
    st.booleans(),
)
def test_the_fast_fetch_reading_agrees_with_the_tokenizer(
    pieces: list[bytes], partial: bool
) -> None:
    text = b"* 12 FETCH (" + b"".join(pieces)
    assert _outcome(parse.fetch_pairs, text, partial) == _outcome(
        parse.tokenized_pairs, text, partial
    )


@pytest.mark.parametrize(
    ("text", "partial"),
    [
        (b"* 12 FETCH (UID 34 BODY[] {5678}\r\n", True),
        (b"* 12 FETCH (UID 34 BODY[] {5678}\r\n)\r\n", False),
        (b"* 1 FETCH (UID 1 RFC822.SIZE 1234)\r\n", False),
        (b"* 1 FETCH (BODY[] {5}\r\n UID 9 BODY[] {7}\r\n", True),
        (b"* 12 fetch (uid 34 body[] {5}\r\n)\n", False),
    ],
)
def test_the_shapes_servers_send_take_the_fast_way(text: bytes, partial: bool) -> None:
    fast = parse._simple_pairs(text, partial=partial)
    assert fast is not None
    assert fast == parse.tokenized_pairs(text, partial=partial)
