"""``bsmtp FILE``: append each message to a batch SMTP file instead of delivering it.

The format is fetchmail's (``sink.c``), which exim's ``-bS`` and other batch
SMTP readers take::

    MAIL FROM:<sender> [BODY=8BITMIME]
    RCPT TO:<recipient>          (one per recipient)
    DATA
    the message, CRLF line ends, dot-stuffed
    .

Bare recipient names get ``@`` plus ``smtpaddress`` (else ``localhost``), as
fetchmail does for BSMTP. Each message is written under an exclusive
``fcntl`` lock on the file (so two polls, or a reader that locks, never see
half a batch) and ``fsync``-ed before the write counts as accepted: only then
does the poll record the message and delete it from the server. A write that
fails (disk full) is cut off again, so the file never holds a torn entry; the
message stays on the server. ``-`` writes to standard output (the command line's
``--bsmtp -``), flushed, and synced when it is a file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
import time
from typing import TYPE_CHECKING

from retrieval.engine.deliver.sink import DeliveryOutcome, RecipientReply
from retrieval.engine.wire.encoding import SmtpDataEncoder

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from retrieval.engine.deliver.sink import Deliverable, Handoff
    from retrieval.engine.ports import Transcript
    from retrieval.engine.spec import DeliverySpec

STDOUT = "-"
LOCK_RETRY = 0.05  # seconds between attempts at a lock someone else holds
WRITE_SIZE = 64 * 1024


class BsmtpSink:
    """A :class:`~retrieval.engine.deliver.sink.Sink` writing fetchmail's BSMTP batches."""

    def __init__(self, delivery: DeliverySpec, transcript: Transcript) -> None:
        self._path = delivery.bsmtp
        self._domain = delivery.smtpaddress or "localhost"
        self._timeout = delivery.timeout
        self._transcript = transcript

    sends_ahead = False  # nothing to gain from knowing the next message

    def deliver(self, handoff: Handoff) -> DeliveryOutcome:
        envelope = handoff.envelope
        recipients = [self._qualify(r) for r in envelope.recipients]
        preamble = self._preamble(handoff.message, envelope.mail_from, recipients)
        entry = _batch(preamble, handoff, recipients)
        where = "standard output" if self._path == STDOUT else self._path
        try:
            if self._path == STDOUT:
                size = self._write_stdout(entry)
            else:
                size = self._append(entry)
        except OSError as exc:
            text = (
                f"4.3.0 The BSMTP file {where} could not be written "
                f"({exc.strerror or exc}); the message stays on the server."
            )
            self._transcript.record("*", f"BSMTP: {text}")
            return DeliveryOutcome.from_replies(
                [RecipientReply(r, 451, text) for r in recipients]
            )
        text = f"2.0.0 {size} octets written to the BSMTP file {where}"
        self._transcript.record("*", f"BSMTP: {text}")
        return DeliveryOutcome.from_replies(
            [RecipientReply(r, 250, text) for r in recipients]
        )

    def _qualify(self, recipient: str) -> str:
        return recipient if "@" in recipient else f"{recipient}@{self._domain}"

    @staticmethod
    def _preamble(message: Deliverable, sender: str, recipients: list[str]) -> bytes:
        lines = [
            f"MAIL FROM:<{sender}>" + (" BODY=8BITMIME" if message.needs_8bit else "")
        ]
        lines += [f"RCPT TO:<{r}>" for r in recipients]
        lines.append("DATA")
        for line in lines:
            if any(ch in line for ch in "\r\n\0"):
                raise ValueError("a BSMTP line must not contain CR, LF or NUL")
        return "".join(f"{line}\r\n" for line in lines).encode()

    def _append(self, entry: Iterable[bytes]) -> int:
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            self._lock(fd)
            start = os.fstat(fd).st_size
            try:
                size = _write_all(fd, entry)
                os.fsync(fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)  # never leave half a batch behind
                raise
            return size
        finally:
            os.close(fd)  # releases the lock

    def _lock(self, fd: int) -> None:
        """Wait for the lock, at most the delivery timeout."""
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
                if time.monotonic() >= deadline:
                    raise OSError(
                        exc.errno,
                        f"another process held its lock for {self._timeout:g} seconds",
                    ) from exc
                time.sleep(LOCK_RETRY)

    @staticmethod
    def _write_stdout(entry: Iterable[bytes]) -> int:
        sys.stdout.flush()
        fd = sys.stdout.fileno()
        size = _write_all(fd, entry)
        with contextlib.suppress(OSError):  # a pipe or a terminal cannot sync
            os.fsync(fd)
        return size

    def close(self, *, keep: bool = False) -> None:
        pass  # each message opens and closes the file


def _batch(preamble: bytes, handoff: Handoff, recipients: list[str]) -> Iterator[bytes]:
    """The whole entry, piece by piece as the spool is read: preamble, data, dot."""
    encoder = SmtpDataEncoder()
    yield preamble
    for index, chunk in enumerate(handoff.message.chunks(recipients)):
        yield encoder.feed(chunk)
        if index == 0:
            handoff.reached("data")
    yield encoder.finish()
    handoff.reached("dot")


def _write_all(fd: int, pieces: Iterable[bytes]) -> int:
    written = 0
    for piece in pieces:
        view = memoryview(piece)
        while view:
            done = os.write(fd, view[:WRITE_SIZE])
            written += done
            view = view[done:]
    return written
