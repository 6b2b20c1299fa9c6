"""A private ``redis-server`` for tests that need a real broker.

Started only when a test asks for the ``redis_url`` fixture, and only when
``REDIS_URL`` is not already set in the environment (then that server is used).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tests.support.ports import LOOPBACK, free_port

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import pytest

_START_TIMEOUT = 10.0
_ATTEMPTS = 3


def _ping(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """A running ``redis-server`` bound to 127.0.0.1, no persistence."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes]
    startup_seconds: float
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def log_text(self) -> str:
        try:
            return (self.directory / "redis.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @classmethod
    def start(cls, directory: Path) -> RedisServer:
        """Start a server whose files (log only: persistence is off) go in ``directory``."""
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        began = time.monotonic()
        directory.mkdir(parents=True, exist_ok=True)
        for _ in range(_ATTEMPTS):
            port = free_port()
            command = [
                binary,
                "--port", str(port),
                "--bind", LOOPBACK,
                "--save", "",
                "--appendonly", "no",
                "--dir", str(directory),
                "--logfile", str(directory / "redis.log"),
                "--daemonize", "no",
            ]  # fmt: skip
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = time.monotonic() + _START_TIMEOUT
            while process.poll() is None and time.monotonic() < deadline:
                if _ping(port):
                    return cls(port, directory, process, time.monotonic() - began)
                time.sleep(0.02)
            _terminate(process)  # most likely lost the port to someone else: retry
        log = (directory / "redis.log").read_text(errors="replace")
        raise RuntimeError(f"redis-server did not start:\n{log[-3000:]}")

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            _terminate(self.process)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def redis_url_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """Body of the session fixture ``redis_url``.

    While the fixture lives, ``REDIS_URL`` is also exported so that processes the
    tests spawn (a Celery worker, ``manage.py``) reach the same server.
    """
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    server = RedisServer.start(tmp_path_factory.mktemp("redis"))
    os.environ["REDIS_URL"] = server.url
    try:
        yield server.url
    finally:
        os.environ.pop("REDIS_URL", None)
        server.stop()
