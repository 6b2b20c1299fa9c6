"""Pure functions from IMAP4rev1 response bytes to values, and back for arguments.

No I/O here: each function takes the bytes of one response line (literals already
taken out by the session) and is tested with byte-literal tables, the way
imapclient tests its response parser.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import TypeAlias

from retrieval.engine.errors import ParseError
from retrieval.engine.wire import numbers

_LITERAL_ANY = re.compile(rb"\{([^}]*)\}\r?\n\Z")
_TAGGED = re.compile(rb"^([A-Za-z0-9]+) (OK|NO|BAD)\b ?(.*?)\r?\n?\Z", re.I | re.S)
_CODE = re.compile(rb"^\[([A-Za-z0-9.-]+)(?: ([^\]]*))?\]")
_UNTAGGED_NUMBER = re.compile(rb"^\* ([0-9]+) ([A-Za-z]+)\b")
_ESEARCH = re.compile(
    rb"^\* ESEARCH(?: \(TAG \"([^\"]*)\"\))?((?: [A-Za-z0-9]+(?: [0-9:,*]+)?)*)\s*\Z",
    re.I,
)


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
    match = _LITERAL_ANY.search(line)
    if match is None:
        return None
    digits = match.group(1).removesuffix(b"+")
    size = numbers.wire_number_or_none(digits, numbers.SIZE)
    if size is None:
        raise ParseError(f"malformed literal size in {line[-40:]!r}")
    return size


def is_body_literal(text: bytes) -> bool:
    """True when the literal announced at the end of ``text`` is ``BODY[]``.

    ``text`` is the response so far, earlier literals taken out: the tokens,
    not a search, decide, so ``BODY[]`` inside a quoted string does not count.
    """
    pairs = fetch_pairs(text, partial=True)
    if not pairs:
        return False
    name, value = pairs[-1]
    return name == b"BODY[]" and isinstance(value, Literal) and value.last


def has_nil_body(text: bytes) -> bool:
    value = fetch_attributes(text).get(b"BODY[]")
    return isinstance(value, bytes) and value.upper() == b"NIL"


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
    number = numbers.wire_number_or_none(match.group(1), numbers.COUNT)
    if number is None:
        raise ParseError(f"bad message number in {line[:40]!r}")
    return number, match.group(2).decode("ascii").upper()


def search_results(line: bytes) -> list[int] | None:
    """``* SEARCH 2 84 882`` -> [2, 84, 882]; None for any other line."""
    if line[:8].upper() != b"* SEARCH":
        return None
    rest = line[8:].strip()
    # ESEARCH-style "(MODSEQ n)" suffixes are not requested; anything else is bad.
    found: list[int] = []
    for word in rest.split():
        number = numbers.wire_number_or_none(word, numbers.UID)
        if number is None:
            raise ParseError(f"bad SEARCH result {word[:20]!r}")
        found.append(number)
    return found


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
        start = numbers.wire_number_or_none(low, numbers.UID)
        end = numbers.wire_number_or_none(high or low, numbers.UID)
        if start is None or end is None:
            raise ParseError(f"bad sequence set {text[:40]!r}")
        start, end = min(start, end), max(start, end)
        end = min(end, start + limit - len(found))
        found.update(range(start, end + 1))
        if len(found) >= limit:
            break
    return sorted(found)[:limit]


def fetch_uid(text: bytes, attributes: dict[bytes, Token] | None = None) -> int | None:
    """The UID of a FETCH response; ``attributes``, when the caller has them
    already, are ``fetch_attributes(text)``."""
    return _fetch_number(text, b"UID", numbers.UID, attributes)


def fetch_size(text: bytes, attributes: dict[bytes, Token] | None = None) -> int | None:
    return _fetch_number(text, b"RFC822.SIZE", numbers.SIZE, attributes)


def _fetch_number(
    text: bytes,
    name: bytes,
    bounds: numbers.Bounds,
    attributes: dict[bytes, Token] | None,
) -> int | None:
    if attributes is None:
        attributes = fetch_attributes(text)
    value = attributes.get(name)
    if value is None:
        return None
    number = (
        numbers.wire_number_or_none(value, bounds) if isinstance(value, bytes) else None
    )
    if number is None:
        raise ParseError(f"bad {name.decode()} in {text[:60]!r}")
    return number


# -- tokens of a FETCH response ------------------------------------------------


@dataclass(frozen=True)
class Quoted:
    """A quoted string, unescaped: never mistaken for an atom such as NIL."""

    value: bytes


@dataclass(frozen=True)
class Literal:
    """A literal whose contents the session took out of the text."""

    size: int
    last: bool  # nothing follows it in the text given: its data is next


Token: TypeAlias = bytes | Quoted | Literal | tuple["Token", ...]

_ATOM_END = b' ()"{\r\n'
MAX_NESTING = 32  # BODYSTRUCTURE nests; a server nesting deeper is hostile


class _Tokens:
    """imapclient-style lexer over one response with its literals taken out."""

    def __init__(self, text: bytes, *, partial: bool) -> None:
        self.text = text
        self.at = 0
        self.partial = partial  # the text may stop at a literal, mid-list

    def at_end(self) -> bool:
        return self.at >= len(self.text) or self.text[self.at :] in (b"\r\n", b"\n")

    def skip_spaces(self) -> None:
        while self.at < len(self.text) and self.text[self.at] == 0x20:
            self.at += 1

    def value(self, depth: int = 0) -> Token:
        text, at = self.text, self.at
        if at >= len(text):
            raise ParseError(f"response ends early: {text[:60]!r}")
        first = text[at : at + 1]
        if first == b"(":
            return self._list(depth)
        if first == b'"':
            return self._quoted()
        if first == b"{":
            return self._literal()
        return self.atom()

    def atom(self) -> bytes:
        """An atom; a ``[section]`` in it may hold spaces and parentheses."""
        text, start = self.text, self.at
        at = start
        while at < len(text) and text[at] not in _ATOM_END:
            if text[at] == 0x5B:  # "["
                close = text.find(b"]", at)
                if close < 0:
                    raise ParseError(
                        f"unclosed section in {text[start : start + 40]!r}"
                    )
                at = close
            at += 1
        if at == start:
            raise ParseError(f"unexpected {text[at : at + 20]!r}")
        self.at = at
        return text[start:at]

    def _list(self, depth: int) -> tuple[Token, ...]:
        if depth >= MAX_NESTING:
            raise ParseError("lists nested too deeply")
        self.at += 1
        items: list[Token] = []
        while True:
            self.skip_spaces()
            if self.text[self.at : self.at + 1] == b")":
                self.at += 1
                return tuple(items)
            if self.partial and self.at_end():
                return tuple(items)
            items.append(self.value(depth + 1))

    def _quoted(self) -> Quoted:
        match = _QUOTED.match(self.text, self.at)
        if match is None:
            raise ParseError(f"unterminated string in {self.text[self.at :][:40]!r}")
        self.at = match.end()
        return Quoted(re.sub(rb"\\(.)", rb"\1", match.group(1)))

    def _literal(self) -> Literal:
        match = _LITERAL_MARK.match(self.text, self.at)
        if match is None:
            raise ParseError(f"bad literal in {self.text[self.at :][:40]!r}")
        size = numbers.wire_number_or_none(match.group(1), numbers.SIZE)
        if size is None:
            raise ParseError(f"malformed literal size in {match.group(0)!r}")
        self.at = match.end()
        return Literal(size, last=self.at >= len(self.text))


_QUOTED = re.compile(rb'"((?:[^"\\\r\n]|\\.)*)"')
_LITERAL_MARK = re.compile(rb"\{([0-9]+)\+?\}\r?\n")


def fetch_pairs(text: bytes, *, partial: bool = False) -> list[tuple[bytes, Token]]:
    """``* 4 FETCH (UID 7 BODY[] {9}\r\n)`` -> [(b"UID", b"7"), (b"BODY[]", ...)].

    Names are upper-cased. Empty for a line that is not a FETCH response. With
    ``partial`` the text may end after a literal announcement, inside the list.
    """
    simple = _simple_pairs(text, partial=partial)
    if simple is not None:
        return simple
    return tokenized_pairs(text, partial=partial)


def tokenized_pairs(text: bytes, *, partial: bool = False) -> list[tuple[bytes, Token]]:
    """:func:`fetch_pairs` by the tokenizer, whatever the shape of the text."""
    match = _FETCH_HEAD.match(text)
    if match is None:
        return []
    tokens = _Tokens(text, partial=partial)
    tokens.at = match.end()
    pairs: list[tuple[bytes, Token]] = []
    while True:
        tokens.skip_spaces()
        if text[tokens.at : tokens.at + 1] == b")":
            tokens.at += 1
            break
        if partial and tokens.at_end():
            return pairs
        name = tokens.atom().upper()
        tokens.skip_spaces()
        pairs.append((name, tokens.value()))
        if partial and tokens.at >= len(text):
            return pairs
    if not tokens.at_end():
        raise ParseError(f"text after the FETCH list: {text[tokens.at :][:40]!r}")
    return pairs


_FETCH_HEAD = re.compile(rb"\* [0-9]+ FETCH \(", re.I)

# The shapes every server sends for our own FETCHes, one space apart: a name
# with a number (UID 7, RFC822.SIZE 2048) or a literal (BODY[] {9}). Read with
# one regular expression each; anything else goes through the tokenizer, which
# gives the same pairs for these (tested against it).
_PAIR = rb"[A-Za-z0-9.]+(?:\[\])? (?:[0-9]+|\{[0-9]+\}\r\n)"
_SIMPLE_WHOLE = re.compile(
    rb"\* [0-9]+ FETCH \((" + _PAIR + rb"(?: " + _PAIR + rb")*)\)(?:\r\n|\n)?\Z",
    re.I,
)
_SIMPLE_PARTIAL = re.compile(
    rb"\* [0-9]+ FETCH \(((?:" + _PAIR + rb" )*[A-Za-z0-9.]+(?:\[\])? "
    rb"\{[0-9]+\}\r\n)\Z",
    re.I,
)
_SIMPLE_PAIR = re.compile(rb"([A-Za-z0-9.]+(?:\[\])?) (?:([0-9]+)|\{([0-9]+)\}\r\n)")


def _simple_pairs(text: bytes, *, partial: bool) -> list[tuple[bytes, Token]] | None:
    """:func:`fetch_pairs` for the simple shapes above; None for any other."""
    match = _SIMPLE_WHOLE.match(text)
    if match is None and partial:
        match = _SIMPLE_PARTIAL.match(text)
    if match is None:
        return None
    pairs: list[tuple[bytes, Token]] = []
    end = match.end(1)
    for pair in _SIMPLE_PAIR.finditer(text, match.start(1), end):
        name, number, literal = pair.groups()
        if number is not None:
            pairs.append((name.upper(), number))
            continue
        size = numbers.wire_number_or_none(literal, numbers.SIZE)
        if size is None:
            return None  # the tokenizer says why
        pairs.append((name.upper(), Literal(size, last=pair.end() >= len(text))))
    return pairs


def fetch_attributes(text: bytes) -> dict[bytes, Token]:
    """The pairs of :func:`fetch_pairs` by name; the first of a repeated name wins."""
    found: dict[bytes, Token] = {}
    for name, value in fetch_pairs(text):
        found.setdefault(name, value)
    return found


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
    value = fetch_attributes(text).get(b"BODY[]")
    return value.value if isinstance(value, Quoted) else None
