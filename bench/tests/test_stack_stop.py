"""The service benchmarks (bench.idle, bench.throughput) end promptly on SIGTERM
and leave nothing running: a signal unwinds the harness once, its cleanup is
not cut short by another, and the service's processes are killed with their
children when they do not stop in time. Small processes stand in for the
service; nothing of the benchmark itself runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.stack import stop_processes

REPO = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # exited; its reaper has not waited yet


def test_a_process_group_that_ignores_sigterm_is_killed_whole() -> None:
    """Like a Celery worker busy in a task, with its pool child: after the
    grace, SIGKILL to the group, the child included (killing the main process
    alone left the pool running)."""
    # SIGTERM ignored before the child starts: the child inherits that, and
    # both ignore it by the time the pid is printed.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, subprocess, sys, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "child = subprocess.Popen([sys.executable, '-c', 'import time; "
            "time.sleep(600)']); print(child.pid, flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    stop_processes([parent], grace=0.2)
    assert parent.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 30  # a guard against hanging, not a timing
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)


def test_a_second_sigterm_does_not_cut_the_cleanup_short(tmp_path: Path) -> None:
    marker = tmp_path / "cleaned"
    script = f"""
import os, signal, time
from pathlib import Path
from bench.stack import stop_on_signals

stop_on_signals()
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)  # interrupted by the first SIGTERM
finally:
    os.kill(os.getpid(), signal.SIGTERM)  # another, while the servers stop
    time.sleep(0.2)
    Path({str(marker)!r}).write_text("servers stopped")
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 143, done.stderr
    assert marker.read_text() == "servers stopped"
    assert "already stopping" in done.stderr
