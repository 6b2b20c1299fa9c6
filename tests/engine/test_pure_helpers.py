"""Pure helpers: DATA encoding, header fields, addresses, spool, trace, masking."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval.engine.deliver.headers import (
    header_value,
    is_valid_address,
    message_id,
    return_path,
)
from retrieval.engine.deliver.trace import TraceInfo, received_header
from retrieval.engine.errors import MessageTooLarge
from retrieval.engine.memory import ListTranscript
from retrieval.engine.redact import WITHHELD, RedactingTranscript
from retrieval.engine.wire.encoding import (
    MANY_DOTS,
    SmtpDataEncoder,
    UnixLineEncoder,
)
from retrieval.engine.wire.spool import MessageSpool

WHEN = datetime(2025, 11, 25, 13, 37, tzinfo=UTC)


def encode(chunks: list[bytes]) -> bytes:
    encoder = SmtpDataEncoder()
    return b"".join(encoder.feed(c) for c in chunks) + encoder.finish()


@pytest.mark.parametrize(
    ("chunks", "wire"),
    [
        ([b"a\r\nb\r\n"], b"a\r\nb\r\n.\r\n"),
        ([b".\r\n..x\r\n"], b"..\r\n...x\r\n.\r\n"),
        ([b"a\nb"], b"a\r\nb\r\n.\r\n"),  # bare LF and a missing final newline
        ([b"a\r", b"\n.b\r\n"], b"a\r\n..b\r\n.\r\n"),  # CRLF split across chunks
        ([b"a\r\n", b".b"], b"a\r\n..b\r\n.\r\n"),  # dot at a chunk's line start
        ([b"x\ry\r\n"], b"x\ry\r\n.\r\n"),  # a lone CR inside a line stays
        ([b""], b".\r\n"),
        ([b"8bit \xe9\x00\r\n"], b"8bit \xe9\x00\r\n.\r\n"),
    ],
)
def test_it_encodes_smtp_data(chunks: list[bytes], wire: bytes) -> None:
    assert encode(chunks) == wire


def test_it_encodes_every_chunking_the_same() -> None:
    body = b".a\r\n\r\n..\r\n.\r\nx\r\n.\r\n"
    whole = encode([body])
    for size in range(1, len(body)):
        assert encode([body[i : i + size] for i in range(0, len(body), size)]) == whole


def data_reference(data: bytes) -> bytes:
    """DATA as RFC 5321 4.5.2 says, line by line: every line ended by CRLF
    (a CR before an LF belongs to the line end), a leading dot doubled, the
    last line ended too, then the final dot."""
    lines = data.split(b"\n")
    last = lines.pop()  # after the final LF: "" when the data ends with one
    lines = [line.removesuffix(b"\r") for line in lines] + ([last] if last else [])
    return (
        b"".join(
            (b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines
        )
        + b".\r\n"
    )


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.sampled_from([b".", b"..", b"\r", b"\n", b"\r\n", b"a", b"\xe9"])),
    st.lists(st.integers(min_value=1, max_value=9), min_size=1),
)
def test_it_encodes_like_line_by_line_stuffing(
    pieces: list[bytes], sizes: list[int]
) -> None:
    """Bare LFs, dots and CRs anywhere, the chunks cut anywhere."""
    data = b"".join(pieces)
    chunks, at = [], 0
    for n, size in enumerate(sizes * (len(data) + 1)):
        if at >= len(data) and n:
            break
        chunks.append(data[at : at + size])
        at += size
    assert encode(chunks) == data_reference(data)


@pytest.mark.parametrize("tail", [b"", b"bare\nLF\r\n", b".\n"])
@pytest.mark.parametrize("dots", [MANY_DOTS - 1, MANY_DOTS, MANY_DOTS + 1, 1000])
def test_many_dotted_lines_in_one_chunk_are_stuffed_alike(
    dots: int, tail: bytes
) -> None:
    data = b"a\r\n" + b".x\r\n" * dots + tail
    assert encode([data]) == data_reference(data)


def test_it_writes_unix_line_endings_for_an_mda() -> None:
    encoder = UnixLineEncoder()
    out = encoder.feed(b"a\r") + encoder.feed(b"\nb\r\n.c") + encoder.finish()
    assert out == b"a\nb\n.c\n"


HEADER = (
    b"Return-Path: <bounce@example.org>\r\n"
    b"Subject: a folded\r\n  subject\r\n"
    b"Message-ID: <abc@example.org>\r\n"
)


def test_it_reads_header_fields() -> None:
    assert header_value(HEADER, "subject") == "a folded subject"
    assert header_value(HEADER, "X-Missing") is None
    assert return_path(HEADER) == "bounce@example.org"
    assert message_id(HEADER) == "<abc@example.org>"


def scan_for_field(header_block: bytes, name: str) -> str | None:
    """header_value as one scan per lookup (before the split was shared)."""
    wanted = name.lower().encode()
    value: list[bytes] | None = None
    for line in header_block.splitlines():
        if value is not None:
            if line[:1] in (b" ", b"\t"):
                value.append(line)
                continue
            break
        field, colon, rest = line.partition(b":")
        if colon and field.strip().lower() == wanted:
            value = [rest]
    if value is None:
        return None
    return b" ".join(part.strip() for part in value).decode("latin-1").strip()


@given(
    lines=st.lists(
        st.sampled_from(
            [
                b"From: a@example.org",
                b"from : b@example.org",
                b"To: c@example.org",
                b" To: folded-looking@example.org",
                b"\tcontinued",
                b"Subject: x",
                b"no colon here",
                b"",
                b"Message-ID: <id@example.org>",
            ]
        ),
        max_size=8,
    ),
    endings=st.sampled_from([b"\r\n", b"\n", b"\r"]),
    name=st.sampled_from(["From", "to", "SUBJECT", "Message-ID", "X-None"]),
)
def test_a_shared_split_finds_what_a_scan_per_lookup_finds(
    lines: list[bytes], endings: bytes, name: str
) -> None:
    block = b"".join(line + endings for line in lines)
    assert header_value(block, name) == scan_for_field(block, name)


@pytest.mark.parametrize(
    ("field", "sender"),
    [
        (b"Return-Path: <>\r\n", ""),
        (b"Return-Path: <@relay.example:user@example.org>\r\n", "user@example.org"),
        # A bare CR ends the field: what follows can never reach the listener.
        (b"Return-Path: <evil@x>\rRCPT TO:<x@y>>\r\n", "evil@x"),
        (b"Return-Path: <a b@example.org>\r\n", ""),
        (b"Return-Path: plain@example.org\r\n", "plain@example.org"),
        (b"Subject: none\r\n", ""),
    ],
)
def test_it_turns_bad_return_paths_into_the_null_sender(
    field: bytes, sender: str
) -> None:
    assert return_path(field) == sender


@pytest.mark.parametrize(
    ("address", "valid"),
    [
        ("joe@example.com", True),
        ("joe", True),
        ('"odd name"@example.com', True),
        ("joe@[192.0.2.1]", True),
        ("joe@example.com>\r\nRCPT TO:<x", False),
        ("joe smith@example.com", False),
        ("<joe@example.com>", False),
        ("", False),
        ("a" * 400 + "@example.com", False),
    ],
)
def test_it_validates_addresses(address: str, valid: bool) -> None:
    assert is_valid_address(address) is valid


def test_it_spools_and_captures_the_header() -> None:
    with MessageSpool(max_bytes=0) as spool:
        for piece in (b"Subject: x\r\nReturn-Path: <a@b.c>\r", b"\n\r\nbody \xff\r\n"):
            spool.write(piece)
        assert spool.header_block == b"Subject: x\r\nReturn-Path: <a@b.c>\r\n"
        assert spool.has_8bit and spool.size == 44
        assert b"".join(spool.chunks()).endswith(b"body \xff\r\n")


def test_it_spools_a_message_without_header() -> None:
    with MessageSpool(max_bytes=0) as spool:
        spool.write(b"\r\njust a body\r\n")
        assert spool.header_block == b""


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.sampled_from([b"A: b", b"\r", b"\n", b"\r\n", b" c", b"x" * 7])),
    st.lists(st.integers(min_value=1, max_value=9), min_size=1),
)
def test_the_header_is_the_same_however_the_message_is_written(
    pieces: list[bytes], sizes: list[int]
) -> None:
    """Up to the first blank line (CRLF or LF), whatever the writes' sizes."""
    raw = b"".join(pieces)
    ends = [at for at in (raw.find(b"\n\r\n"), raw.find(b"\n\n")) if at >= 0]
    if raw.startswith((b"\r\n", b"\n")):
        header, complete = b"", True
    else:
        header, complete = (raw[: min(ends) + 1], True) if ends else (raw, False)
    with MessageSpool(max_bytes=0) as spool:
        at = 0
        for size in sizes * (len(raw) + 1):
            if at >= len(raw):
                break
            spool.write(raw[at : at + size])
            at += size
        assert (spool.header_block, spool.header_complete) == (header, complete)


