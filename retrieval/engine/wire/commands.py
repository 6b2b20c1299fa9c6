"""Programs run for a mailbox (plugin, plugout, preconnect, postconnect, mda): the
rules they share.

fetchmail hands these command lines to ``/bin/sh``; fetchweb never runs a shell.
A command is split into an argument list the way a shell splits words
(:func:`split_command`, ``shlex``), and a command that needs more of a shell
than that (pipes, redirections, ``;``, ``&``, variables, backquotes) is refused
with :data:`SHELL_REFUSAL` instead of being run in a way its author did not
mean. Placeholders (``%h``, ``%p``) are substituted inside single arguments
after the split, so a value can never become a second argument or shell syntax,
and the values themselves are checked first (:func:`safe_host`).

:func:`run_command` runs one command to its end (pre- and postconnect): no
standard input, its output (both streams, bounded) and its exit status go to
the transcript, and it is stopped (with any children in its process group)
when it outlives its deadline. :func:`stop` ends a program that is still
running (a plugin whose connection is closed).

Environment: every program (mda, plugin, plugout, preconnect, postconnect) is
started with :func:`program_environment`, the one place that decides it. The
web service's worker holds secrets in its environment (``SECRET_KEY``,
``FIELD_ENCRYPTION_KEYS``, ``DATABASE_URL``...), so by default a program gets
only :data:`ENVIRONMENT_KEPT` (and ``LC_*``) from it. fetchmail sets no
variables of its own for these programs (plugins get ``%h``/``%p`` in their
arguments, an MDA ``%T``/``%F``), so nothing is added. The command line, a
person's own process as fetchmail is, passes its whole environment on
(``inherit_env`` on the server and delivery specs, set by retrieval.cli).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from retrieval.engine.ports import Transcript

# What a shell would read as syntax outside quotes, and inside double quotes.
SHELL_OPERATORS = "|&;<>()\n"
SHELL_EXPANSIONS = "$`"
SHELL_REFUSAL = (
    "it needs a shell ({chars}), and fetchweb runs commands without one; write "
    "it as one program with its arguments (standard error is recorded anyway), "
    "or put the shell part in a script and name the script"
)
MAX_OUTPUT = 4096  # bytes of a command's output kept for the transcript
MAX_OUTPUT_LINES = 40
STOP_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
# A host name or address literal as it may stand in an argument: no spaces,
# no quotes, nothing a program could read as an option.
_HOST = re.compile(r"[A-Za-z0-9._:\[\]-]{1,255}")
_PLACEHOLDER = re.compile(r"%(.)")
# What a program run for a mailbox gets from the worker's environment.
ENVIRONMENT_KEPT = frozenset(
    {"PATH", "HOME", "LANG", "TZ", "USER", "LOGNAME", "SHELL", "TMPDIR"}
)


def program_environment(
    *, inherit: bool, source: Mapping[str, str] | None = None
) -> dict[str, str] | None:
    """The environment for a program we start (``env=`` of ``Popen``).

    ``inherit``: None, so the program inherits ours whole (the command line, as
    fetchmail). Otherwise only :data:`ENVIRONMENT_KEPT` and ``LC_*`` of
    ``source`` (``os.environ`` when None) are passed, never anything else.
    """
    if inherit:
        return None
    environ = os.environ if source is None else source
    return {
        key: value
        for key, value in environ.items()
        if key in ENVIRONMENT_KEPT or key.startswith("LC_")
    }


def split_command(text: str) -> tuple[str, ...] | None:
    """The argument list, or None when ``text`` needs a shell or is empty."""
    if shell_syntax(text):
        return None
    try:
        argv = tuple(shlex.split(text))
    except ValueError:  # an unbalanced quote
        return None
    return argv or None


def shell_syntax(text: str) -> set[str]:
    """The characters of ``text`` a POSIX shell would act on: operators outside
    quotes, ``$`` and backquotes outside single quotes. Quoted, they are just
    text (``python -c "a; b"`` needs no shell)."""
    found: set[str] = set()
    quote = ""
    escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif quote == "'":
            quote = "" if ch == "'" else quote
        elif ch == "\\":
            escaped = True
        elif quote == '"':
            if ch == '"':
                quote = ""
            elif ch in SHELL_EXPANSIONS:
                found.add(ch)
        elif ch in "'\"":
            quote = ch
        elif ch in SHELL_OPERATORS + SHELL_EXPANSIONS:
            found.add(ch)
    return found


def shell_refusal(text: str) -> str:
    """Why :func:`split_command` refused ``text``, for a person."""
    found = shell_syntax(text)
    shown = sorted(found - {"\n"}) + (["a line break"] if "\n" in found else [])
    if not shown:
        return "its quotes do not balance, or it names no program"
    return SHELL_REFUSAL.format(chars=" ".join(shown))


def safe_host(host: str) -> bool:
    """True when ``host`` may be put into a command's argument."""
    return _HOST.fullmatch(host) is not None and not host.startswith("-")


