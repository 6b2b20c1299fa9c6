"""Line-ending and dot transforms on the wire: POP3 bodies in, SMTP DATA and MDA
stdin out.

All work chunk by chunk with a little carried state, so a message of any size
passes through in constant memory, and each chunk is scanned in C (a regular
expression, ``bytes.find``, ``bytes.replace``) rather than line by line in
Python. A CR at the end of a chunk is held back because it may be the first
half of a CRLF split across two reads.
"""

from __future__ import annotations

import re

# A bare LF: one not preceded by CR (at a chunk's start, none is: a chunk's
# trailing CR is held back and put in front of the next one).
_BARE_LF = re.compile(rb"\n(?<!\r\n)")
# What DATA must edit, found in one pass over a chunk: a bare LF (a match of
# one byte) or a dot opening a line after a CRLF (two bytes: "\n."). One
# regular expression scanning for LF costs half of what counting LFs, counting
# CRLFs and searching for "\n." did, the bulk of the engine's work per byte.
_DATA_EDIT = re.compile(rb"\n(?:(?<!\r\n)|\.)")
MANY_DOTS = 32  # dotted lines in a chunk stuffed from their matches, at most


class _HeldCr:
    def __init__(self) -> None:
        self._held_cr = False
        self._at_line_start = True

    def _take(self, chunk: bytes) -> bytes:
        """``chunk`` with a held CR in front and its own trailing CR held back."""
        if self._held_cr:
            chunk = b"\r" + chunk
            self._held_cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._held_cr = True
        return chunk


class CrlfLineEncoder(_HeldCr):
    """Every line end becomes CRLF; a lone CR inside a line is left as it is."""

    def feed(self, chunk: bytes) -> bytes:
        chunk = self._take(chunk)
        if not chunk:
            return b""
        out = self._edit(chunk)
        self._at_line_start = out.endswith(b"\n")
        return out

    def _edit(self, chunk: bytes) -> bytes:
        return _crlf(chunk) if _BARE_LF.search(chunk) else chunk

    def finish(self) -> bytes:
        """A pending CR, then a final CRLF if the last line had none."""
        tail = b""
        if self._held_cr:
            self._held_cr = False
            tail = b"\r"
            self._at_line_start = False
        if not self._at_line_start:
            tail += b"\r\n"
        return tail


class SmtpDataEncoder(CrlfLineEncoder):
    """CRLF line endings and dot-stuffing (RFC 5321 4.5.2) for the DATA phase."""

    def _edit(self, chunk: bytes) -> bytes:
        out = _stuffed(chunk)
        if self._at_line_start and out.startswith(b"."):
            out = b"." + out
        return out

    def finish(self) -> bytes:
        """The tail of :class:`CrlfLineEncoder`, then the terminating dot."""
        return super().finish() + b".\r\n"


def _crlf(chunk: bytes) -> bytes:
    """Every LF (bare ones are rare) preceded by CR: a copy."""
    return chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _stuffed(chunk: bytes) -> bytes:
    """``chunk`` with CRLF line ends and a dot doubled at each line's start
    after the first; the chunk itself when neither changes anything."""
    lines: list[bytes] = []
    start = 0
    for found in _DATA_EDIT.finditer(chunk):
        if found.end() - found.start() == 1:
            return _crlf(chunk).replace(b"\n.", b"\n..")  # a bare LF: the slow way
        if len(lines) == MANY_DOTS:
            # So many that a match each would cost more than scanning again
            # in C (a message of dotted lines must not cost a Python step each).
            if _BARE_LF.search(chunk, found.start()):
                return _crlf(chunk).replace(b"\n.", b"\n..")
            return chunk.replace(b"\n.", b"\n..")
        lines.append(chunk[start : found.start() + 1])
        start = found.start() + 1
    if not lines:
        return chunk
    lines.append(chunk[start:])
    return b".".join(lines)


class UnixLineEncoder(_HeldCr):
    """LF line endings for an MDA, as fetchmail hands mail to procmail (stripcr)."""

    def feed(self, chunk: bytes) -> bytes:
        out = self._take(chunk).replace(b"\r\n", b"\n")
        if out:
            self._at_line_start = out.endswith(b"\n")
        return out

    def finish(self) -> bytes:
        tail = b"\r" if self._held_cr else b""
        self._held_cr = False
        if tail or not self._at_line_start:
            tail += b"\n"
        return tail


class PlainEncoder:
    """The bytes as they are (an MDA with ``no stripcr`` and no ``forcecr``)."""

    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def finish(self) -> bytes:
        return b""


class DotDecoder:
    """A POP3 multi-line answer (RFC 1939 3): dot-unstuffing and its end, in chunks.

    :meth:`feed` takes the bytes after the ``+OK`` line as they arrive and
    returns ``(body, rest)``: ``body`` is the message with each line's leading
    dot removed; ``rest`` is None until the terminating line (``.`` CRLF, or a
    bare LF from a sloppy server) was seen, then the bytes that followed it
    (pipelined answers). Lines may be of any length: only a dot at the start of
    a line, and the two bytes after it, are looked at. A ``.`` or ``.`` CR at the
    very end of a chunk is held back until the next one says what it is.
    """

    def __init__(self) -> None:
        self._at_line_start = True
        self._held = b""

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        if self._held:
            data, self._held = self._held + data, b""
        pieces: list[bytes] = []
        start = 0  # of the bytes not yet taken into ``pieces``
        dot = 0 if self._at_line_start and data[:1] == b"." else _line_dot(data, 0)
        while dot >= 0:
            after = data[dot + 1 : dot + 3]
            if after[:1] == b"\n" or after == b"\r\n":
                pieces.append(data[start:dot])
                end = dot + (3 if after == b"\r\n" else 2)
                return b"".join(pieces), data[end:]
            if after in (b"", b"\r"):
                pieces.append(data[start:dot])
                self._held, self._at_line_start = data[dot:], True
                return b"".join(pieces), None
            pieces.append(data[start:dot])  # a stuffed dot: drop it
            start = dot + 1
            dot = _line_dot(data, start)
        if data:
            self._at_line_start = data.endswith(b"\n")
        if not start:
            return data, None
        pieces.append(data[start:])
        return b"".join(pieces), None


def _line_dot(data: bytes, start: int) -> int:
    """The index of the next dot that starts a line after ``start``, or -1."""
    found = data.find(b"\n.", start)
    return found + 1 if found >= 0 else -1
