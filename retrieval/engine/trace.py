"""The ``Received:`` trace header prepended to every delivered message.

Shaped like fetchmail's (``sink.c``) so that people who grep their mail for
"by ... with POP3 (fetchmail-...)" find the same three lines::

    Received: from mail.example.org [192.0.2.10]
    \tby localhost with POP3S (fetchweb-0.1.0)
    \tfor <joe@example.com> (single-drop); Tue, 25 Nov 2025 13:37:00 +0000
"""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import format_datetime

VERSION = "0.1.0"
# Only these characters reach the header from configuration; anything else is
# dropped so that a host or user name can never start a new header line.
_UNSAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]@+=/]")


def received_header(
    *,
    server_host: str,
    server_address: str,
    local_name: str,
    protocol: str,
    recipients: tuple[str, ...],
    when: datetime | None = None,
) -> bytes:
    """The header as CRLF-terminated bytes, ready to precede the message."""
    stamp = format_datetime(when or datetime.now().astimezone())
    source = _clean(server_host)
    if server_address and server_address != server_host:
        source += f" [{_clean(server_address)}]"
    lines = [
        f"Received: from {source}",
        f"\tby {_clean(local_name) or 'localhost'} with {_clean(protocol)} "
        f"(fetchweb-{VERSION})",
    ]
    if len(recipients) == 1:
        lines.append(f"\tfor <{_clean(recipients[0])}> (single-drop); {stamp}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{stamp}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii", "replace")


def _clean(text: str) -> str:
    return _UNSAFE.sub("", text)[:255]
