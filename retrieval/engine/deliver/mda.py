"""Delivery through a local program (fetchmail's ``mda``), without a shell.

The command is an argv list; ``%T`` (or fetchmail's older ``%s``) becomes the
recipient and ``%F`` the envelope sender, each inside its own argument, so
nothing a server sends can turn into shell syntax. Values that would still be
dangerous to a program that hands them to a shell itself (quotes, ``$``,
backticks, ``;``, ``|``, control characters...) are refused before anything
runs. With ``%T`` the program runs once per recipient (fetchmail joins them
into one argument; one run each lets a partial failure be retried for the
recipients that need it). Line endings: LF by default (``stripcr``), CRLF
with ``forcecr``, untouched with ``no stripcr``.

Exit 0 means accepted, unless the program wrote to stderr: by default that is
a failure too (as getmail does, and reliability.md asks: an MDA that exits 0
after complaining may have lost the mail); ``mda_ignore_stderr`` restores
fetchmail's rule (exit status only). EX_TEMPFAIL (75), a signal, a time-out, a
program that stops reading or any status outside 64-78 means "try again
later"; other sysexits codes (64-78) count as a permanent refusal, which
softbounce keeps by default.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import threading
from typing import IO, TYPE_CHECKING

from retrieval.engine.deliver.sink import DeliveryOutcome, RecipientReply
from retrieval.engine.errors import ConfigError
from retrieval.engine.wire.commands import program_environment
from retrieval.engine.wire.encoding import (
    CrlfLineEncoder,
    PlainEncoder,
    UnixLineEncoder,
)

if TYPE_CHECKING:
    from retrieval.engine.deliver.sink import Handoff
    from retrieval.engine.ports import Transcript
    from retrieval.engine.spec import DeliverySpec, MessageOptions

EX_TEMPFAIL = 75
MAX_STDERR = 4096  # kept for the report; the rest is read and dropped
# What a %T or %F value may contain: the characters of ordinary addresses.
_SAFE_VALUE = re.compile(r"[A-Za-z0-9.+=/%^_@:\[\]-]{0,320}")
_RECIPIENT = ("%T", "%s")


def safe_value(value: str) -> bool:
    """True when ``value`` may be put into an MDA argument."""
    return _SAFE_VALUE.fullmatch(value) is not None and not value.startswith("-")


class MdaSink:
    def __init__(
        self,
        delivery: DeliverySpec,
        transcript: Transcript,
        *,
        message: MessageOptions | None = None,
    ) -> None:
        if not delivery.mda:
            raise ConfigError("Delivery by MDA was chosen but no command is set.")
        self._argv = delivery.mda
        self._timeout = delivery.timeout
        self._ignore_stderr = delivery.mda_ignore_stderr
        self._env = program_environment(inherit=delivery.inherit_env)
        self._transcript = transcript
        strip = message.stripcr if message is not None else None
        force = message.forcecr if message is not None else False
        # fetchmail: stripcr wins over forcecr; unset, it is on unless forcecr.
        self._line_ends = (
            "lf"
            if (strip or (strip is None and not force))
            else ("crlf" if force else "plain")
        )

    sends_ahead = False  # nothing to gain from knowing the next message

    def deliver(self, handoff: Handoff) -> DeliveryOutcome:
        envelope = handoff.envelope
        per_recipient = any(tag in arg for arg in self._argv for tag in _RECIPIENT)
        targets = envelope.recipients if per_recipient else envelope.recipients[:1]
        uses_sender = any("%F" in arg for arg in self._argv)
        replies: list[RecipientReply] = []
        for target in targets:
            recipients = (target,) if per_recipient else envelope.recipients
            unsafe = [
                value
                for value, used in (
                    (target, per_recipient),
                    (envelope.mail_from, uses_sender),
                )
                if used and not safe_value(value)
            ]
            if unsafe:
                text = (
                    f"5.1.3 The address {unsafe[0][:80]!r} contains characters that "
                    "are not passed to a delivery program; not delivered."
                )
                replies.extend(RecipientReply(r, 554, text) for r in recipients)
                continue
            argv = [self._expand(arg, target, envelope.mail_from) for arg in self._argv]
            code, text = self._run(argv, handoff, recipients)
            replies.extend(RecipientReply(r, code, text) for r in recipients)
        return DeliveryOutcome.from_replies(replies)

    @staticmethod
    def _expand(arg: str, target: str, sender: str) -> str:
        for tag in _RECIPIENT:
            arg = arg.replace(tag, target)
        return arg.replace("%F", sender)

    def _encoder(self) -> UnixLineEncoder | CrlfLineEncoder | PlainEncoder:
        if self._line_ends == "lf":
            return UnixLineEncoder()
        if self._line_ends == "crlf":
            return CrlfLineEncoder()
        return PlainEncoder()

    def _run(
        self, argv: list[str], handoff: Handoff, recipients: tuple[str, ...]
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
                env=self._env,  # not the worker's secrets (wire/commands.py)
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
            encoder = self._encoder()
            try:
                for index, chunk in enumerate(handoff.message.chunks(recipients)):
                    process.stdin.write(encoder.feed(chunk))
                    if index == 0:
                        handoff.reached("data")
                process.stdin.write(encoder.finish())
                process.stdin.close()
            except OSError as exc:
                # Stopped reading halfway (catalogue 19): never "delivered".
                write_error = f"it stopped reading the message ({exc.strerror or exc})"
                with contextlib.suppress(OSError):
                    process.stdin.close()
            handoff.reached("dot")
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
        if status == 0 and words and not self._ignore_stderr:
            return (
                451,
                f"The delivery program exited 0 but wrote to stderr{detail}; the "
                "message is kept (set mda_ignore_stderr to count the exit status only).",
            )
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

    def close(self, *, keep: bool = False) -> None:
        pass  # nothing stays open between messages


def _drain(stream: IO[bytes], into: list[bytes]) -> None:
    kept = 0
    while data := stream.read(4096):
        if kept < MAX_STDERR:
            into.append(data[: MAX_STDERR - kept])
            kept += len(data)
    stream.close()
