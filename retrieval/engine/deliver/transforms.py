"""The message as a listener receives it: spooled bytes, edited while they stream.

:class:`OutgoingMessage` wraps a :class:`~retrieval.engine.wire.spool.MessageSpool`
and yields the bytes to hand over, chunk by chunk: the header block field by
field (each field bounded, so a hostile 1 MB header line passes through
unedited rather than being held), the body line by line. With no option set
the only change is the ``Received:`` header, placed as fetchmail places it:
just before the first ``Received:`` field the message already has, or at the
top when it has none.

The edits are fetchmail's (``transact.c`` / ``unmime.c`` / ``rfc822.c``):

* ``dropstatus``: drop ``Status:`` and ``X-Mozilla-Status:`` fields;
* ``dropdelivered``: drop ``Delivered-To:`` fields;
* ``rewrite``: append ``@server`` to bare local names in address fields;
* ``mimedecode``: decode RFC 2047 encoded words in header fields to raw bytes
  (no charset conversion) and quoted-printable ``text/*`` and
  ``message/rfc822`` parts of a ``MIME-Version: 1.0`` message to 8bit, with
  their ``Content-Transfer-Encoding`` changed to ``8bit``. Unlike fetchmail,
  every ``multipart/*`` is followed (nested ones too), not just
  ``multipart/mixed``; like fetchmail, a decoded line longer than an SMTP line
  may be is broken with a line end.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from retrieval.engine.deliver.headers import header_value
from retrieval.engine.deliver.trace import TraceInfo, received_header

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from retrieval.engine.wire.spool import MessageSpool

# A field longer than this is passed through as it comes, never edited.
MAX_FIELD = 64 * 1024
# Fields held back while looking for the first Received: field.
MAX_PENDING = 64 * 1024
MAX_LINE = 998  # RFC 5321 text line, without CRLF
MAX_MIME_DEPTH = 8
EIGHT_BIT = b"Content-Transfer-Encoding: 8bit"
_ADDRESS_FIELDS = frozenset(
    name.encode()
    for name in (
        "from",
        "to",
        "reply-to",
        "return-path",
        "cc",
        "bcc",
        "resent-from",
        "resent-to",
        "resent-cc",
        "resent-bcc",
        "apparently-from",
        "apparently-to",
        "sender",
        "resent-sender",
    )
)
_STATUS_FIELDS = frozenset((b"status", b"x-mozilla-status"))
_SPACE = frozenset(b" \t\r\n\v\f")
_ENCODED_WORD = re.compile(rb"=\?([^?\r\n]*)\?([A-Za-z])\?([^?\r\n]*?)\?=")
_BETWEEN_WORDS = re.compile(rb"(\?=)[ \t\r\n]+(?==\?)")
_BOUNDARY = re.compile(
    rb"""boundary\s*=\s*(?:"([^"]{1,200})"|([^\s;"]{1,200}))""", re.I
)


@dataclass(frozen=True)
class Edits:
    """What to change on the way; the defaults change nothing but the trace."""

    trace: TraceInfo | None = None  # None: no Received header (invisible)
    dropstatus: bool = False
    dropdelivered: bool = False
    mimedecode: bool = False
    rewrite_host: str = ""  # qualify bare addresses with this name; "" = off


@dataclass(frozen=True)
class MimePlan:
    """What the top-level MIME fields say, read once from the header block."""

    decode_body: bool = False  # a quoted-printable text part at the top level
    boundary: bytes = b""  # a multipart's boundary, to follow its parts
    declares_8bit: bool = False  # Content-Transfer-Encoding 8bit or binary


def mime_plan(header_block: bytes) -> MimePlan:
    version = (header_value(header_block, "MIME-Version") or "").split("(")[0]
    if version.strip() != "1.0":
        return MimePlan()
    content_type = (header_value(header_block, "Content-Type") or "").lower()
    encoding = (header_value(header_block, "Content-Transfer-Encoding") or "").lower()
    encoding = encoding.split("(")[0].strip()
    declares_8bit = encoding in ("8bit", "binary")
    if content_type.startswith(("multipart/", "message/")) and not _decodable(
        content_type.encode()
    ):
        boundary = _boundary(content_type.encode())
        if boundary:
            return MimePlan(boundary=boundary, declares_8bit=declares_8bit)
    decode = encoding == "quoted-printable" and _decodable(content_type.encode())
    return MimePlan(decode_body=decode, declares_8bit=declares_8bit)


def _decodable(content_type: bytes) -> bool:
    value = content_type.strip().lower()
    return value.startswith((b"text/", b"message/rfc822"))


def _boundary(content_type: bytes) -> bytes:
    match = _BOUNDARY.search(content_type)
    if match is None:
        return b""
    value = match.group(1) or match.group(2) or b""
    return value[:70]


class OutgoingMessage:
    """One spooled message with its edits; :meth:`chunks` may run once per try."""

    def __init__(self, spool: MessageSpool, edits: Edits, *, pass8bits: bool = False):
        self.spool = spool
        self.edits = edits
        plan = mime_plan(spool.header_block) if edits.mimedecode else None
        self._plan = plan if plan is not None else MimePlan()
        decodes = bool(self._plan.decode_body or self._plan.boundary)
        # BODY=8BITMIME is declared for 8-bit bytes, a body that decoding will
        # make 8-bit, on request, or for a declared 8bit/binary body: the MIME
        # fields are read for that only when nothing before decided.
        self.needs_8bit = (
            spool.has_8bit
            or pass8bits
            or decodes
            or (
                plan if plan is not None else mime_plan(spool.header_block)
            ).declares_8bit
        )
        self._offset: int | None = None  # see _trace_at
        self._offset_known = False

    @property
    def header_block(self) -> bytes:
        """The original header block (bounded), as the server sent it."""
        return self.spool.header_block

    @property
    def size(self) -> int:
        """An estimate for ESMTP SIZE: the spool plus room for the trace."""
        return self.spool.size + (400 if self.edits.trace is not None else 0)

    def chunks(self, recipients: Sequence[str]) -> Iterator[bytes]:
        """The message to send, for the recipients the listener accepted."""
        trace = (
            received_header(self.edits.trace, recipients)
            if self.edits.trace is not None
            else b""
        )
        pieces = self.spool.chunks()
        first = next(pieces, b"")
        at = self._trace_at(first)
        if at is not None:
            yield first[:at] + trace + first[at:] if trace else first
            yield from pieces
            return
        editor = _Editor(self.edits, self._plan, trace)
        for chunk in itertools.chain((first,), pieces):
            out = editor.feed(chunk)
            if out:
                yield out
        out = editor.finish()
        if out:
            yield out

    def _trace_at(self, first: bytes) -> int | None:
        """Where the trace goes in ``first``, when nothing else is to change.

        The usual case: no option edits the header or the body (``rewrite``,
        fetchmail's default, finds nothing to change), and the whole header
        block, a plain one (see :func:`plain_trace_offset`), is in the spool's
        first chunk. Then the editor would pass every byte on and put
        the trace where this says; its field-by-field walk is spared. None:
        the editor does the work.
        """
        edits = self.edits
        if (
            edits.dropstatus
            or edits.dropdelivered
            or edits.mimedecode
            or not self.spool.header_complete
        ):
            return None
        header = self.spool.header_block
        end = len(header)
        blank = first[end : end + 1] == b"\n" or first[end : end + 2] == b"\r\n"
        if not blank or not first.startswith(header):
            return None
        if not self._offset_known:
            self._offset = plain_trace_offset(header, rewrite=bool(edits.rewrite_host))
            self._offset_known = True
        return self._offset


def plain_trace_offset(header: bytes, *, rewrite: bool = False) -> int | None:
    """Where the editor puts the trace in a plain header block: before the
    first ``Received:`` field, else at the top. None when the block is not
    plain, and only the editor knows.

    Plain: every line ends with LF and is not blank (the editor would take a
    CR-only line for the end of the header); every field's first line has a
    colon, so that its name is the same whether read from the line or from the
    whole unfolded field; no more than the editor holds back before the
    trace (MAX_PENDING), nor a field longer than it edits (MAX_FIELD). With
    ``rewrite``, also: every address field is one it leaves as it is.
    """
    if len(header) > min(MAX_PENDING, MAX_FIELD) or not header.endswith(b"\n"):
        return None if header else 0
    at = 0
    found: int | None = None
    starts: list[tuple[bytes, int]] = []  # each field's name and first byte
    for number, line in enumerate(header[:-1].split(b"\n")):
        if not line.strip(b"\r"):
            return None
        if not number or line[:1] not in (b" ", b"\t"):
            name, colon, _ = line.partition(b":")
            if not colon:
                return None
            name = name.strip().lower()
            starts.append((name, at))
            if found is None and name == b"received":
                found = at
        at += len(line) + 1
    if rewrite:
        ends = [start for _, start in starts[1:]] + [len(header)]
        for (name, start), end in zip(starts, ends, strict=True):
            if name in _ADDRESS_FIELDS and not _all_qualified(header[start:end]):
                return None
    return 0 if found is None else found


class _Editor:
    """The streaming state machine behind :meth:`OutgoingMessage.chunks`."""

    def __init__(self, edits: Edits, plan: MimePlan, trace: bytes) -> None:
        self._edits = edits
        self._trace = trace
        self._in_header = True
        self._partial = bytearray()  # an incomplete line carried between chunks
        self._field: list[bytes] = []  # the header field being collected
        self._field_size = 0
        self._passing = False  # the current field is too long: pass it through
        self._raw_line = False  # inside an endless line that is passed through
        self._pending: list[bytes] = []  # fields before the first Received:
        self._pending_size = 0
        self._body = _BodyDecoder(plan) if edits.mimedecode else None
        self._rewrite_cte = plan.decode_body

    def feed(self, chunk: bytes) -> bytes:
        out = bytearray()
        data = bytes(self._partial) + chunk if self._partial else chunk
        self._partial.clear()
        start = 0
        while start < len(data):
            if not self._in_header and self._body is None:
                # Plain body: no need to look at lines, nor to copy the chunk.
                if not start and not out:
                    return data
                return bytes(out) + data[start:]
            end = data.find(b"\n", start)
            if self._raw_line:
                # The rest of an endless line, passed on as it comes.
                stop = len(data) if end < 0 else end + 1
                out += data[start:stop]
                self._raw_line = end < 0
                start = stop
                continue
            if end < 0:
                rest = data[start:]
                if len(rest) > MAX_FIELD:
                    out += self._endless(rest)
                else:
                    self._partial += rest
                break
            line = data[start : end + 1]
            start = end + 1
            out += self._header_line(line) if self._in_header else self._body_line(line)
        return bytes(out)

    def _endless(self, piece: bytes) -> bytes:
        """A line longer than MAX_FIELD: what is held goes out, then the line raw."""
        self._raw_line = True
        if not self._in_header:
            return (self._body.passthrough() if self._body else b"") + piece
        if self._passing or (self._field and piece[:1] in (b" ", b"\t")):
            return self._overflow(piece)
        out = self._end_field()
        self._passing = True  # a new field: never edited, sent as it comes
        return out + self._release() + piece

    def finish(self) -> bytes:
        out = bytearray()
        if self._partial:
            last = bytes(self._partial)
            self._partial.clear()
            out += self._header_line(last) if self._in_header else self._body_line(last)
        if self._in_header:
            out += self._end_field()
            out += self._release()
        if self._body is not None:
            out += self._body.finish()
        return bytes(out)

    # -- header ---------------------------------------------------------------

    def _header_line(self, line: bytes) -> bytes:
        out = bytearray()
        if self._passing:
            if line[:1] in (b" ", b"\t"):
                return line
            self._passing = False
        elif line[:1] in (b" ", b"\t") and self._field:
            if self._field_size + len(line) > MAX_FIELD:
                return self._overflow(line)
            self._field.append(line)
            self._field_size += len(line)
            return b""
        out += self._end_field()
        if line.strip(b"\r\n") == b"":
            # The blank line: a message without Received gets ours on top.
            self._in_header = False
            out += self._release()
            return bytes(out) + line
        self._field = [line]
        self._field_size = len(line)
        return bytes(out)

    def _overflow(self, piece: bytes) -> bytes:
        """The field grew past MAX_FIELD: send what we have and the rest as is."""
        held = b"".join(self._field) + piece
        self._field, self._field_size = [], 0
        self._passing = True
        return self._release() + held

    def _end_field(self) -> bytes:
        if not self._field:
            return b""
        field = b"".join(self._field)
        self._field, self._field_size = [], 0
        name = field.split(b":", 1)[0].strip().lower()
        if name == b"received" and self._trace:
            return self._release(trace_first=False) + field
        edited = self._edit(name, field)
        if edited is None:
            return b""
        if not self._trace:
            return edited
        self._pending.append(edited)
        self._pending_size += len(edited)
        if self._pending_size > MAX_PENDING:
            return self._release()
        return b""

    def _release(self, *, trace_first: bool = True) -> bytes:
        """The fields held back, with the trace if it has not gone out yet.

        At a Received: field the trace follows the held fields (it goes right
        before that field); anywhere else (no Received: at all, or too much
        held) it leads, as fetchmail puts it at the top.
        """
        held = b"".join(self._pending)
        self._pending, self._pending_size = [], 0
        trace, self._trace = self._trace, b""
        return trace + held if trace_first else held + trace

    def _edit(self, name: bytes, field: bytes) -> bytes | None:
        edits = self._edits
        if edits.mimedecode:
            field = decode_encoded_words(field)
        if edits.dropdelivered and name == b"delivered-to":
            return None
        if edits.dropstatus and name in _STATUS_FIELDS:
            return None
        if edits.rewrite_host and name in _ADDRESS_FIELDS:
            field = qualify_addresses(field, edits.rewrite_host.encode("ascii"))
        if self._rewrite_cte and name == b"content-transfer-encoding":
            field = EIGHT_BIT + _ending(field)
        return field

    # -- body -----------------------------------------------------------------

    def _body_line(self, line: bytes) -> bytes:
        if self._body is None:
            return line
        return self._body.line(line)


class _BodyDecoder:
    """Quoted-printable to 8bit, following MIME parts by their boundaries."""

    def __init__(self, plan: MimePlan) -> None:
        self._qp = plan.decode_body
        self._boundaries: list[bytes] = [plan.boundary] if plan.boundary else []
        self._part_header: list[bytes] | None = None  # collecting a part's header
        self._part_size = 0
        self._soft = bytearray()  # decoded text of a line ended by a soft break

    def line(self, line: bytes) -> bytes:
        bare = line.rstrip(b"\r\n")
        if self._boundaries and bare.startswith(b"--"):
            out = self._delimiter(bare, line)
            if out is not None:
                return out
        if self._part_header is not None:
            return self._header_line(line)
        if not self._qp:
            return line
        return self._decode(line)

    def _delimiter(self, bare: bytes, line: bytes) -> bytes | None:
        text = bare.rstrip(b" \t")
        for depth in range(len(self._boundaries) - 1, -1, -1):
            boundary = b"--" + self._boundaries[depth]
            if text == boundary or text == boundary + b"--":
                flushed = self._flush_soft(line)
                del self._boundaries[depth + 1 :]
                if text.endswith(b"--") and text != boundary:
                    self._boundaries.pop()
                    self._part_header = None
                else:
                    self._part_header = []
                    self._part_size = 0
                self._qp = False
                return flushed + line
        return None

    def _header_line(self, line: bytes) -> bytes:
        assert self._part_header is not None
        if line.strip(b"\r\n") and self._part_size + len(line) <= MAX_FIELD:
            self._part_header.append(line)
            self._part_size += len(line)
            return b""
        lines, self._part_header = self._part_header, None
        if line.strip(b"\r\n"):
            return b"".join(lines) + line  # a runaway part header: pass it on
        return self._part_start(lines) + line

    def _part_start(self, lines: list[bytes]) -> bytes:
        """Decide how the part's body is treated and edit its header to match."""
        fields: list[bytes] = []
        for raw in lines:
            if raw[:1] in (b" ", b"\t") and fields:
                fields[-1] += raw
            else:
                fields.append(raw)
        content_type = encoding = b""
        for field in fields:
            name, _, value = field.partition(b":")
            if name.strip().lower() == b"content-type":
                content_type = b" ".join(value.split())
            elif name.strip().lower() == b"content-transfer-encoding":
                encoding = value.split(b"(")[0].strip().lower()
        nested = _boundary(content_type)
        multipart = content_type.lower().startswith(b"multipart/") and nested
        if multipart and len(self._boundaries) < MAX_MIME_DEPTH:
            self._boundaries.append(nested)
        self._qp = encoding == b"quoted-printable" and _decodable(content_type)
        out = bytearray()
        for field in fields:
            name = field.partition(b":")[0].strip().lower()
            field = decode_encoded_words(field)
            if self._qp and name == b"content-transfer-encoding":
                field = EIGHT_BIT + _ending(field)
            out += field
        return bytes(out)

    def _decode(self, line: bytes) -> bytes:
        ending = _ending(line)
        text = line[: len(line) - len(ending)] if ending else line
        soft = text.endswith(b"=")
        decoded = decode_qp(text[:-1] if soft else text)
        self._soft += decoded
        if soft and len(self._soft) < MAX_LINE:
            return b""
        out = bytes(self._soft) + (ending or b"\r\n")
        self._soft.clear()
        return out

    def passthrough(self) -> bytes:
        """Before an endless line that is passed on raw: end any joined line."""
        return self._flush_soft(b"\r\n")

    def _flush_soft(self, line: bytes) -> bytes:
        if not self._soft:
            return b""
        out = bytes(self._soft) + (_ending(line) or b"\r\n")
        self._soft.clear()
        return out

    def finish(self) -> bytes:
        return self._flush_soft(b"\r\n")


def _ending(line: bytes) -> bytes:
    if line.endswith(b"\r\n"):
        return b"\r\n"
    if line.endswith(b"\n"):
        return b"\n"
    return b""


_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")


def decode_qp(text: bytes) -> bytes:
    """Quoted-printable octets to bytes; a malformed ``=`` stays as it is."""
    return _HEX.sub(lambda m: bytes((int(m.group(1), 16),)), text)


def decode_encoded_words(field: bytes) -> bytes:
    """RFC 2047 words to their raw bytes, as fetchmail's mimedecode does.

    No charset conversion: the bytes are those of the word's charset. Decoded
    CR, LF and NUL become spaces so that a word can never split the field.
    """
    if b"=?" not in field:
        return field
    joined = _BETWEEN_WORDS.sub(rb"\1", field)

    def word(match: re.Match[bytes]) -> bytes:
        kind, data = match.group(2).lower(), match.group(3)
        if kind == b"q":
            raw = decode_qp(data.replace(b"_", b" "))
        elif kind == b"b":
            try:
                raw = base64.b64decode(data + b"=" * (-len(data) % 4))
            except (binascii.Error, ValueError):
                return match.group(0)
        else:
            return match.group(0)
        return raw.translate(_NO_BREAKS)

    return _ENCODED_WORD.sub(word, joined)


_NO_BREAKS = bytes.maketrans(b"\r\n\0", b"   ")


def qualify_addresses(field: bytes, host: bytes) -> bytes:
    """Append ``@host`` to bare local names in an address field (fetchmail's
    ``reply_hack``): ``From: bob (Bob)`` becomes ``From: bob@host (Bob)``.

    Addresses with ``@`` or ``!``, ``<>``, quoted strings, comments and group
    syntax (``undisclosed-recipients:;``) are left alone.
    """
    if _all_qualified(field):
        return field
    buf = bytearray(field)
    insert = b"@" + host
    state = 0  # 0: field name, 1: addresses, 2: quoted string, 3: <address>
    depth = 0
    has_host = has_bare = False
    last_nws = 0
    parens_at: int | None = None
    i = 0
    while i < len(buf):
        c = buf[i]
        if state != 2:
            if c == 0x28:  # (
                depth += 1
            elif c == 0x29:  # )
                depth -= 1
        if not depth and not has_host:
            if state == 0:
                if c == 0x3A:  # :
                    state = 1
            elif state == 1:
                if c not in _SPACE:
                    last_nws = c
                if c == 0x3C:  # <
                    state = 3
                elif c in (0x40, 0x21):  # @ !
                    has_host = True
                elif c == 0x22:  # "
                    state = 2
                elif (
                    (c == 0x2C or _field_end(buf, i))
                    and has_bare
                    and last_nws != 0x3B  # ;
                ):
                    at = parens_at if parens_at is not None else i
                    while at > 0 and (buf[at] in _SPACE or buf[at] == 0x2C):
                        at -= 1
                    buf[at + 1 : at + 1] = insert
                    i += len(insert)
                    has_host = True
                elif (
                    i + 1 < len(buf)
                    and buf[i + 1] == 0x28
                    and has_bare
                    and last_nws not in (0x3B, 0x29)
                ):
                    parens_at = i
                elif c not in _SPACE:
                    has_bare = True
            elif state == 2:
                if c == 0x22 and _unescaped(buf, i):
                    state = 1
            elif c in (0x40, 0x21):
                has_host = True
            elif c == 0x3E and buf[i - 1] != 0x3C:  # > not closing <>
                state = 1
                buf[i:i] = insert
                i += len(insert)
                has_host = True
        if i > 0 and buf[i - 1] == 0x2C and not depth:
            has_host = has_bare = False
            parens_at = None
        i += 1
    return bytes(buf)


def _all_qualified(field: bytes) -> bool:
    """True when :func:`qualify_addresses` would change nothing, known without
    its byte-by-byte walk: the usual field whose every address has a host.

    Without quotes or comments nothing hides an ``@`` from the walk, and it
    inserts only at a ``>`` or at the end of an item when no ``@`` or ``!``
    came first; each item between commas (wherever they sit: the walk starts
    an item at every comma) must show one before any ``>``, not counting the
    byte right after the comma, which the walk passes over.
    """
    return _QUALIFIED.fullmatch(field) is not None


# The name, then items between commas, each (past the byte after its comma)
# with an "@" or "!" before any ">"; no quote or parenthesis anywhere.
_HOSTED = rb'[^@!>,"()]*[@!][^,"()]*'
_QUALIFIED = re.compile(rb'[^:"()]*:' + _HOSTED + rb'(?:,[^,"()]' + _HOSTED + rb")*")


def _field_end(buf: bytearray, i: int) -> bool:
    return buf[i] == 0x0A and (i + 1 >= len(buf) or buf[i + 1] not in (0x20, 0x09))


def _unescaped(buf: bytearray, i: int) -> bool:
    slashes = 0
    while i - 1 - slashes >= 0 and buf[i - 1 - slashes] == 0x5C:
        slashes += 1
    return slashes % 2 == 0
