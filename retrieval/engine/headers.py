"""Pure helpers on message headers and envelope addresses; no I/O.

Everything here reads bytes a remote server sent, so it is written to be
bounded and to reject rather than pass on anything that could become a second
protocol line (CR, LF, NUL) in the SMTP dialogue.
"""

from __future__ import annotations

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


def header_value(header_block: bytes, name: str) -> str | None:
    """The first field called ``name``, unfolded, or None.

    Header bytes are decoded as latin-1 so that any byte survives; fields we use
    (Return-Path, Message-ID) are ASCII in practice.
    """
    wanted = name.lower().encode()
    value: list[bytes] | None = None
    for line in header_block.splitlines():
        if value is not None:
            if line[:1] in (b" ", b"\t"):
                value.append(line)
                continue
            break
        field, colon, rest = line.partition(b":")
        if colon and field.strip().lower() == wanted:
            value = [rest]
    if value is None:
        return None
    return b" ".join(part.strip() for part in value).decode("latin-1").strip()


def return_path(header_block: bytes) -> str:
    """The envelope sender from Return-Path, or "" (the null sender).

    A malformed or hostile value becomes the null sender rather than reaching
    the listener: a bounce to a wrong address is worse than no bounce.
    """
    value = header_value(header_block, "Return-Path")
    if not value:
        return ""
    match = re.search(r"<([^<>]*)>", value)
    address = (match.group(1) if match else value).strip()
    # Source routes ("<@a,@b:user@c>") are obsolete: keep the mailbox only.
    if address.startswith("@") and ":" in address:
        address = address.split(":", 1)[1]
    if address and "@" in address and is_valid_address(address):
        return address
    return ""


def message_id(header_block: bytes) -> str:
    value = header_value(header_block, "Message-ID") or ""
    # Bounded and printable: it ends up in the ledger and on the dashboard.
    return "".join(ch for ch in value[:250] if " " < ch < "\x7f")
