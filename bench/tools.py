"""The clients under test, each measured the same way.

A command-line tool runs as a child process in its own session; ``os.wait4``
gives its wall time and the CPU seconds (user and system) of the child and
everything it waited for.

Peak RSS cannot come from that same ``wait4``: Linux carries ``maxrss`` across
exec, and a child forked from the harness starts with the harness's peak (tens
of MB) already on the books. So the client is started through GNU time
(``/usr/bin/time -f %M``, Debian package ``time``): the client is then forked
from a ~1 MB process and time reports the client's own peak. Without GNU time
the inflated ``wait4`` figure is kept and the record says so (``rss_source``).

fetchmail runs as an unprivileged user (it warns and behaves differently as
root): ``nobody`` when the harness is root, otherwise the harness's own user.
The Python tools run as the harness's user, which costs them nothing (the
virtualenv's interpreter may not even be readable by ``nobody``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pwd
import shlex
import signal
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

REPO = Path(__file__).resolve().parent.parent
FETCHMAIL = "/usr/bin/fetchmail"
GNU_TIME = "/usr/bin/time"


@dataclass(frozen=True)
class Measurement:
    wall_s: float
    user_s: float
    sys_s: float
    maxrss_kb: int
    exit_code: int
    timed_out: bool = False
    rss_source: str = "time"  # or "wait4": includes the harness's own peak


@dataclass(frozen=True)
class Workspace:
    """A fresh directory per run, owned by the user the tool runs as."""

    dir: Path
    rcfile: Path
    job: Path  # the same as JSON (bench.job.Job)
    log: Path
    records: Path | None  # the bench listener's records file (None for LMTP)
    expected: int  # messages the run must deliver


class Unavailable(Exception):
    """The tool cannot run here; the case is reported as skipped for it."""


class Tool(ABC):
    name: str
    description: str
    uid: int | None = None  # run as this user (None: the harness's own)
    many_only = False  # measured on the ``many`` cases only
    single_only = False  # measured on the single-mailbox cases only
    # Downloads without delivering or deleting (the ceiling): the run is checked
    # by the tool's exit status only.
    download_only = False
    gid: int | None = None

    def check(self) -> None:  # noqa: B027 - most tools can always run
        """Raise :class:`Unavailable` when the tool cannot run at all."""

    @abstractmethod
    def measure(self, work: Workspace, timeout: float) -> Measurement: ...


class CommandTool(Tool):
    @abstractmethod
    def argv(self, work: Workspace) -> list[str]: ...

    def env(self, work: Workspace) -> dict[str, str]:
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(work.dir),
            "LANG": "C.UTF-8",
            "TZ": "UTC",
        }

    def measure(self, work: Workspace, timeout: float) -> Measurement:
        return spawn(
            self.argv(work),
            env=self.env(work),
            cwd=work.dir,
            log=work.log,
            timeout=timeout,
            uid=self.uid,
            gid=self.gid,
        )


def spawn(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    log: Path,
    timeout: float,
    uid: int | None = None,
    gid: int | None = None,
) -> Measurement:
    # Output goes to a file, not a pipe: a client that prints a line per message
    # must never wait on us.
    as_other = uid is not None and uid != os.geteuid()
    rss_file = cwd / "maxrss.txt"  # in the run directory: writable by that user
    if os.access(GNU_TIME, os.X_OK):
        argv = [GNU_TIME, "-f", "%M", "-o", str(rss_file), "--", *argv]
    with log.open("wb") as out:
        began = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            user=uid if as_other else None,
            group=gid if as_other else None,
            extra_groups=[] if as_other else None,
        )
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - began
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not reap it again
    maxrss, source = _time_maxrss(rss_file), "time"
    if maxrss is None:
        maxrss, source = usage.ru_maxrss, "wait4"
    return Measurement(
        wall_s=wall,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        maxrss_kb=maxrss,
        exit_code=proc.returncode,
        timed_out=expired.is_set(),
        rss_source=source,
    )


def spawn_warm(
    args: list[str], *, env: dict[str, str], work: Workspace, timeout: float
) -> Measurement:
    """``python -m bench.warm ARGS``: the call timed inside the process, without
    its start-up; the process's own exit status and peak RSS."""
    out = work.dir / "warm.json"
    out.unlink(missing_ok=True)
    whole = spawn(
        [sys.executable, "-m", "bench.warm", args[0], str(out), *args[1:]],
        env=env,
        cwd=work.dir,
        log=work.log,
        timeout=timeout,
    )
    if whole.timed_out or not out.exists():
        return dataclasses.replace(whole, exit_code=whole.exit_code or 98)
    call = json.loads(out.read_text())
    return dataclasses.replace(
        whole,
        wall_s=call["wall_s"],
        user_s=call["user_s"],
        sys_s=call["sys_s"],
        exit_code=whole.exit_code,
    )


