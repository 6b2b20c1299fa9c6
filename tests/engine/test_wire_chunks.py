"""Bodies read and written in chunks: the POP3 dot decoder and the connection's
chunk reads, wherever the network happens to cut the bytes.

The decoder is checked against the line-by-line reading it replaced (split at
LF, a leading dot dropped, ``.`` CRLF or ``.`` LF ends), on tables, on every
cut of a sample, and on Hypothesis' inventions; the POP3 session is then fed a
pipelined exchange through a socket that delivers it cut at every offset.
"""

from __future__ import annotations

import re
from collections import deque
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval.engine.errors import ProtocolError
from retrieval.engine.fetch.pop3 import Pop3Session
from retrieval.engine.fetch.session import RemoteMessage
from retrieval.engine.memory import ListTranscript
from retrieval.engine.wire.encoding import DotDecoder
from retrieval.engine.wire.transport import RECV_SIZE, Connection
from tests.support.fake_servers import dot_stuff

from .conftest import make_spec

if TYPE_CHECKING:
    import socket

    from retrieval.engine.wire.spool import MessageSpool
    from tests.support.fake_servers import FakeServer


def reference(wire: bytes) -> tuple[bytes, bytes] | None:
    """The line-by-line reading: (body, rest), or None when the end is missing."""
    out: list[bytes] = []
    at = 0
    while (end := wire.find(b"\n", at)) >= 0:
        line, at = wire[at : end + 1], end + 1
        if line in (b".\r\n", b".\n"):
            return b"".join(out), wire[at:]
        out.append(line[1:] if line.startswith(b".") else line)
    return None


def decode(chunks: list[bytes]) -> tuple[bytes, bytes | None]:
    """Feed ``chunks`` until the end is found; what follows it is returned whole."""
    decoder = DotDecoder()
    body: list[bytes] = []
    for index, chunk in enumerate(chunks):
        part, rest = decoder.feed(chunk)
        body.append(part)
        if rest is not None:
            return b"".join(body), rest + b"".join(chunks[index + 1 :])
    return b"".join(body), None


def cuts(data: bytes, sizes: list[int]) -> list[bytes]:
    chunks, at = [], 0
    for size in sizes * (len(data) + 1):
        if at >= len(data):
            break
        chunks.append(data[at : at + size])
        at += size
    return chunks


@pytest.mark.parametrize(
    ("wire", "body", "rest"),
    [
        (b".\r\n", b"", b""),
        (b".\n", b"", b""),  # a bare-LF terminator, from sloppy servers
        (b"a\r\n.\r\n+OK\r\n", b"a\r\n", b"+OK\r\n"),
        (b"..\r\n.\r\n", b".\r\n", b""),  # a line holding one dot
        (b"...x\r\n.\r\n", b"..x\r\n", b""),
        (b".a\r\n.\r\n", b"a\r\n", b""),  # unstuffed although not stuffed
        (b"a.\r\n.b\r\n.\r\n", b"a.\r\nb\r\n", b""),  # only at a line start
        (b".\rx\r\n.\r\n", b"\rx\r\n", b""),  # dot CR without LF: not the end
        (b"a\r\n. \r\n.\r\n", b"a\r\n \r\n", b""),
        (b"a\n.\n", b"a\n", b""),
        (b"x\r\n.\r\n.\r\n", b"x\r\n", b".\r\n"),  # the first end is the end
        (b"caf\xe9\x00\r\n.\r\n", b"caf\xe9\x00\r\n", b""),
        (b"no end\r\n", b"no end\r\n", None),
        (b"a\r\n.", b"a\r\n", None),  # a dot waits for what follows it
        (b"a\r\n.\r", b"a\r\n", None),
    ],
)
def test_it_decodes_a_multiline_body(
    wire: bytes, body: bytes, rest: bytes | None
) -> None:
    assert decode([wire]) == (body, rest)


SAMPLE = (
    b".first line starts with a dot\r\n"
    b"..\r\n"
    b"middle. no dot\r\n"
    b"...three\r\n"
    b".\rnot the end\r\n"
    b"\r\n"
    b"..\r\n"
    b".\r\n"
    b"+OK 2 octets\r\n"
)


def test_every_cut_in_two_or_three_reads_the_same() -> None:
    expected = reference(SAMPLE)
    assert expected is not None
    assert expected[1] == b"+OK 2 octets\r\n"
    for first in range(len(SAMPLE) + 1):
        assert decode([SAMPLE[:first], SAMPLE[first:]]) == expected, first
        for second in range(first, min(first + 4, len(SAMPLE)) + 1):
            chunks = [SAMPLE[:first], SAMPLE[first:second], SAMPLE[second:]]
            assert decode(chunks) == expected, (first, second)


def test_one_byte_at_a_time_reads_the_same() -> None:
    assert decode([bytes([b]) for b in SAMPLE]) == reference(SAMPLE)


def test_a_body_without_dots_comes_back_as_the_same_object() -> None:
    """The common case costs no copy."""
    chunk = b"plain line\r\n" * 1000
    assert DotDecoder().feed(chunk)[0] is chunk