def expand(argv: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Substitute ``%X`` for ``values["X"]`` in each argument; ``%%`` is ``%``.

    A ``%`` before any other character stays as it is, as in fetchmail.
    """

    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key == "%":
            return "%"
        return values.get(key, match.group(0))

    return [_PLACEHOLDER.sub(one, arg) for arg in argv]


def shown(argv: Sequence[str]) -> str:
    """The argument list as a person would type it."""
    return shlex.join(argv)


def stop(process: subprocess.Popen[bytes], *, patience: float) -> int:
    """Give the program ``patience`` seconds to exit, then SIGTERM its group,
    then SIGKILL; returns its status.

    The programs are started in a session of their own, so their children
    (an ssh started by a wrapper, say) are stopped with them.
    """
    for sig, wait in ((None, patience), (signal.SIGTERM, STOP_GRACE)):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
        try:
            return process.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    return process.wait()


@dataclass(frozen=True)
class Finished:
    """How a command ended."""

    status: int | None  # exit status; None when it never ran or was stopped
    signal: int = 0  # the signal that ended it, if one did
    timed_out: bool = False
    error: str = ""  # why it could not be started

    @property
    def ok(self) -> bool:
        return self.status == 0

    def describe(self, timeout: float) -> str:
        if self.error:
            return f"could not be started ({self.error})"
        if self.timed_out:
            return f"did not finish within {timeout:g} seconds and was stopped"
        if self.signal:
            return f"was ended by signal {self.signal}"
        return f"exited with status {self.status}"


def run_command(
    argv: Sequence[str],
    *,
    label: str,
    timeout: float,
    transcript: Transcript,
    env: Mapping[str, str] | None,
) -> Finished:
    """Run ``argv`` to its end; its output and status go to the transcript.

    The output goes to a temporary file rather than a pipe: a command that
    leaves a child running in the background (``ssh -f``, the classic
    preconnect) keeps its output open, and a pipe would make us wait for
    that child instead of the command. ``env`` is :func:`program_environment`'s.
    """
    transcript.record("*", f"{label}: running {shown(argv)}")
    with tempfile.TemporaryFile() as output:
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        except OSError as exc:
            finished = Finished(None, error=exc.strerror or str(exc))
            transcript.record("*", f"{label}: {finished.describe(timeout)}")
            return finished
        try:
            status = process.wait(timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            status = stop(process, patience=0)
            timed_out = True
        output.seek(0)
        text = output.read(MAX_OUTPUT + 1)
    _record_output(text, label, transcript)
    if timed_out:
        finished = Finished(None, timed_out=True)
    elif status < 0:
        finished = Finished(None, signal=-status)
    else:
        finished = Finished(status)
    transcript.record("*", f"{label}: {finished.describe(timeout)}")
    return finished


def _record_output(data: bytes, label: str, transcript: Transcript) -> None:
    cut = len(data) > MAX_OUTPUT
    lines = data[:MAX_OUTPUT].decode("utf-8", "replace").splitlines()
    for line in lines[:MAX_OUTPUT_LINES]:
        transcript.record("*", f"{label} said: {line}")
    if cut or len(lines) > MAX_OUTPUT_LINES:
        transcript.record("*", f"{label}: (more output not kept)")