def _time_maxrss(path: Path) -> int | None:
    """GNU time's last line is the figure (a line before it may say "Command
    exited with non-zero status N")."""
    try:
        lines = path.read_text().split()
    except OSError:
        return None
    return int(lines[-1]) if lines and lines[-1].isdigit() else None


def unprivileged() -> tuple[int, int]:
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


class Fetchmail(CommandTool):
    name = "fetchmail"
    description = "fetchmail 6.4 (the reference)"

    def __init__(self) -> None:
        self.uid, self.gid = unprivileged()

    def check(self) -> None:
        if not os.access(FETCHMAIL, os.X_OK):
            raise Unavailable(f"{FETCHMAIL} is not installed")

    def env(self, work: Workspace) -> dict[str, str]:
        # its lock file and default idfile live in FETCHMAILHOME
        return {**super().env(work), "FETCHMAILHOME": str(work.dir)}

    def argv(self, work: Workspace) -> list[str]:
        return [
            FETCHMAIL,
            "-f",
            str(work.rcfile),
            "--nosyslog",
            "--nodetach",
            "--idfile",
            str(work.dir / "fetchids"),
            "--pidfile",
            str(work.dir / "fetchmail.pid"),
        ]


class Fetchweb(CommandTool):
    """``python -m retrieval.engine -f RCFILE``: fetchweb's engine, one-shot.

    ``template`` replaces the command line (``--fetchweb-cmd``), with ``{python}``,
    ``{rcfile}`` and ``{idfile}`` filled in, e.g. to try engine options.
    """

    name = "fetchweb"
    description = "fetchweb engine (python -m retrieval.engine)"
    DEFAULT = "{python} -m retrieval.engine -f {rcfile} --idfile {idfile}"

    def __init__(self, template: str | None = None) -> None:
        self.template = template or self.DEFAULT

    def check(self) -> None:
        if (
            self.template == self.DEFAULT
            and not (REPO / "retrieval" / "engine" / "__main__.py").exists()
        ):
            raise Unavailable("retrieval/engine/__main__.py does not exist yet")

    def env(self, work: Workspace) -> dict[str, str]:
        return {**super().env(work), "PYTHONPATH": str(REPO)}

    def argv(self, work: Workspace) -> list[str]:
        return [
            part.format(
                python=sys.executable, rcfile=work.rcfile, idfile=work.dir / "fetchids"
            )
            for part in shlex.split(self.template)
        ]


class Stdlib(CommandTool):
    name = "stdlib"
    description = "plain Python: poplib/imaplib + smtplib (bench/baseline.py)"

    def env(self, work: Workspace) -> dict[str, str]:
        return {**super().env(work), "PYTHONPATH": str(REPO)}

    def argv(self, work: Workspace) -> list[str]:
        return [sys.executable, "-m", "bench.baseline", str(work.job)]


