"""The ``Received:`` trace header added to every delivered message.

Shaped like the one fetchmail 6.4 writes (``transact.c``), so that filters and
people who grep their mail for "by ... with POP3 (fetchmail-..." find the same
three lines; only the program name differs::

    Received: from mail.example.org [192.0.2.10]
    \tby myhost with POP3S (fetchweb-0.1.0 polling work account joe folder INBOX)
    \tfor <joe@example.com> (single-drop); Tue, 25 Nov 2025 13:37:00 +0000 (UTC)

The part in parentheses after the version appears only with ``tracepolls``;
the "for" clause only when exactly one recipient was accepted, as in fetchmail.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

VERSION = "0.1.0"
# Only these characters reach the header from configuration or a server; the
# rest is dropped so that no name can start a new header line.
_UNSAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]@+=/!#$%&'*?^`{|}~]")


@dataclass(frozen=True)
class TraceInfo:
    """What the header says about where the message came from."""

    server_host: str  # the mail server's name (fetchmail's truename)
    server_address: str  # its numeric address, "" when unknown
    local_name: str  # this host's name (fetchmail's fetchmailhost)
    protocol: str  # "POP3", "IMAPS", ...
    poll_name: str = ""  # with tracepolls: the poll label ...
    account: str = ""  # ... the remote account ...
    folder: str = ""  # ... and the folder (IMAP), or ""
    tracepolls: bool = False
    multidrop: bool = False


def received_header(
    info: TraceInfo, recipients: Sequence[str], when: datetime | None = None
) -> bytes:
    """The header as CRLF-terminated bytes, for the recipients actually accepted."""
    stamp = _stamp(when) if when is not None else _stamp_of_second(int(time.time()))
    if len(recipients) == 1:
        drop = "multi-drop" if info.multidrop else "single-drop"
        last = f"\tfor <{_clean(recipients[0])}> ({drop}); {stamp}"
    else:
        last = f"\t{stamp}"
    return _first_lines(info) + (last + "\r\n").encode("ascii", "replace")


def _stamp(moment: datetime) -> str:
    """``Tue, 25 Nov 2025 13:37:00 +0000 (UTC)``: to the second."""
    zone = moment.strftime("%Z")
    return format_datetime(moment) + (f" ({_clean(zone)})" if zone else "")


@functools.lru_cache(maxsize=2)
def _stamp_of_second(second: int) -> str:
    """The stamp for now, local time: the same for every message delivered in
    that second, so it is formatted once (a poll delivers hundreds a second)."""
    return _stamp(datetime.fromtimestamp(second).astimezone())


@functools.lru_cache(maxsize=16)
def _first_lines(info: TraceInfo) -> bytes:
    """The "from" and "by" lines: the same for every message of a poll."""
    source = _clean(info.server_host) or "unknown"
    if info.server_address:
        source += f" [{_clean(info.server_address)}]"
    comment = f"fetchweb-{VERSION}"
    if info.tracepolls:
        comment += f" polling {_clean(info.poll_name)} account {_clean(info.account)}"
        if info.folder:
            comment += f" folder {_clean(info.folder)}"
    lines = [
        f"Received: from {source}",
        f"\tby {_clean(info.local_name) or 'localhost'} with "
        f"{_clean(info.protocol)} ({comment})",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii", "replace")


def _clean(text: str) -> str:
    return _UNSAFE.sub("", text)[:255]
