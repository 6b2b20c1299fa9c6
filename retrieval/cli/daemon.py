"""Daemon mode for the command line: fetchmail's ``-d N``, ``-q`` and PID file.

``python -m retrieval.engine -d 300`` (or ``set daemon 300``) polls every
selected entry, sleeps 300 seconds, and again, until it is stopped; an entry
with ``interval N`` is polled only every Nth cycle, the first one included.
Like fetchmail it detaches from the terminal unless ``-N`` is given; detached,
its output goes to the ``-L`` file (or ``set logfile``), else nowhere.

The PID file (``--pidfile``, ``set pidfile``, else beside the rcfile as
``RCFILE.pid``) is fetchmail's format: the daemon's process id on the first
line and its interval on the second. It is held with an exclusive ``flock``
for the daemon's whole life, so a daemon that died leaves no lock behind and
a stale file is recognised as such. With it:

* ``--quit`` (``-q``) sends SIGTERM to the daemon and waits until it is gone;
  a daemon between polls stops at once, one in a poll finishes that poll
  first (every wait there has a deadline);
* a second daemon for the same file is refused (exit 8);
* a one-shot run while a daemon runs wakes it up (SIGUSR1: poll now) and
  exits 0, as ``fetchmail`` without arguments does.

Signals: SIGTERM and SIGINT stop the daemon; SIGUSR1 and SIGHUP end the
current sleep (fetchmail re-executes itself on SIGHUP; here the next cycle
uses the configuration read at start).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import FrameType

QUIT_WAIT = 120.0  # seconds --quit waits for a daemon finishing its poll
QUIT_CHECK = 0.05


class DaemonBusy(Exception):
    """Another daemon holds the PID file; ``pid`` says which."""

    def __init__(self, path: str, pid: int) -> None:
        super().__init__(f"another fetchweb daemon (process {pid}) holds {path}")
        self.pid = pid


class PidFile:
    """The held PID file of a running daemon (see the module docstring)."""

    def __init__(self, path: str, fd: int, interval: int) -> None:
        self.path = path
        self._fd = fd
        self._interval = interval

    @classmethod
    def acquire(cls, path: str, interval: int) -> PidFile:
        """Take the lock and write our PID; DaemonBusy when someone has it."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise DaemonBusy(path, holder[0] if holder else 0) from None
        except BaseException:
            os.close(fd)
            raise
        pidfile = cls(path, fd, interval)
        pidfile.write()
        return pidfile

    def write(self) -> None:
        """Our PID (again after detaching: the process that holds it changed)."""
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n{self._interval}\n".encode(), 0)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            Path(self.path).unlink()
        os.close(self._fd)


def running(path: str) -> tuple[int, int] | None:
    """``(pid, interval)`` of the daemon holding ``path``, or None."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd) or (0, 0)
        return None  # nobody holds it: a stale file
    finally:
        os.close(fd)


def _read(fd: int) -> tuple[int, int] | None:
    words = os.pread(fd, 64, 0).split()
    if not words or not words[0].isdigit():
        return None
    interval = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
    return int(words[0]), interval


def quit_daemon(path: str, *, wait: float = QUIT_WAIT) -> int | None:
    """Stop the daemon holding ``path``; its PID, or None when none runs.

    Raises TimeoutError when it is still running after ``wait`` seconds.
    """
    holder = running(path)
    if holder is None or not holder[0]:
        return None
    pid = holder[0]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while running(path) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} did not stop within {wait:g} seconds")
        time.sleep(QUIT_CHECK)
    return pid


def wake(pid: int) -> None:
    os.kill(pid, signal.SIGUSR1)


def detach(logfile: str | None) -> None:
    """Leave the terminal as fetchmail does: fork twice, new session, no stdin,
    output to ``logfile`` (appended) or nowhere. The parent exits 0 here."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    out = null
    if logfile:
        out = os.open(logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    for fd in {null, out}:
        os.close(fd)


class Daemon:
    """The poll cycle; ``poll_one`` polls one entry and returns its exit code.

    ``say`` is for what is always worth saying, ``chatter`` for what fetchmail
    says only with ``-v`` (sleeps, skipped entries).
    """

    def __init__(
        self,
        interval: int,
        entries: Sequence[tuple[str, int]],
        poll_one: Callable[[int], int],
        say: Callable[[str], None],
        chatter: Callable[[str], None],
    ) -> None:
        self.interval = interval
        self.entries = entries  # (name, every Nth cycle) per poll, in order
        self.poll_one = poll_one  # called with the entry's index
        self.say = say
        self.chatter = chatter
        self.stopping = False
        self.cycles = 0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    def run(self) -> int:
        """Poll until stopped; 0 once stopped by a signal."""
        previous = {
            sig: signal.signal(sig, self._signal)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP)
        }
        try:
            while not self.stopping:
                self._cycle()
                self.cycles += 1
                if not self.stopping:
                    self._sleep()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(self._wake_r)
            os.close(self._wake_w)
        self.say(f"fetchweb daemon stopped after {self.cycles} cycle(s).")
        return 0

    def _cycle(self) -> None:
        for index, (name, every) in enumerate(self.entries):
            if self.stopping:
                return
            if every > 1 and self.cycles % every:
                self.chatter(f"interval not reached, not querying {name}")
                continue
            self.poll_one(index)

    def _sleep(self) -> None:
        self.chatter(
            f"sleeping at {time.strftime('%a %d %b %Y %H:%M:%S')} for "
            f"{self.interval} seconds"
        )
        deadline = time.monotonic() + self.interval
        while not self.stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            ready, _, _ = select.select([self._wake_r], [], [], remaining)
            if ready:
                os.read(self._wake_r, 512)
                return

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")