class Ceiling(CommandTool):
    name = "poplib"
    description = "the ceiling: poplib/imaplib download only (bench/ceiling.py)"
    single_only = True
    download_only = True

    def env(self, work: Workspace) -> dict[str, str]:
        return {**super().env(work), "PYTHONPATH": str(REPO)}

    def argv(self, work: Workspace) -> list[str]:
        return [sys.executable, "-m", "bench.ceiling", str(work.job)]


class FetchwebPoll(Tool):
    """One mailbox through ``manage.py poll`` (services.mailbox_poll, the
    PostgreSQL ledger): the service path beside the engine command; see
    :func:`bench.service.measure_poll`."""

    name = "fetchweb-poll"
    description = "fetchweb service path: manage.py poll (PostgreSQL ledger)"
    single_only = True

    def check(self) -> None:
        if not (REPO / "retrieval/management/commands/poll.py").exists():
            raise Unavailable("manage.py poll is missing")

    def measure(self, work: Workspace, timeout: float) -> Measurement:
        from bench.service import measure_poll

        return measure_poll(work, timeout)


class FetchwebWarm(Fetchweb):
    """The engine command's run timed inside its process, without Python's and
    the imports' start (:mod:`bench.warm`): what :class:`FetchwebWorker` is
    compared with, like for like."""

    name = "fetchweb-warm"
    description = "fetchweb engine, the run alone (bench/warm.py engine)"
    single_only = True

    def measure(self, work: Workspace, timeout: float) -> Measurement:
        args = self.argv(work)[3:]  # after "{python} -m retrieval.engine"
        return spawn_warm(
            ["engine", "--", *args], env=self.env(work), work=work, timeout=timeout
        )


class FetchwebWorker(FetchwebPoll):
    """The service path timed as a warm worker runs it: ``services.mailbox_poll``
    alone, Django started before the clock (see
    :func:`bench.service.measure_worker_poll`)."""

    name = "fetchweb-worker"
    description = "fetchweb service path in a started process (bench/warm.py poll)"

    def measure(self, work: Workspace, timeout: float) -> Measurement:
        from bench.service import measure_worker_poll

        return measure_worker_poll(work, timeout)


class FetchwebService(Tool):
    """The full service (Celery + PostgreSQL + Redis) for the ``many`` cases; see
    :mod:`bench.service`."""

    name = "fetchweb-service"
    description = "fetchweb service: Celery workers + beat, PostgreSQL, Redis"
    many_only = True

    def check(self) -> None:
        if not (REPO / "retrieval/management/commands/import_fetchmailrc.py").exists():
            raise Unavailable("manage.py import_fetchmailrc is missing")

    def measure(self, work: Workspace, timeout: float) -> Measurement:
        from bench.service import measure_service

        measurement, recorded = measure_service(work, timeout)
        if recorded != work.expected:
            # Delivered but not on record is a failure of the service's promise.
            return dataclasses.replace(measurement, exit_code=99)
        return measurement


ALL_TOOLS = (
    "fetchmail",
    "fetchweb",
    "stdlib",
    "fetchweb-service",
    "fetchweb-poll",
    "fetchweb-warm",
    "fetchweb-worker",
    "poplib",
)


def make_tools(names: list[str], fetchweb_cmd: str | None) -> list[Tool]:
    makers: dict[str, Callable[[], Tool]] = {
        "fetchmail": Fetchmail,
        "fetchweb": lambda: Fetchweb(fetchweb_cmd),
        "stdlib": Stdlib,
        "fetchweb-service": FetchwebService,
        "fetchweb-poll": FetchwebPoll,
        "fetchweb-warm": FetchwebWarm,
        "fetchweb-worker": FetchwebWorker,
        "poplib": Ceiling,
    }
    unknown = [n for n in names if n not in makers]
    if unknown:
        raise ValueError(f"unknown tool {unknown[0]!r} (known: {', '.join(makers)})")
    return [makers[n]() for n in names]
