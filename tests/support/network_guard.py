"""Refuse, during tests, every outgoing connection that does not stay on this host.

Loopback (127.0.0.0/8, ::1, names resolving only to those) and unix sockets are
allowed; anything else raises :class:`NetworkBlockedError`. It is deliberately *not* an OSError:
code under test handles OSError as an ordinary network failure, and a test that
reaches the Internet by accident must fail loudly, not pass as "server down".
"""

from __future__ import annotations

import ipaddress
import socket
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class NetworkBlockedError(RuntimeError):
    """A test tried to connect beyond the loopback interface."""


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def is_local_address(address: Any) -> bool:
    """True for unix-socket paths, loopback IPs and "localhost" (no DNS lookup)."""
    if isinstance(address, (str, bytes)):  # AF_UNIX path or abstract name
        return True
    if not isinstance(address, tuple) or not address:
        return False
    host = address[0]
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    host = host.strip("[]").split("%", 1)[0]  # IPv6 zone index
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _resolves_to_loopback_or_nothing(address: Any) -> bool:
    """For a host name: every address it resolves to is loopback.

    A name that does not resolve passes: the real call then fails with the same
    ``gaierror`` it would raise outside the tests, which tests of DNS errors
    rely on.
    """
    try:
        infos = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM)
    except (OSError, IndexError, TypeError, UnicodeError):
        return True
    return all(is_local_address(info[4]) for info in infos)


def _check(address: Any) -> None:
    if is_local_address(address):
        return
    host = address[0] if isinstance(address, tuple) and address else None
    is_name = isinstance(host, str) and not _is_ip_literal(host)
    if not (is_name and _resolves_to_loopback_or_nothing(address)):
        raise NetworkBlockedError(
            f"tests may only connect to loopback, not {address!r} "
            "(mark the test allow_network if it really must)"
        )


@contextmanager
def loopback_only() -> Iterator[None]:
    """Patch ``socket.socket.connect``/``connect_ex`` and ``socket.create_connection``.

    Patching the class covers ssl.SSLSocket and asyncio (both call
    ``socket.socket.connect``). Host names are resolved and every address must
    be loopback; a name that does not resolve fails as it normally would.
    """
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex
    original_create = socket.create_connection

    def connect(self: socket.socket, address: Any) -> None:
        _check(address)
        original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _check(address)
        return original_connect_ex(self, address)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        _check(address)
        return original_create(address, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]
    socket.create_connection = create_connection
    try:
        yield
    finally:
        socket.socket.connect = original_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = original_connect_ex  # type: ignore[method-assign]
        socket.create_connection = original_create
