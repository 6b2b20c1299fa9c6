"""Where a message waits between the mail server and the listener.

Bodies are written here as they arrive and read back in chunks while they are
sent on, so no message is ever whole in memory (small ones stay in a memory
buffer up to ``MEMORY_BYTES``, larger ones roll over to a temporary file).
"""

from __future__ import annotations

import contextlib
import tempfile
from typing import TYPE_CHECKING

from retrieval.engine.errors import MessageFetchError, MessageTooLarge, ProtocolError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

MEMORY_BYTES = 256 * 1024
# Enough for any sane header block; Return-Path and Message-ID sit near the top.
MAX_HEADER_CAPTURE = 64 * 1024
READ_CHUNK = 64 * 1024


class MessageSpool:
    """One message's bytes, exactly as the server sent them (after unstuffing)."""

    def __init__(self, max_bytes: int) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=MEMORY_BYTES)  # noqa: SIM115
        self._max_bytes = max_bytes
        self._header = bytearray()
        self._header_done = False
        self._header_bytes: bytes | None = None  # header_block, once it is whole
        # The blank line after the header was seen (not just the capture limit).
        self.header_complete = False
        self.size = 0
        self.has_8bit = False

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self._max_bytes and self.size > self._max_bytes:
            raise MessageTooLarge(
                f"The message is larger than the limit of {self._max_bytes} bytes; "
                "it was left on the server."
            )
        if not self.has_8bit and not data.isascii():
            self.has_8bit = True
        self._capture_header(data)
        self._file.write(data)

    def _capture_header(self, data: bytes) -> None:
        if self._header_done:
            return
        kept = len(self._header)
        room = MAX_HEADER_CAPTURE + 2 - kept
        self._header += data if len(data) <= room else data[:room]
        if self._header.startswith((b"\r\n", b"\n")):
            # The message opens with the blank line: it has no header at all.
            self._header.clear()
            self._header_done = self.header_complete = True
            return
        # The blank line, searched for from where it may start (it may
        # straddle two writes), and an LF-only one only before a CRLF one:
        # a CRLF message has none, and its whole first chunk would be read.
        start = max(0, kept - 2)
        crlf = self._header.find(b"\n\r\n", start)
        lf = self._header.find(
            b"\n\n", start, crlf + 1 if crlf >= 0 else len(self._header)
        )
        ends = [at for at in (crlf, lf) if at >= 0]
        if ends:
            del self._header[min(ends) + 1 :]  # keep the last field's own LF
            self._header_done = self.header_complete = True
        elif len(self._header) >= MAX_HEADER_CAPTURE:
            self._header_done = True

    @property
    def header_block(self) -> bytes:
        """The header lines (bounded), each with its own line ending."""
        if not self._header_done:
            return bytes(self._header)
        if self._header_bytes is None:
            # One object for every reader: header lookups cache on it (its hash).
            self._header_bytes = bytes(self._header)
        return self._header_bytes

    def chunks(self) -> Iterator[bytes]:
        """Read the message from the start; may be called once per delivery try."""
        self._file.seek(0)
        while data := self._file.read(READ_CHUNK):
            yield data

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> MessageSpool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.contextmanager
def filling(spool: MessageSpool) -> Iterator[MessageSpool]:
    """While a body is read from the server into ``spool``: closed if that fails.

    A :class:`MessageFetchError` partway through a body leaves the rest of it
    on the wire, where it may never end: the session cannot go on, so it
    becomes a :class:`ProtocolError`, which ends the session and deletes nothing.
    """
    try:
        yield spool
    except MessageFetchError as exc:
        spool.close()
        raise ProtocolError(str(exc)) from exc
    except BaseException:
        spool.close()
        raise
