"""``interface`` and ``monitor``: fetchmail's checks of a dial-up link (Linux).

``interface "ppp0/10.0.0.0/255.255.255.0"`` polls only while ``ppp0`` is up
and running with a local (or, on a point-to-point link, remote) IPv4 address in
that network; the mask defaults to 255.255.255.255. ``monitor "ppp0"`` skips
the poll when the interface carried at most a few packets (fetchmail's slop of
5, the noise of a link going down) since the end of this entry's previous poll,
so that polling alone never keeps an on-demand link up.

The activity record lives in this process, as fetchmail keeps it in its
daemon: the command line's daemon mode has it from one cycle to the next, and
a web-service worker has it for the mailboxes it polled. The first check in a
process always polls; a skip only ever happens after a poll seen here, when the
link has been quiet since, which is the meaning of the option.

fetchmail reads these through ioctls and ``/proc/net/dev``; so does this module
(``SIOCGIFFLAGS``, ``SIOCGIFADDR``, ``SIOCGIFDSTADDR``), and a system without
them (not Linux) gets a clear refusal instead of a silent poll.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from retrieval.engine.errors import ConfigError

if TYPE_CHECKING:
    from retrieval.engine.spec import MailboxSpec

SIOCGIFFLAGS = 0x8913
SIOCGIFADDR = 0x8915
SIOCGIFDSTADDR = 0x8917
IFF_UP = 0x1
IFF_RUNNING = 0x40
MONITOR_SLOP = 5
NET_DEV = Path("/proc/net/dev")
_IFNAMSIZ = 16

_activity: dict[tuple[str, str], int] = {}
_activity_lock = threading.Lock()


@dataclass(frozen=True)
class InterfaceRule:
    """A parsed ``interface`` value."""

    name: str
    network: ipaddress.IPv4Network

    @classmethod
    def parse(cls, text: str) -> InterfaceRule:
        """``IF/ADDRESS[/MASK]`` (fetchmail's syntax); ConfigError when malformed."""
        name, _, rest = text.partition("/")
        address, _, mask = rest.partition("/")
        if not _valid_name(name) or not address:
            raise ConfigError(
                f"interface {text!r}: write it as INTERFACE/ADDRESS or "
                "INTERFACE/ADDRESS/MASK, for example ppp0/10.0.0.1/255.255.255.0."
            )
        try:
            network = ipaddress.IPv4Network(
                f"{address}/{mask or '255.255.255.255'}", strict=False
            )
        except ValueError as exc:
            raise ConfigError(
                f"interface {text!r}: not an IPv4 address and mask ({exc})."
            ) from exc
        return cls(name, network)


@dataclass(frozen=True)
class LinkState:
    running: bool
    address: ipaddress.IPv4Address | None
    peer: ipaddress.IPv4Address | None  # the far end of a point-to-point link


def skip_reason(spec: MailboxSpec) -> str | None:
    """Why this poll must not run now (fetchmail's words), or None to go ahead."""
    label = spec.name or spec.server.host
    if (spec.interface or spec.monitor) and not NET_DEV.exists():
        raise ConfigError(
            "interface and monitor read the Linux network counters "
            f"({NET_DEV}), which this system does not have."
        )
    if spec.interface:
        rule = InterfaceRule.parse(spec.interface)
        state = link_state(rule.name)
        if state is None or not state.running:
            return f"skipping poll of {label}, {spec.interface} down"
        if not any(a in rule.network for a in (state.address, state.peer) if a):
            return f"skipping poll of {label}, {spec.interface} IP address excluded"
    if spec.monitor:
        if not _valid_name(spec.monitor):
            raise ConfigError(f"monitor {spec.monitor!r} is not an interface name.")
        packets = packet_count(spec.monitor)
        with _activity_lock:
            before = _activity.get((spec.monitor, label))
        if (
            packets is not None
            and before is not None
            and 0 <= packets - before <= MONITOR_SLOP
        ):
            return f"skipping poll of {label}, {spec.monitor} inactive"
    return None


def note_activity(spec: MailboxSpec) -> None:
    """After a poll: remember the monitored interface's traffic counters."""
    if not spec.monitor or not _valid_name(spec.monitor):
        return
    packets = packet_count(spec.monitor)
    if packets is not None:
        with _activity_lock:
            _activity[(spec.monitor, spec.name or spec.server.host)] = packets


def forget_activity() -> None:
    """Drop every activity record (tests; a daemon that restarts its cycle)."""
    with _activity_lock:
        _activity.clear()


def packet_count(name: str) -> int | None:
    """Received plus sent packets of ``name``; None when it does not exist."""
    try:
        lines = NET_DEV.read_text().splitlines()
    except OSError:
        return None
    for line in lines[2:]:
        interface, sep, counters = line.partition(":")
        if sep and interface.strip() == name:
            fields = counters.split()
            # receive: bytes packets ...(8 fields); transmit: bytes packets ...
            return int(fields[1]) + int(fields[9])
    return None


def link_state(name: str) -> LinkState | None:
    """Flags and IPv4 addresses of ``name``; None when there is no such interface."""
    if packet_count(name) is None:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = _ioctl(sock, SIOCGIFFLAGS, name)
        if flags is None:
            return None
        (value,) = struct.unpack_from("H", flags, _IFNAMSIZ)
        running = bool(value & IFF_UP) and bool(value & IFF_RUNNING)
        return LinkState(
            running=running,
            address=_address(_ioctl(sock, SIOCGIFADDR, name)),
            peer=_address(_ioctl(sock, SIOCGIFDSTADDR, name)),
        )


def _ioctl(sock: socket.socket, request: int, name: str) -> bytes | None:
    buffer = struct.pack("40s", name.encode())
    try:
        return fcntl.ioctl(sock.fileno(), request, buffer)
    except OSError:
        return None


def _address(reply: bytes | None) -> ipaddress.IPv4Address | None:
    """The IPv4 address in an ifreq's sockaddr_in, if there is a non-zero one."""
    if reply is None:
        return None
    with contextlib.suppress(ValueError):
        address = ipaddress.IPv4Address(reply[_IFNAMSIZ + 4 : _IFNAMSIZ + 8])
        if int(address):
            return address
    return None


def _valid_name(name: str) -> bool:
    return 0 < len(name) < _IFNAMSIZ and all(
        ch.isalnum() or ch in "._-@" for ch in name
    )
