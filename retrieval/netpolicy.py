"""Where self-service mailboxes may connect: public addresses on mail ports only.

Without this, "poll my mailbox at 10.0.0.5:6379" would make fetchweb a port scanner
of the provider's own network. Superusers are trusted with any address. Every refusal
uses the same words so that the error does not reveal what is listening where.
"""

from __future__ import annotations

import socket

from retrieval.engine.wire.netaddrs import is_public_address
from retrieval.engine.wire.transport import NOT_PUBLIC

MAIL_PORTS = frozenset({25, 110, 143, 366, 465, 587, 993, 995, 2525})
REFUSAL = NOT_PUBLIC


class DestinationRefused(Exception):
    pass


class Unresolved(DestinationRefused):
    """The name does not resolve (here, now)."""


def check_destination(host: str, port: int) -> None:
    """Raise DestinationRefused unless every address of ``host`` is public.

    The engine checks the addresses again when it connects (``public_only``): this
    early check gives the form its error, the late one closes the DNS-rebinding gap.
    """
    if port not in MAIL_PORTS:
        raise DestinationRefused(REFUSAL)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolved(f"The name {host!r} does not resolve.") from exc
    if not all(is_public_address(info[4][0]) for info in infos):
        raise DestinationRefused(REFUSAL)
