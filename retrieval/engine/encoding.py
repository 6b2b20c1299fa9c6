"""Line-ending transforms between a message and a listener: SMTP DATA, MDA stdin.

All work chunk by chunk with a little carried state, so a message of any size
passes through in constant memory. A CR at the end of a chunk is held back
because it may be the first half of a CRLF split across two reads.
"""

from __future__ import annotations


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
        out = self._edit(chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        self._at_line_start = out.endswith(b"\n")
        return out

    def _edit(self, out: bytes) -> bytes:
        return out

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

    def _edit(self, out: bytes) -> bytes:
        out = out.replace(b"\n.", b"\n..")
        if self._at_line_start and out.startswith(b"."):
            out = b"." + out
        return out

    def finish(self) -> bytes:
        """The tail of :class:`CrlfLineEncoder`, then the terminating dot."""
        return super().finish() + b".\r\n"


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