_PIECE = st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"a", b"\xe9", b"\x00", b".."])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_PIECE, max_size=40),
    st.lists(st.integers(min_value=1, max_value=7), min_size=1),
)
def test_it_agrees_with_line_by_line_reading(
    pieces: list[bytes], sizes: list[int]
) -> None:
    wire = b"".join(pieces) + b"\r\n.\r\n+OK tail"
    assert decode(cuts(wire, sizes)) == reference(wire)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([b".", b"..", b"a", b"\xe9", b" ", b"\r"]), max_size=8),
    st.lists(st.integers(min_value=0, max_value=7), max_size=8),
    st.lists(st.integers(min_value=1, max_value=9), min_size=1),
)
def test_a_stuffed_body_round_trips(
    words: list[bytes], lines: list[int], sizes: list[int]
) -> None:
    """What a server stuffs, the decoder gives back, and exactly the rest after."""
    body = b"".join(
        b"".join(words[: n % (len(words) + 1)]) + b"\r\n" for n in lines
    ).replace(b"\r\r\n", b"\r \r\n")
    wire = dot_stuff(body) + b".\r\n+OK next\r\n"
    assert decode(cuts(wire, sizes)) == (body, b"+OK next\r\n")


class ScriptedSocket:
    """A socket whose reads return exactly the given pieces (at most ``n``)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = deque(p for p in pieces if p)
        self.sent = bytearray()

    def settimeout(self, timeout: float | None) -> None:
        pass

    def recv(self, size: int) -> bytes:
        if not self.pieces:
            return b""  # the server closed the connection
        piece = self.pieces.popleft()
        if len(piece) > size:
            self.pieces.appendleft(piece[size:])
        return piece[:size]

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def getpeername(self) -> tuple[str, int]:
        return ("127.0.0.1", 110)

    def close(self) -> None:
        pass


def session_over(pieces: list[bytes], max_bytes: int = 0) -> Pop3Session:
    conn = Connection(
        cast("socket.socket", ScriptedSocket(pieces)),
        timeout=1.0,
        transcript=ListTranscript(),
        peer="pop.example.org:110",
    )
    server = cast("FakeServer", SimpleNamespace(port=110))
    spec = make_spec(server, max_message_bytes=max_bytes)
    session = Pop3Session(conn, "+OK hello", spec)
    session.capabilities = {"PIPELINING", "UIDL"}
    return session


def read(spool: MessageSpool) -> bytes:
    with spool:
        return b"".join(spool.chunks())


BODIES = [
    b"Subject: one\r\n\r\n.dot\r\n..\r\n.\r\nend\r\n",
    b"Subject: two\r\n\r\n" + b"L" * (RECV_SIZE + 3) + b"\r\n.\r\n",
]
PIPELINED = (
    b"+OK first\r\n"
    + dot_stuff(BODIES[0])
    + b".\r\n+OK second\r\n"
    + dot_stuff(BODIES[1])
    + b".\r\n+OK after\r\n"
)
OFFSETS = sorted(
    {
        *range(0, 120),
        *(
            at + d
            for at in [m.start() for m in re.finditer(rb"\n\.", PIPELINED)]
            for d in range(-2, 5)
        ),
        *range(len(PIPELINED) - 40, len(PIPELINED) + 1),
    }
)


@pytest.mark.parametrize("cut", OFFSETS)
def test_pipelined_bodies_split_anywhere_reach_their_spools_whole(cut: int) -> None:
    """Each body ends at its own terminator; the next reply is not swallowed."""
    session = session_over([PIPELINED[:cut], PIPELINED[cut:]])
    messages = [
        RemoteMessage("u1", 1, len(BODIES[0])),
        RemoteMessage("u2", 2, len(BODIES[1])),
    ]
    session.prefetch(messages)
    assert [read(session.fetch(m)) for m in messages] == BODIES
    assert session._conn.readline() == b"+OK after\r\n"


def test_a_doubled_ok_line_is_still_dropped() -> None:
    wire = b"+OK 30 octets\r\n+OK here it comes\r\n" + dot_stuff(BODIES[0]) + b".\r\n"
    session = session_over([wire[:20], wire[20:40], wire[40:]])
    message = RemoteMessage("u1", 1, len(BODIES[0]))
    session.prefetch([message])
    assert read(session.fetch(message)) == BODIES[0]
    assert any("second +OK" in note for note in session.notes)


def test_a_body_over_the_cap_ends_the_session() -> None:
    wire = b"+OK\r\n" + b"x" * 5000 + b"\r\n.\r\n"
    session = session_over([wire[i : i + 700] for i in range(0, len(wire), 700)], 4096)
    message = RemoteMessage("u1", 1, 5002)
    session.prefetch([message])
    with pytest.raises(ProtocolError, match="larger than the limit of 4096"):
        session.fetch(message)


def test_a_connection_closed_mid_body_is_an_error_not_a_short_message() -> None:
    session = session_over([b"+OK\r\nSubject: x\r\n\r\npartial\r\n."])
    message = RemoteMessage("u1", 1, 40)
    session.prefetch([message])
    with pytest.raises(Exception, match="closed the connection"):
        session.fetch(message)


def test_literal_reads_take_exactly_their_size_and_leave_the_rest() -> None:
    data = bytes(range(256)) * 600  # more than one receive
    sock = ScriptedSocket([data[:10], data[10:] + b" tail\r\n"])
    conn = Connection(
        cast("socket.socket", sock),
        timeout=1.0,
        transcript=ListTranscript(),
        peer="imap.example.org:143",
    )
    got = list(conn.read_exact(len(data), chunk=4096))
    assert b"".join(got) == data
    assert max(len(piece) for piece in got) <= 4096
    assert conn.readline() == b" tail\r\n"
