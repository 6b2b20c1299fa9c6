"""Pure functions from IMAP4rev1 response bytes to values, and back for arguments.

No I/O here: each function takes the bytes of one response line (literals already
taken out by the session) and is tested with byte-literal tables, the way
imapclient tests its response parser.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

# Literal sizes with more digits than this cannot be sane (gh-119511).
MAX_LITERAL_DIGITS = 12
_LITERAL = re.compile(rb"\{(\d{1,%d})(\+?)\}\r?\n\Z" % MAX_LITERAL_DIGITS)
_LITERAL_ANY = re.compile(rb"\{([^}]*)\}\r?\n\Z")
_TAGGED = re.compile(rb"^([A-Za-z0-9]+) (OK|NO|BAD)\b ?(.*?)\r?\n?\Z", re.I | re.S)
_CODE = re.compile(rb"^\[([A-Za-z0-9.-]+)(?: ([^\]]*))?\]")
_UNTAGGED_NUMBER = re.compile(rb"^\* (\d{1,10}) ([A-Za-z]+)\b")
_FETCH_UID = re.compile(rb"\bUID (\d{1,10})\b", re.I)
_FETCH_SIZE = re.compile(rb"\bRFC822\.SIZE (\d{1,20})\b", re.I)
_BODY_LITERAL = re.compile(rb"\bBODY\[\] \{\d+\+?\}\r?\n\Z", re.I)
_BODY_NIL = re.compile(rb"\bBODY\[\] NIL\b", re.I)
_ESEARCH = re.compile(
    rb"^\* ESEARCH(?: \(TAG \"([^\"]*)\"\))?((?: [A-Za-z0-9]+(?: [0-9:,*]+)?)*)\s*\Z",
    re.I,
)


class ParseError(ValueError):
    """The bytes do not follow the IMAP grammar; the session turns it into words."""


@dataclass(frozen=True)
class Tagged:
    tag: str
    status: str  # OK, NO, BAD (upper case)
    text: str  # the rest, response code included


def literal_size(line: bytes) -> int | None:
    """The size of the literal announced at the end of ``line``, or None.

    Raises ParseError for a malformed announcement such as ``{-1}`` or
    ``{99999999999999999999}`` instead of letting it pass as text.
    """
    match = _LITERAL.search(line)
    if match:
        return int(match.group(1))
    if _LITERAL_ANY.search(line):
        raise ParseError(f"malformed literal size in {line[-40:]!r}")
    return None


def is_body_literal(line: bytes) -> bool:
    """True when the literal announced at the end of ``line`` is ``BODY[]``."""
    return _BODY_LITERAL.search(line) is not None


def has_nil_body(text: bytes) -> bool:
    return _BODY_NIL.search(text) is not None


def parse_tagged(line: bytes) -> Tagged | None:
    match = _TAGGED.match(line)
    if not match:
        return None
    return Tagged(
        tag=match.group(1).decode("ascii"),
        status=match.group(2).decode("ascii").upper(),
        text=match.group(3).decode("utf-8", "replace"),
    )


def response_code(text: bytes) -> tuple[str, str] | None:
    """``[UIDVALIDITY 3857529045] UIDs valid`` -> ("UIDVALIDITY", "3857529045")."""
    match = _CODE.match(text.lstrip())
    if not match:
        return None
    args = match.group(2) or b""
    return match.group(1).decode("ascii").upper(), args.decode("utf-8", "replace")


def untagged_status(line: bytes) -> tuple[str, bytes] | None:
    """``* OK [..] text`` -> ("OK", b"[..] text"); also NO, BAD, BYE, PREAUTH."""
    if not line.startswith(b"* "):
        return None
    word, _, rest = line[2:].partition(b" ")
    word = word.rstrip(b"\r\n").upper()
    if word in (b"OK", b"NO", b"BAD", b"BYE", b"PREAUTH"):
        return word.decode("ascii"), rest.rstrip(b"\r\n")
    return None


def capabilities(line: bytes) -> frozenset[str] | None:
    """From ``* CAPABILITY ...`` or a ``[CAPABILITY ...]`` response code."""
    upper = line.rstrip(b"\r\n")
    if upper[:13].upper() == b"* CAPABILITY ":
        words = upper[13:]
    else:
        start = upper.upper().find(b"[CAPABILITY ")
        if start < 0:
            return None
        end = upper.find(b"]", start)
        words = upper[start + 12 : end if end >= 0 else len(upper)]
    return frozenset(word.decode("ascii", "replace").upper() for word in words.split())


def untagged_number(line: bytes) -> tuple[int, str] | None:
    """``* 23 EXISTS`` -> (23, "EXISTS"); ``* 4 FETCH (...)`` -> (4, "FETCH")."""
    match = _UNTAGGED_NUMBER.match(line)
    if not match:
        return None
    return int(match.group(1)), match.group(2).decode("ascii").upper()


def search_results(line: bytes) -> list[int] | None:
    """``* SEARCH 2 84 882`` -> [2, 84, 882]; None for any other line."""
    if line[:8].upper() != b"* SEARCH":
        return None
    rest = line[8:].strip()
    # ESEARCH-style "(MODSEQ n)" suffixes are not requested; anything else is bad.
    numbers: list[int] = []
    for word in rest.split():
        if not word.isdigit() or len(word) > 10:
            raise ParseError(f"bad SEARCH result {word[:20]!r}")
        numbers.append(int(word))
    return numbers


def esearch_all(line: bytes, *, limit: int) -> tuple[str, list[int]] | None:
    """``* ESEARCH (TAG "A5") UID ALL 1:3,7`` -> ("A5", [1, 2, 3, 7]).

    RFC 4731 / IMAP4rev2 search results. A result without ALL is empty. At
    most ``limit`` numbers are expanded: "1:4294967295" must not become a list
    of four billion.
    """
    if line[:9].upper() != b"* ESEARCH":
        return None
    match = _ESEARCH.match(line.rstrip(b"\r\n"))
    if match is None:
        raise ParseError(f"bad ESEARCH response {line[:60]!r}")
    tag = (match.group(1) or b"").decode("ascii", "replace")
    words = match.group(2).split()
    for index, word in enumerate(words[:-1]):
        if word.upper() == b"ALL":
            return tag, expand_set(words[index + 1].decode("ascii"), limit=limit)
    return tag, []


def expand_set(text: str, *, limit: int) -> list[int]:
    """``1:3,7`` -> [1, 2, 3, 7], sorted and unique, at most ``limit`` numbers."""
    found: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition(":")
        if not low.isdigit() or (high and not high.isdigit()):
            raise ParseError(f"bad sequence set {text[:40]!r}")
        if len(low) > 10 or len(high) > 10:
            raise ParseError(f"number too large in {text[:40]!r}")
        start, end = int(low), int(high or low)
        start, end = min(start, end), max(start, end)
        end = min(end, start + limit - len(found))
        found.update(range(start, end + 1))
        if len(found) >= limit:
            break
    return sorted(found)[:limit]


def fetch_uid(text: bytes) -> int | None:
    match = _FETCH_UID.search(text)
    return int(match.group(1)) if match else None


def fetch_size(text: bytes) -> int | None:
    match = _FETCH_SIZE.search(text)
    return int(match.group(1)) if match else None


def quoted(value: str) -> bytes | None:
    """An IMAP quoted string, or None when only a literal can carry ``value``."""
    if not value.isascii() or any(ch in value for ch in "\r\n\0"):
        return None
    return b'"' + value.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


def encode_mailbox(name: str) -> str:
    """RFC 3501 5.1.3 modified UTF-7, for folder names outside printable ASCII."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append(
                "&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",")
            )
            out.append("-")
            pending.clear()

    for ch in name:
        if "\x20" <= ch <= "\x7e":
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def sequence_set(numbers: list[int]) -> str:
    """[1, 2, 3, 7, 9, 10] -> "1:3,7,9:10"; the numbers need not be sorted."""
    ranges: list[str] = []
    ordered = sorted(set(numbers))
    start = previous = ordered[0] if ordered else 0
    for number in ordered[1:]:
        if number == previous + 1:
            previous = number
            continue
        ranges.append(_range(start, previous))
        start = previous = number
    if ordered:
        ranges.append(_range(start, previous))
    return ",".join(ranges)


def _range(start: int, end: int) -> str:
    return str(start) if start == end else f"{start}:{end}"


def quoted_body(text: bytes) -> bytes | None:
    """The content of ``BODY[] "..."`` (a quoted string body), unescaped, or None."""
    match = re.search(rb'\bBODY\[\] "((?:[^"\\]|\\.)*)"', text, re.I)
    if not match:
        return None
    return re.sub(rb"\\(.)", rb"\1", match.group(1))
