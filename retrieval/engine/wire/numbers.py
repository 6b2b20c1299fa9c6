"""The one parser for numbers a server sends: ASCII digits, bounded, in range.

``str.isdigit()`` accepts ``²`` and ``int()`` then raises ValueError, and an
unbounded ``int()`` turns a UIDVALIDITY of 2**64 into a value no ledger column
holds. Every number read from the wire goes through :func:`wire_number` (or
:func:`wire_number_or_none` where a bad value only means "unknown"), so a bad
one becomes a :class:`ProtocolError` like any other malformed answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from retrieval.engine.errors import ProtocolError

# Ten digits hold every 32-bit value; more is never needed from a mail server.
_DIGITS = re.compile(rb"[0-9]{1,10}")


@dataclass(frozen=True)
class Bounds:
    what: str  # for the error: "UIDVALIDITY", "message size"...
    low: int
    high: int


UINT32_MAX = 2**32 - 1
# RFC 3501 nz-number: UIDs and UIDVALIDITY are 32-bit and never 0.
UID = Bounds("UID", 1, UINT32_MAX)
UIDVALIDITY = Bounds("UIDVALIDITY", 1, UINT32_MAX)
MESSAGE_NUMBER = Bounds("message number", 1, UINT32_MAX)
COUNT = Bounds("message count", 0, UINT32_MAX)
# Ten digits: what a literal or a declared size may claim before being compared
# with the configured message limit.
SIZE = Bounds("size", 0, 10**10 - 1)
PORT = Bounds("port", 1, 65535)


def wire_number(text: str | bytes, bounds: Bounds) -> int:
    """``text`` as an int within ``bounds``; anything else is a ProtocolError."""
    value = wire_number_or_none(text, bounds)
    if value is None:
        shown = text if isinstance(text, str) else text.decode("ascii", "replace")
        raise ProtocolError(
            f"The server sent {shown[:30]!r} where a {bounds.what} "
            f"({bounds.low} to {bounds.high}) belongs."
        )
    return value


def wire_number_or_none(text: str | bytes, bounds: Bounds) -> int | None:
    """Like :func:`wire_number`, but None for a bad value."""
    if isinstance(text, str):
        if not text.isascii():
            return None
        raw = text.encode("ascii")
    else:
        raw = text
    if _DIGITS.fullmatch(raw) is None:
        return None
    value = int(raw)
    return value if bounds.low <= value <= bounds.high else None