def test_it_refuses_a_message_over_the_cap() -> None:
    with MessageSpool(max_bytes=10) as spool, pytest.raises(MessageTooLarge):
        spool.write(b"x" * 11)


INFO = TraceInfo(
    server_host="mail.example.org",
    server_address="192.0.2.10",
    local_name="mx.local",
    protocol="POP3",
    poll_name="work",
    account="joe",
)


def test_it_builds_a_fetchmail_style_received_header() -> None:
    # fetchmail 6.4.37 wrote, for the same poll (program name and version aside):
    #   Received: from mail.example.org [192.0.2.10]
    #   \tby mx.local with POP3 (fetchmail-6.4.37)
    #   \tfor <joe@example.com> (single-drop); Tue, 25 Nov 2025 13:37:00 +0000 (UTC)
    header = received_header(INFO, ("joe@example.com",), when=WHEN)
    assert header == (
        b"Received: from mail.example.org [192.0.2.10]\r\n"
        b"\tby mx.local with POP3 (fetchweb-0.1.0)\r\n"
        b"\tfor <joe@example.com> (single-drop); Tue, 25 Nov 2025 13:37:00 +0000 (UTC)\r\n"
    )


def test_tracepolls_names_the_poll_and_several_recipients_get_no_for() -> None:
    info = replace(INFO, tracepolls=True, folder="Lists")
    header = received_header(info, ("a@b", "c@d"), when=WHEN)
    assert header.split(b"\r\n")[1:3] == [
        b"\tby mx.local with POP3 (fetchweb-0.1.0 polling work account joe folder Lists)",
        b"\tTue, 25 Nov 2025 13:37:00 +0000 (UTC)",
    ]


