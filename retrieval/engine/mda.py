"""Delivery through a local program (fetchmail's ``mda``), without a shell.

The command is an argv list; ``%T`` becomes the recipient and ``%F`` the
envelope sender, each as one whole argument, so nothing a server sends can turn
into shell syntax. With ``%T`` the program runs once per recipient. The message
reaches stdin with LF line endings, as procmail and maildrop expect.

Exit 0 means accepted; EX_TEMPFAIL (75), a signal, a time-out or a program that
stops reading means "try again later"; other sysexits codes (64-78) count as a
permanent refusal, which softbounce keeps by default.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from typing import IO, TYPE_CHECKING

from retrieval.engine.encoding import UnixLineEncoder
from retrieval.engine.errors import ConfigError
from retrieval.engine.sink import DeliveryOutcome, Envelope, RecipientReply

if TYPE_CHECKING:
    from retrieval.engine.ports import Transcript
    from retrieval.engine.spec import DeliverySpec
    from retrieval.engine.spool import MessageSpool

EX_TEMPFAIL = 75
MAX_STDERR = 4096  # kept for the report; the rest is read and dropped


class MdaSink:
    def __init__(self, delivery: DeliverySpec, transcript: Transcript) -> None:
        if not delivery.mda:
            raise ConfigError("Delivery by MDA was chosen but no command is set.")
        self._argv = delivery.mda
        self._timeout = delivery.timeout
        self._transcript = transcript

    def deliver(
        self, message: MessageSpool, envelope: Envelope, trace: bytes
    ) -> DeliveryOutcome:
        per_recipient = any("%T" in arg for arg in self._argv)
        targets = envelope.recipients if per_recipient else (envelope.recipients[:1])
        replies: list[RecipientReply] = []
        for target in targets:
            argv = [
                arg.replace("%T", target).replace("%F", envelope.mail_from)
                for arg in self._argv
            ]
            code, text = self._run(argv, message, trace)
            recipients = (target,) if per_recipient else envelope.recipients
            replies.extend(RecipientReply(r, code, text) for r in recipients)
        return DeliveryOutcome.from_replies(replies)

    def _run(
        self, argv: list[str], message: MessageSpool, trace: bytes
    ) -> tuple[int, str]:
        """Run one MDA; returns an SMTP-like code and words for the report."""
        self._transcript.record("*", f"MDA: {' '.join(argv)}")
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # a runaway MDA is killed with its children
            )
        except OSError as exc:
            return 451, f"The delivery program could not be started: {exc}."
        assert process.stdin is not None and process.stderr is not None
        stderr: list[bytes] = []
        reader = threading.Thread(
            target=_drain, args=(process.stderr, stderr), daemon=True
        )
        reader.start()
        timer = threading.Timer(self._timeout, process.kill)
        timer.start()
        write_error = ""
        try:
            encoder = UnixLineEncoder()
            try:
                process.stdin.write(encoder.feed(trace))
                for chunk in message.chunks():
                    process.stdin.write(encoder.feed(chunk))
                process.stdin.write(encoder.finish())
                process.stdin.close()
            except OSError as exc:
                # Stopped reading halfway (catalogue 19): never "delivered".
                write_error = f"it stopped reading the message ({exc.strerror or exc})"
                with contextlib.suppress(OSError):
                    process.stdin.close()
            status = process.wait()
        finally:
            timed_out = not timer.is_alive() and process.returncode is not None
            timer.cancel()
            reader.join(timeout=5)
        words = b"".join(stderr).decode("utf-8", "replace").strip()
        detail = f" ({words[:500]})" if words else ""
        if timed_out and status < 0:
            return (
                451,
                f"The delivery program ran longer than {self._timeout:g} s{detail}.",
            )
        if write_error:
            return 451, f"The delivery program failed: {write_error}{detail}."
        if status == 0:
            return 250, f"delivered by {argv[0]}{detail}"
        if status < 0:
            return 451, f"The delivery program was killed by signal {-status}{detail}."
        if status == EX_TEMPFAIL or not 64 <= status <= 78:
            return 451, f"The delivery program exited with status {status}{detail}."
        return (
            554,
            f"The delivery program refused the message (status {status}){detail}.",
        )

    def close(self) -> None:
        pass  # nothing stays open between messages


def _drain(stream: IO[bytes], into: list[bytes]) -> None:
    kept = 0
    while data := stream.read(4096):
        if kept < MAX_STDERR:
            into.append(data[: MAX_STDERR - kept])
            kept += len(data)
    stream.close()
