"""Free loopback ports, and waiting for a server to accept connections on one."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

LOOPBACK = "127.0.0.1"


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Return ``count`` distinct ports that are free on ``host`` right now.

    All the probe sockets stay bound until every port is chosen, so the kernel
    cannot hand out the same port twice. Another process may still grab one
    before our server binds it: callers that can, retry on "address in use".
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port(host: str = LOOPBACK) -> int:
    """Return one port that is free on ``host`` right now."""
    return free_ports(1, host)[0]


def port_accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_ports(
    host: str,
    ports: list[int],
    timeout: float,
    *,
    alive: Callable[[], bool] = lambda: True,
    what: str = "server",
) -> None:
    """Block until every port accepts a connection.

    ``alive`` is polled too, so a server that dies at startup fails fast
    instead of after the whole timeout.

    Raises:
        TimeoutError: a port still refuses after ``timeout`` seconds.
        RuntimeError: ``alive()`` returned False.
    """
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending:
        if not alive():
            raise RuntimeError(f"{what} exited during startup")
        pending = [port for port in pending if not port_accepts(host, port)]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} does not accept on {host}:{pending}")
        time.sleep(0.02)