def test_it_keeps_configuration_from_injecting_header_lines() -> None:
    info = replace(INFO, server_host="evil\r\nX-Injected: yes", server_address="")
    header = received_header(info, ("a@b", "c@d"))
    assert header.count(b"\r\n") == 3 and b"\r\nX-Injected" not in header


def unstuff(wire: bytes) -> bytes:
    """What a listener makes of DATA: lines up to the lone dot, one dot removed."""
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    lines = wire.split(b"\r\n")[:-1]
    out = []
    for line in lines:
        if line == b".":
            break
        out.append(line[1:] if line.startswith(b".") else line)
    assert len(out) == len(lines) - 1, "the message ended before its last line"
    return b"".join(line + b"\r\n" for line in out)


def crlf(data: bytes) -> bytes:
    """The message with every line end CRLF and a final one added if missing."""
    out = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return out if not out or out.endswith(b"\n") else out + b"\r\n"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"a", b"\xe9", b"\x00"])),
    st.lists(st.integers(min_value=1, max_value=7), min_size=1),
)
def test_dot_stuffing_preserves_every_byte(
    pieces: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(pieces)
    chunks, at = [], 0
    for size in cuts * (len(data) + 1):
        if at >= len(data):
            break
        chunks.append(data[at : at + size])
        at += size
    assert unstuff(encode(chunks)) == crlf(data)


def test_it_masks_secrets_and_their_base64_in_transcripts() -> None:
    lines = ListTranscript()
    wire = RedactingTranscript(lines, ["hunter2-long-secret"])
    wire.record("S", "-ERR bad password hunter2-long-secret")
    wire.record("C", "aHVudGVyMi1sb25nLXNlY3JldA==")
    wire.record("S", "x" * 5000)
    # Withheld whole, never substring-masked (issue 10 item 6).
    assert lines.lines[0] == ("S", WITHHELD["S"])
    assert lines.lines[1] == ("C", WITHHELD["C"])
    assert len(lines.lines[2][1]) < 1100
