"""Where self-service mailboxes may connect: public addresses on mail ports only.

Without this, "poll my mailbox at 10.0.0.5:6379" would make fetchweb a port scanner
of the provider's own network. Superusers are trusted with any address. Every refusal
uses the same words so that the error does not reveal what is listening where.
"""

from __future__ import annotations

import ipaddress
import socket

MAIL_PORTS = frozenset({25, 110, 143, 366, 465, 587, 993, 995, 2525})
REFUSAL = "This server address is not allowed: use a public mail server on a mail port."


class DestinationRefused(Exception):
    pass


def check_destination(host: str, port: int) -> None:
    """Raise DestinationRefused unless every address of ``host`` is public."""
    if port not in MAIL_PORTS:
        raise DestinationRefused(REFUSAL)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DestinationRefused(f"The name {host!r} does not resolve.") from exc
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not address.is_global:
            raise DestinationRefused(REFUSAL)
