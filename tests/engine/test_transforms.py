"""Message edits on the way to the listener: trace placement, fetchmail's header
options, mimedecode, and that all of it streams in bounded memory."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval.engine.deliver import trace, transforms
from retrieval.engine.deliver.trace import TraceInfo
from retrieval.engine.deliver.transforms import (
    MAX_FIELD,
    Edits,
    MimePlan,
    OutgoingMessage,
    _Editor,
    decode_encoded_words,
    mime_plan,
    plain_trace_offset,
    qualify_addresses,
)
from retrieval.engine.wire.spool import MessageSpool

TRACE = TraceInfo(
    server_host="pop.example.org",
    server_address="192.0.2.1",
    local_name="mx",
    protocol="POP3",
)


def out(raw: bytes, edits: Edits | None = None, *, chunk: int = 0) -> bytes:
    with MessageSpool(0) as spool:
        if chunk:
            for at in range(0, len(raw), chunk):
                spool.write(raw[at : at + chunk])
        else:
            spool.write(raw)
        message = OutgoingMessage(spool, edits or Edits())
        return b"".join(message.chunks(["joe@example.org"]))


def test_without_options_the_bytes_are_untouched() -> None:
    raw = b"Subject: x\r\nStatus: RO\r\n\r\n=E9 body\r\nno final newline"
    assert out(raw) == raw


def test_the_trace_leads_when_there_is_no_received_field() -> None:
    edited = out(b"Return-Path: <a@b.c>\r\nSubject: x\r\n\r\nbody\r\n", Edits(TRACE))
    assert edited.startswith(b"Received: from pop.example.org [192.0.2.1]\r\n\tby mx ")
    assert edited.endswith(b"Return-Path: <a@b.c>\r\nSubject: x\r\n\r\nbody\r\n")


def test_a_headerless_message_gets_the_trace_too() -> None:
    edited = out(b"\r\njust a body\r\n", Edits(TRACE))
    assert edited.startswith(b"Received: ") and edited.endswith(
        b"\r\n\r\njust a body\r\n"
    )


def test_fetchmails_header_options() -> None:
    # What fetchmail 6.4.37 made of this header with rewrite, dropstatus and
    # dropdelivered (captured from a run against Dovecot and aiosmtpd).
    raw = (
        b"Delivered-To: alice@example.org\r\n"
        b"From: bob\r\n"
        b"To: alice, carol@x.org\r\n"
        b"Cc: Dave <dave>\r\n"
        b"Status: RO\r\n"
        b"X-Mozilla-Status: 0001\r\n"
        b"Subject: hi\r\n\r\nbody\r\n"
    )
    edits = Edits(dropstatus=True, dropdelivered=True, rewrite_host="127.0.0.1")
    assert out(raw, edits) == (
        b"From: bob@127.0.0.1\r\n"
        b"To: alice@127.0.0.1, carol@x.org\r\n"
        b"Cc: Dave <dave@127.0.0.1>\r\n"
        b"Subject: hi\r\n\r\nbody\r\n"
    )


@pytest.mark.parametrize(
    ("field", "rewritten"),
    [
        (b"From: bob (Bob Smith)\r\n", b"From: bob@h (Bob Smith)\r\n"),
        (b"To: a,\r\n b\r\n", b"To: a@h,\r\n b@h\r\n"),
        (b'To: "Doe, J" <jd>\r\n', b'To: "Doe, J" <jd@h>\r\n'),
        (b"To: undisclosed-recipients:;\r\n", b"To: undisclosed-recipients:;\r\n"),
        (b"Return-Path: <>\r\n", b"Return-Path: <>\r\n"),
        (b"From: uucp!bob, x@y\r\n", b"From: uucp!bob, x@y\r\n"),
    ],
)
def test_rewrite_qualifies_only_bare_names(field: bytes, rewritten: bytes) -> None:
    assert qualify_addresses(field, b"h") == rewritten


def test_mimedecode_decodes_quoted_printable_text_and_header_words() -> None:
    raw = (
        b"MIME-Version: 1.0\r\n"
        b"Subject: =?iso-8859-1?q?caf=E9_x?= =?utf-8?b?w6k=?=\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"caf=E9 soft=\r\nbreak\r\n=2E dot\r\nbad =ZZ stays\r\n"
    )
    assert out(raw, Edits(mimedecode=True)) == (
        b"MIME-Version: 1.0\r\n"
        b"Subject: caf\xe9 x\xc3\xa9\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        b"caf\xe9 softbreak\r\n. dot\r\nbad =ZZ stays\r\n"
    )


def test_mimedecode_follows_multipart_parts_and_leaves_the_rest() -> None:
    raw = (
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
        b"preamble =E9\r\n"
        b"--outer\r\n"
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"a=E9\r\n"
        b"--outer\r\n"
        b"Content-Type: multipart/alternative; boundary=inner\r\n\r\n"
        b"--inner\r\n"
        b"Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"<b>=E9</b>\r\n"
        b"--inner--\r\n"
        b"--outer\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"bin=E9\r\n"
        b"--outer--\r\n"
    )
    edited = out(raw, Edits(mimedecode=True))
    assert b"preamble =E9\r\n" in edited  # outside any part
    assert b"8bit\r\n\r\na\xe9\r\n--outer" in edited
    assert b"8bit\r\n\r\n<b>\xe9</b>\r\n--inner--" in edited
    assert b"quoted-printable\r\n\r\nbin=E9\r\n--outer--" in edited  # not text


def test_mimedecode_needs_mime_version_as_fetchmail_does() -> None:
    raw = b"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9\r\n"
    assert out(raw, Edits(mimedecode=True)) == raw
    assert not mime_plan(raw).decode_body


def test_decoded_words_cannot_split_a_field() -> None:
    assert decode_encoded_words(b"Subject: =?x?q?a=0D=0AX-Evil:_1?=\r\n") == (
        b"Subject: a  X-Evil: 1\r\n"
    )


def test_a_huge_header_field_passes_through_unedited() -> None:
    huge = b"X-Huge: " + b"a" * (MAX_FIELD * 3) + b"\r\n"
    raw = b"Status: RO\r\n" + huge + b"Received: from x\r\n\r\nbody\r\n"
    edited = out(raw, Edits(TRACE, dropstatus=True), chunk=4096)
    assert edited.startswith(b"Received: from pop.example.org")
    assert huge + b"Received: from x\r\n\r\nbody\r\n" in edited
    assert b"Status: RO" not in edited


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"Subject: x\r\n",
                b"Status: RO\r\n",
                b"From: bob\r\n",
                b" folded\r\n",
                b"Received: from y\r\n",
                b"\r\n",
                b"=E9=\r\n",
                b"--b\r\n",
                b".\r\n",
                b"\n",
                b"\r",
            ]
        ),
        max_size=30,
    ),
    st.integers(min_value=1, max_value=9),
)
def test_every_chunking_gives_the_same_bytes(pieces: list[bytes], size: int) -> None:
    raw = (
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n"
        + b"".join(pieces)
    )
    edits = Edits(
        TRACE, dropstatus=True, mimedecode=True, rewrite_host="h", dropdelivered=True
    )
    # One clock for both runs: the trace's date would otherwise differ when they
    # straddle a second (and a folded date line hid it from a substring swap).
    with _noon():
        assert out(raw, edits, chunk=size) == out(raw, edits)


def _noon() -> mock._patch[object]:
    """The trace's clock stopped: every stamp of "now" is one moment's."""
    noon = trace._stamp(datetime(2026, 12, 4, 12, 0, tzinfo=UTC))
    return mock.patch.object(trace, "_stamp_of_second", lambda second: noon)


def test_editing_streams_in_bounded_memory() -> None:
    body = (b"x" * 76 + b"=\r\n") * 20_000 + b"end\r\n"  # ~1.6 MB of soft breaks
    raw = (
        b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + body
    )
    with MessageSpool(0) as spool:
        spool.write(raw)
        message = OutgoingMessage(spool, Edits(TRACE, mimedecode=True))
        tracemalloc.start()
        total = longest = 0
        for piece in message.chunks(["joe"]):
            total += len(piece)
            longest = max(longest, len(piece))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert total > 1_500_000 and longest < 512 * 1024
    assert peak < 2 * 1024 * 1024  # the spool's chunks, not the message


def test_an_oversized_decoded_line_is_broken_like_fetchmail() -> None:
    raw = (
        (
            b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            + b"y" * 70
            + b"=\r\n"
        )
        * 1
        + (b"y" * 70 + b"=\r\n") * 30
        + b"z\r\n"
    )
    body = out(raw, Edits(mimedecode=True)).split(b"\r\n\r\n", 1)[1]
    assert all(len(line) <= 998 + 70 for line in body.split(b"\r\n"))
    assert body.replace(b"\r\n", b"") == b"y" * 70 * 31 + b"z"


def test_the_date_in_trace_is_fetchmails() -> None:
    from retrieval.engine.deliver.trace import received_header

    stamp = received_header(TRACE, [], when=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert stamp.endswith(b"\tThu, 02 Jan 2025 03:04:05 +0000 (UTC)\r\n")


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"Subject: x\r\n",
                b"Received: from y\r\n",
                b"received : z\n",
                b" folded\r\n",
                b"\tfolded: too\n",
                b"no colon\r\n",
                b"Received\r\n",
                b"\r\r\n",
                b"X-A: a\rb\r\n",
                b"From: a@b.example\r\n",
                b"To: bob\r\n",
                b"Cc: <c@d>, e@f\r\n",
                b"To: x@y,\r\n",
                b" z\r\n",
                b"\x0bReceived: v\r\n",
                b"RECEIVED: w\r\n",
                b"reply-TO : bob\r\n",
                b"\x0cFrom: a@b\r\n",
                b"Resent-To:q\n",
                b"Receivedx: no\r\n",
            ]
        ),
        max_size=12,
    ),
    st.sampled_from([b"\r\n", b"\n", b""]),
    st.booleans(),
    st.booleans(),
)
def test_unedited_messages_skip_the_editor_with_the_same_bytes(
    fields: list[bytes], blank: bytes, traced: bool, rewrite: bool
) -> None:
    """With no option set (or rewrite with nothing to qualify), the trace is
    put in by one search of the header instead of the editor's walk: the bytes
    must be the editor's, header plain or not (what is not plain still goes
    through the editor)."""
    raw = b"".join(fields) + blank + b"body\r\n.dot\r\n"
    edits = Edits(TRACE if traced else None, rewrite_host="h" if rewrite else "")
    with _noon():
        shortcut = out(raw, edits)
        stamp = trace.received_header(TRACE, ["joe@example.org"]) if traced else b""
    editor = _Editor(edits, MimePlan(), stamp)
    assert shortcut == editor.feed(raw) + editor.finish()


def test_a_plain_header_gets_the_trace_before_its_first_received_field() -> None:
    assert plain_trace_offset(b"A: b\r\n c\r\nReceived: x\r\nReceived: y\r\n") == 10
    assert plain_trace_offset(b"A: b\r\nB: c\r\n") == 0  # none: at the top
    assert plain_trace_offset(b"") == 0  # no header at all
    assert plain_trace_offset(b"A: b\r\nno colon\r\n") is None  # the editor decides
    # rewrite: only when every address already has its host.
    assert plain_trace_offset(b"To: a@b,\r\n c@d\r\n", rewrite=True) == 0
    assert plain_trace_offset(b"To: a@b,\r\n bob\r\n", rewrite=True) is None


def _walk_only(field: bytes, host: bytes) -> bytes:
    with mock.patch.object(transforms, "_all_qualified", return_value=False):
        return qualify_addresses(field, host)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [b"a@b", b"bob", b" ", b",", b"<", b">", b"@", b"!", b"x", b"(c)", b'"q"']
        ),
        max_size=10,
    )
)
def test_the_shortcut_for_qualified_fields_answers_as_the_walk(
    pieces: list[bytes],
) -> None:
    """rewrite: a field whose addresses all have a host is returned as it is
    without the byte-by-byte walk; only when the walk would change nothing."""
    field = b"To: " + b"".join(pieces) + b"\r\n"
    assert qualify_addresses(field, b"h.example") == _walk_only(field, b"h.example")
