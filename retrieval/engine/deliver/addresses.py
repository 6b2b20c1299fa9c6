"""RFC 5322 address lists, tokenized: whom a To/Cc/Delivered-To field names.

One small parser for the recipients multidrop reads from a header. It follows
RFC 5322's grammar (section 3.4) and its obsolete forms (section 4.4), because
real headers use all of them:

* comments, nested and with quoted pairs, anywhere (``carol (Carol C.)``,
  ``joe(home)@(mx)example.org``);
* groups, empty or not (``undisclosed-recipients:;``, ``team: a@x, b@y;``);
* display names with or without angle brackets, quoted or not, with dots
  (obs-phrase: ``John Q. Public <jqp@example.org>``);
* quoted local parts (``"joe smith"@example.org``; one that needs no quotes
  comes out without them), domain literals (``joe@[127.0.0.1]``);
* source routes (obs-route: ``<@relay,@hop:joe@example.org>`` is joe's),
  CFWS around the dots of a local part or domain, empty list elements;
* a bare local name (``carol``), as fetchmail reads it: the caller decides
  whose domain it is.

An element that is none of these (``Carol Smith`` without an address) names
nobody. Input is bounded (:data:`MAX_VALUE`) and every step is linear, so a
hostile header costs little. Nothing here validates an address for SMTP: the
caller checks every result with :func:`retrieval.engine.deliver.headers.is_valid_address`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MAX_VALUE = 64 * 1024  # characters of one field value looked at
MAX_ADDRESSES = 500

_SPECIALS = "<>@,;:.[]"
# RFC 5322 atext; anything else printable that is not special (8-bit display
# names, stray backslashes) is kept in atoms too, as lenient parsers do.
_ATEXT = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
)

Kind = Literal["atom", "quoted", "literal", "special"]


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str  # atoms and specials as written; quoted strings unescaped


@dataclass(frozen=True)
class Mailbox:
    address: str  # local@domain, or a bare local name
    display: str = ""


def tokens(value: str) -> list[Token]:
    """The tokens of ``value``; comments and folding white space dropped."""
    text = value[:MAX_VALUE]
    found: list[Token] = []
    i, end = 0, len(text)
    while i < end:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
        elif ch == "(":
            i = _skip_comment(text, i)
        elif ch == '"':
            body, i = _quoted(text, i + 1, '"')
            found.append(Token("quoted", body))
        elif ch == "[":
            body, i = _quoted(text, i + 1, "]")
            found.append(Token("literal", "".join(body.split())))
        elif ch in _SPECIALS:
            found.append(Token("special", ch))
            i += 1
        else:
            start = i
            while i < end and text[i] not in _SPECIALS and text[i] not in ' \t\r\n("':
                i += 1
            found.append(Token("atom", text[start:i]))
    return found


def _skip_comment(text: str, i: int) -> int:
    """The index after the comment opening at ``i``; an unclosed one runs out."""
    depth = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def _quoted(text: str, i: int, close: str) -> tuple[str, int]:
    """A quoted string or domain literal from ``i``, unescaped, and where it ends."""
    out: list[str] = []
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if ch == close:
            return "".join(out), i + 1
        if ch not in "\r\n":
            out.append(ch)
        i += 1
    return "".join(out), i


def parse_address_list(value: str) -> list[Mailbox]:
    """Every mailbox of an address-list field value, in order, each once per
    appearance; see the module docstring for the forms understood."""
    found: list[Mailbox] = []
    element: list[Token] = []
    angle: list[Token] | None = None  # inside <...>
    phrase: list[Token] = []
    routed: Mailbox | None = None  # the <...> of this element, once closed
    in_group = False
    has_at = False  # the element holds an "@": a ":" in it is no group

    def finish() -> None:
        nonlocal element, phrase, routed, has_at
        mailbox = routed
        if mailbox is None:
            address = _addr_spec(element)
            mailbox = Mailbox(address) if address else None
        if mailbox is not None and len(found) < MAX_ADDRESSES:
            found.append(mailbox)
        element, phrase, routed, has_at = [], [], None, False

    for token in tokens(value):
        special = token.text if token.kind == "special" else ""
        if angle is not None:
            if special == ">":
                address = _addr_spec(_without_route(angle))
                routed = Mailbox(address, _display(phrase)) if address else None
                angle = None
            else:
                angle.append(token)
        elif special == "<":
            phrase, angle = element, []
            element, has_at = [], False
        elif special == ",":
            finish()
        elif special == ";":
            finish()
            in_group = False
        elif special == ":" and not in_group and not has_at:
            # A group's display name ends here; its members follow.
            element, in_group = [], True
        elif routed is None:
            element.append(token)
            has_at = has_at or special == "@"
    if angle is not None:  # an unclosed "<": take what it holds
        address = _addr_spec(_without_route(angle))
        routed = Mailbox(address, _display(phrase)) if address else None
    finish()
    return found


def _without_route(inside: list[Token]) -> list[Token]:
    """obs-route: ``@a,@b:`` before the address in angle brackets is dropped."""
    if inside and inside[0].text == "@" and inside[0].kind == "special":
        for at, token in enumerate(inside):
            if token.kind == "special" and token.text == ":":
                return inside[at + 1 :]
    return inside


def _display(phrase: list[Token]) -> str:
    return " ".join(t.text for t in phrase if t.kind != "special" or t.text == ".")


def _addr_spec(items: list[Token]) -> str:
    """``local-part ["@" domain]`` from tokens, or "" when they are not one."""
    at = next(
        (n for n, t in enumerate(items) if t.kind == "special" and t.text == "@"),
        len(items),
    )
    local = _local_part(items[:at])
    if not local:
        return ""
    if at == len(items):
        return local  # a bare local name
    domain = _domain(items[at + 1 :])
    return f"{local}@{domain}" if domain else ""


def _words(items: list[Token], kinds: tuple[Kind, ...]) -> str | None:
    """``word *("." word)`` as written, dots included, or None when ``items``
    are not one (two words without a dot are a phrase, not an address).

    Misplaced dots (``x..y``) are kept as written: the address is then not
    valid, and the caller says so, rather than quietly naming another one.
    """
    text: list[str] = []
    after_word = False
    for token in items:
        if token.kind == "special" and token.text == ".":
            text.append(".")
            after_word = False
            continue
        if token.kind not in kinds or after_word:
            return None
        text.append(token.text)
        after_word = True
    return "".join(text) if any(t.kind != "special" for t in items) else None


def _local_part(items: list[Token]) -> str:
    plain = _words(items, ("atom", "quoted"))
    if plain is None:
        return ""
    if all(t.kind != "quoted" for t in items) or _is_dot_atom(plain):
        return plain
    escaped = plain.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _domain(items: list[Token]) -> str:
    if len(items) == 1 and items[0].kind == "literal":
        return f"[{items[0].text}]"
    return _words(items, ("atom",)) or ""


def _is_dot_atom(text: str) -> bool:
    parts = text.split(".")
    return all(part and set(part) <= _ATEXT for part in parts)
