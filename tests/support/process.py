"""Start a server binary as our foreground child, wait for its ports, stop it.

Dovecot and Postfix (and the benchmark's Dovecot) are started the same way:
write a configuration naming free ports, run the master in the foreground in a
session of its own, wait until every port accepts, and retry with fresh ports
when someone else took one first ("address in use" in its log).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
from typing import TYPE_CHECKING

from tests.support.ports import LOOPBACK, wait_for_ports

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it


def _running(process: subprocess.Popen[bytes]) -> bool:
    return process.poll() is None


def start_server(
    argv: list[str],
    configure: Callable[[], list[int]],
    *,
    output: Path,
    log_text: Callable[[], str],
    what: str,
    timeout: float,
    error: type[Exception],
    host: str = LOOPBACK,
) -> subprocess.Popen[bytes]:
    """Run ``argv`` until every port that ``configure()`` chose accepts.

    ``configure`` is called before each attempt: it picks free ports, writes
    them into the configuration and returns them. Standard output and error
    are appended to ``output``. A failure raises ``error`` with the end of
    ``log_text()``, after the last attempt or at once when the log does not
    say a port was in use.
    """
    for attempt in range(ATTEMPTS):
        ports = configure()
        with output.open("ab") as out:
            # Its own session: stop_server can take down the master's children.
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for_ports(
                host,
                ports,
                timeout,
                alive=functools.partial(_running, process),
                what=what,
            )
        except (RuntimeError, TimeoutError) as exc:
            stop_server(process)
            text = log_text()
            if "in use" not in text or attempt == ATTEMPTS - 1:
                raise error(f"{exc}\n{text[-3000:]}") from exc
            continue
        except BaseException:
            # Interrupted while waiting: the caller never gets the process.
            stop_server(process)
            raise
        return process
    raise AssertionError("unreachable: the last attempt returns or raises")


def stop_server(process: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL to the whole session after ``timeout`` seconds."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        # The master's children are in its session: take them down too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def read_logs(directory: Path, *names: str) -> str:
    """The named files of ``directory`` that exist, concatenated, for messages."""
    parts = []
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            parts.append((directory / name).read_text(errors="replace"))
    return "".join(parts)
