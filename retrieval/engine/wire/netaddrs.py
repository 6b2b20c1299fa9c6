"""Which IP addresses count as public: the one rule for self-service destinations.

The form check (``retrieval/netpolicy.py``) and the engine's connect-time check
(``public_only`` in ``transport.py``) both call :func:`is_public_address`, so an
address refused in one place cannot slip through the other.

``ipaddress.is_global`` is not used: its answer changes between Python versions
(3.11 calls ``224.0.0.1``, ``fec0::1`` and ``::127.0.0.1`` global) and it does not
look inside IPv6 addresses that carry an IPv4 address. The rule here is an allow
list read from the IANA special-purpose registries: an address is public only if,
after unwrapping every embedded IPv4 address, it is unicast in the global space
(IPv4 outside the refused blocks; IPv6 inside 2000::/3 and outside the refused
blocks).
"""

from __future__ import annotations

import ipaddress
from typing import Final

IPv4 = ipaddress.IPv4Address
IPv6 = ipaddress.IPv6Address
_net4 = ipaddress.IPv4Network
_net6 = ipaddress.IPv6Network

# (block, why) -- the reason is for tests and logs, never shown to the user.
REFUSED_V4: Final[tuple[tuple[ipaddress.IPv4Network, str], ...]] = (
    (_net4("0.0.0.0/8"), "this network / unspecified"),
    (_net4("10.0.0.0/8"), "private"),
    (_net4("100.64.0.0/10"), "shared address space (CGNAT)"),
    (_net4("127.0.0.0/8"), "loopback"),
    (_net4("169.254.0.0/16"), "link-local"),
    (_net4("172.16.0.0/12"), "private"),
    (_net4("192.0.0.0/24"), "IETF protocol assignments"),
    (_net4("192.0.2.0/24"), "documentation"),
    (_net4("192.88.99.0/24"), "6to4 relay anycast (deprecated)"),
    (_net4("192.168.0.0/16"), "private"),
    (_net4("198.18.0.0/15"), "benchmarking"),
    (_net4("198.51.100.0/24"), "documentation"),
    (_net4("203.0.113.0/24"), "documentation"),
    (_net4("224.0.0.0/4"), "multicast"),
    (_net4("240.0.0.0/4"), "reserved / broadcast"),
)

# Only 2000::/3 is allocated as global unicast; everything outside it (::/8,
# 100::/64, fc00::/7, fec0::/10, fe80::/10, ff00::/8, 5f00::/16 ...) is refused
# once the embedded IPv4 forms below have been unwrapped.
GLOBAL_UNICAST_V6: Final = _net6("2000::/3")
REFUSED_V6: Final[tuple[tuple[ipaddress.IPv6Network, str], ...]] = (
    # Teredo (2001::/32) is unwrapped before this list is consulted.
    (_net6("2001::/23"), "IETF protocol assignments"),
    (_net6("2001:db8::/32"), "documentation"),
    (_net6("3fff::/20"), "documentation"),
)

# Prefixes that carry an IPv4 address in their low 32 bits.
_MAPPED: Final = _net6("::ffff:0:0/96")  # IPv4-mapped
_COMPATIBLE: Final = _net6("::/96")  # IPv4-compatible (deprecated)
_SIIT: Final = _net6("::ffff:0:0:0/96")  # IPv4-translated (RFC 2765)
_NAT64: Final = _net6("64:ff9b::/96")  # well-known NAT64 prefix (RFC 6052)
# The local-use NAT64 prefix (RFC 8215) translates into the operator's own
# network whatever the embedded address says: never public.
_NAT64_LOCAL: Final = _net6("64:ff9b:1::/48")
_TEREDO: Final = _net6("2001::/32")
_SIX_TO_FOUR: Final = _net6("2002::/16")


def _parse(address: object) -> IPv4 | IPv6 | None:
    text = str(address).strip()
    # A zone index ("fe80::1%eth0") says which link, not which address.
    text = text.split("%", 1)[0]
    # Bracketed IPv6 as written in URLs.
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _low32(ip: IPv6) -> IPv4:
    return IPv4(int(ip) & 0xFFFFFFFF)


def embedded_ipv4(ip: IPv6) -> tuple[IPv4, ...] | None:
    """The IPv4 address(es) an IPv6 address leads to, or None if it carries none.

    Teredo leads to two: the Teredo server and the (obfuscated) client address.
    """
    if ip in _MAPPED or ip in _SIIT or ip in _NAT64 or ip in _COMPATIBLE:
        return (_low32(ip),)
    if ip in _SIX_TO_FOUR:
        return (IPv4((int(ip) >> 80) & 0xFFFFFFFF),)
    if ip in _TEREDO:
        server = IPv4((int(ip) >> 64) & 0xFFFFFFFF)
        client = IPv4(~int(ip) & 0xFFFFFFFF)
        return (server, client)
    return None


def refusal_reason(address: object) -> str | None:
    """Why ``address`` is not a public unicast address, or None when it is."""
    ip = _parse(address)
    if ip is None:
        return "not an IP address"
    if isinstance(ip, IPv6):
        # ::1 and :: sit inside the IPv4-compatible block; name them plainly.
        if ip.is_loopback:
            return "loopback"
        if ip.is_unspecified:
            return "unspecified"
        if ip in _NAT64_LOCAL:
            return "local-use NAT64"
        inner = embedded_ipv4(ip)
        if inner is not None:
            for v4 in inner:
                reason = _v4_reason(v4)
                if reason is not None:
                    return f"embeds {v4}: {reason}"
            return None
        return _v6_reason(ip)
    return _v4_reason(ip)


def _v4_reason(ip: IPv4) -> str | None:
    for block, why in REFUSED_V4:
        if ip in block:
            return why
    return None


def _v6_reason(ip: IPv6) -> str | None:
    if ip not in GLOBAL_UNICAST_V6:
        if ip.is_multicast:
            return "multicast"
        if ip.is_link_local:
            return "link-local"
        if ip.is_site_local:
            return "site-local (deprecated)"
        if ip in _net6("fc00::/7"):
            return "unique local (private)"
        return "reserved (outside global unicast 2000::/3)"
    for block, why in REFUSED_V6:
        if ip in block:
            return why
    return None


def is_public_address(address: object) -> bool:
    """True for a globally routable unicast address, whatever its spelling."""
    return refusal_reason(address) is None
