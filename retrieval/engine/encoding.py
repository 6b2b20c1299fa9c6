"""Stream transforms between the spool and a listener: SMTP DATA and MDA stdin.

Both work chunk by chunk with a little carried state, so a message of any size
passes through in constant memory. A CR at the end of a chunk is held back
because it may be the first half of a CRLF split across two reads.
"""

from __future__ import annotations


class SmtpDataEncoder:
    """CRLF line endings and dot-stuffing (RFC 5321 4.5.2) for the DATA phase."""

    def __init__(self) -> None:
        self._at_line_start = True
        self._held_cr = False

    def feed(self, chunk: bytes) -> bytes:
        if self._held_cr:
            chunk = b"\r" + chunk
            self._held_cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._held_cr = True
        if not chunk:
            return b""
        # Bare LF becomes CRLF; a lone CR inside a line is left as it is.
        out = chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        out = out.replace(b"\n.", b"\n..")
        if self._at_line_start and out.startswith(b"."):
            out = b"." + out
        self._at_line_start = out.endswith(b"\n")
        return out

    def finish(self) -> bytes:
        """The tail: a pending CR, a final CRLF if the last line had none, the dot."""
        tail = b""
        if self._held_cr:
            self._held_cr = False
            tail = b"\r"
            self._at_line_start = False
        if not self._at_line_start:
            tail += b"\r\n"
        return tail + b".\r\n"


class UnixLineEncoder:
    """LF line endings for an MDA, as fetchmail hands mail to procmail and friends."""

    def __init__(self) -> None:
        self._held_cr = False
        self._at_line_start = True

    def feed(self, chunk: bytes) -> bytes:
        if self._held_cr:
            chunk = b"\r" + chunk
            self._held_cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._held_cr = True
        out = chunk.replace(b"\r\n", b"\n")
        if out:
            self._at_line_start = out.endswith(b"\n")
        return out

    def finish(self) -> bytes:
        tail = b"\r" if self._held_cr else b""
        if tail or not self._at_line_start:
            tail += b"\n"
        return tail
