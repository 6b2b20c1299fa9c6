"""Pure helpers on message headers and envelope addresses; no I/O.

Everything here reads bytes a remote server sent, so it is written to be
bounded and to reject rather than pass on anything that could become a second
protocol line (CR, LF, NUL) in the SMTP dialogue.
"""

from __future__ import annotations

import functools
import ipaddress
import re

# RFC 5321 Mailbox: a dot-atom or quoted local part, "@", a domain or address
# literal. Bare local parts ("joe") are allowed too: fetchmail and LMTP servers
# take them, and the SMTP sink qualifies them before use.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QUOTED = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"'
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*\.?|\[[\x21-\x5a\x5e-\x7e]+\])"
_ADDRESS = re.compile(rf"(?:{_DOT_ATOM}|{_QUOTED})(?:@{_DOMAIN})?")
MAX_ADDRESS = 320  # RFC 5321: 64 local + @ + 255 domain


def is_valid_address(address: str) -> bool:
    """True for an address that can go into ``MAIL FROM:<>`` / ``RCPT TO:<>``."""
    return len(address) <= MAX_ADDRESS and _ADDRESS.fullmatch(address) is not None


class _Lines:
    """A header block cut into lines once, with where each field name first
    starts a line, and the first line that is neither a field nor a
    continuation: every lookup of one message's header shares the work."""

    __slots__ = ("bad", "first", "lines")

    def __init__(self, header_block: bytes) -> None:
        self.lines = header_block.splitlines()
        self.first: dict[bytes, int] = {}
        self.bad: bytes | None = None
        for at, line in enumerate(self.lines):
            field, colon, _ = line.partition(b":")
            if colon:
                self.first.setdefault(field.strip().lower(), at)
            elif self.bad is None and line and line[:1] not in (b" ", b"\t"):
                self.bad = line[:200]


@functools.lru_cache(maxsize=8)
def _lines(header_block: bytes) -> _Lines:
    # Several lookups per message (sender, Message-ID, MIME fields, bad lines)
    # come with the same block: it is split once.
    return _Lines(header_block)


def header_value(header_block: bytes, name: str) -> str | None:
    """The first field called ``name``, unfolded, or None.

    Header bytes are decoded as latin-1 so that any byte survives; fields we use
    (Return-Path, Message-ID) are ASCII in practice.
    """
    parsed = _lines(header_block)
    at = parsed.first.get(name.lower().encode())
    if at is None:
        return None
    lines = parsed.lines
    value = [lines[at].partition(b":")[2]]
    for line in lines[at + 1 :]:
        if line[:1] not in (b" ", b"\t"):
            break
        value.append(line)
    return b" ".join(part.strip() for part in value).decode("latin-1").strip()


def return_path(header_block: bytes) -> str:
    """The envelope sender from Return-Path, or "" (the null sender).

    A malformed or hostile value becomes the null sender rather than reaching
    the listener: a bounce to a wrong address is worse than no bounce.
    """
    value = header_value(header_block, "Return-Path")
    if not value:
        return ""
    match = _ANGLE.search(value)
    address = (match.group(1) if match else value).strip()
    # Source routes ("<@a,@b:user@c>") are obsolete: keep the mailbox only.
    if address.startswith("@") and ":" in address:
        address = address.split(":", 1)[1]
    if address and "@" in address and is_valid_address(address):
        return address
    return ""


# Where fetchmail looks for a sender when there is no Return-Path, best first.
_SENDER_FIELDS = (
    "Resent-Sender",
    "Sender",
    "Resent-From",
    "From",
    "Reply-To",
    "Apparently-From",
)


def first_address(value: str) -> str:
    """The first address of an address-list field value, without its brackets.

    Comments are dropped; a ``<...>`` route address wins over the display name
    around it; otherwise the first item of the list, whitespace removed.
    """
    text = value[:4096]
    if "(" in text:
        text = _COMMENT.sub(" ", text)
    first = _first_item(text) if '"' in text or "," in text else text
    match = _ANGLE.search(first)
    if match:
        return match.group(1).strip()
    return "".join(first.split())


def _first_item(text: str) -> str:
    """``text`` up to its first comma outside quotes and angle brackets."""
    item: list[str] = []
    quoted = angle = False
    for ch in text:
        if ch == '"' and not angle:
            quoted = not quoted
        elif ch == "<" and not quoted:
            angle = True
        elif ch == ">" and not quoted:
            angle = False
        elif ch == "," and not (quoted or angle):
            break
        item.append(ch)
    return "".join(item)


_COMMENT = re.compile(r"\([^()]*\)")
_ANGLE = re.compile(r"<([^<>]*)>")


def domain_literal(host: str) -> str:
    """``host`` as the domain part of an address: IP addresses become literals."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host
    return f"[{ip}]" if ip.version == 4 else f"[IPv6:{ip}]"


def envelope_sender(header_block: bytes, *, remote_user: str, server: str) -> str:
    """The MAIL FROM address for a fetched message, chosen as fetchmail does.

    Return-Path when present (``<>`` or a malformed one give the null sender,
    a bare local name gets the mail server's name);
    else the first of Resent-Sender, Sender, Resent-From, From, Reply-To,
    Apparently-From; a bare local name is qualified with the mail server's
    name; with no candidate at all, the remote account at the mail server.
    """
    value = header_value(header_block, "Return-Path")
    if value is not None:
        bare = first_address(value)
        if bare and "@" not in bare and is_valid_address(bare):
            return _qualified_sender(bare, server)  # a local Return-Path
        return return_path(header_block)
    for name in _SENDER_FIELDS:
        value = header_value(header_block, name)
        if value is None:
            continue
        address = first_address(value)
        if name.endswith("Sender") and not any(c in address for c in "@!"):
            continue  # fetchmail: a Sender without a domain names no mailbox
        if address:
            return _qualified_sender(address, server)
    return _qualified_sender(remote_user, server)


def _qualified_sender(address: str, server: str) -> str:
    if "@" not in address and server:
        address = f"{address}@{domain_literal(server)}"
    return address if "@" in address and is_valid_address(address) else ""


def bad_header_line(header_block: bytes) -> bytes | None:
    """The first header line that is neither a field nor a continuation, if any.

    fetchmail refuses such messages unless ``bad-header accept`` is set.
    """
    return _lines(header_block).bad


def message_id(header_block: bytes) -> str:
    value = header_value(header_block, "Message-ID") or ""
    # Bounded and printable: it ends up in the ledger and on the dashboard.
    return _NOT_VISIBLE.sub("", value[:250])


_NOT_VISIBLE = re.compile(r"[^!-~]")  # all but printable ASCII, space included
