"""Every spelling of a private address is refused, by the engine and by the form check.

The table goes through the two entry points that existed before the rule moved to
``retrieval/engine/wire/netaddrs.py`` (``transport.is_public_address`` at connect time,
``netpolicy.check_destination`` for forms), so it also proves both use the one rule.
Numeric hosts never touch DNS: getaddrinfo answers them locally.
"""

from __future__ import annotations

import pytest

from retrieval.engine.wire.transport import is_public_address

REFUSED = [
    # the spellings of issue 11, item 6
    ("::127.0.0.1", "IPv4-compatible loopback"),
    ("::ffff:0:7f00:1", "SIIT-translated loopback"),
    ("64:ff9b::7f00:1", "NAT64 well-known prefix to loopback"),
    ("64:ff9b:1::a00:1", "NAT64 local-use prefix"),
    ("2002:7f00:1::1", "6to4 of loopback"),
    ("2002:a00:1::1", "6to4 of 10.0.0.1"),
    ("fec0::1", "site-local"),
    ("224.0.0.1", "IPv4 multicast"),
    ("ff02::1", "IPv6 multicast"),
    # the plain ones
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "IPv6 loopback"),
    ("0.0.0.0", "unspecified"),
    ("::", "IPv6 unspecified"),
    ("10.0.0.5", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "CGNAT"),
    ("169.254.169.254", "link-local (cloud metadata)"),
    ("fe80::1", "IPv6 link-local"),
    ("fe80::1%lo", "IPv6 link-local with a zone"),
    ("fd00::1", "unique local"),
    ("fc00::1", "unique local"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.1", "documentation"),
    ("203.0.113.1", "documentation"),
    ("2001:db8::1", "IPv6 documentation"),
    ("3fff::1", "IPv6 documentation (RFC 9637)"),
    ("198.18.0.1", "benchmarking"),
    ("2001:2::1", "IPv6 benchmarking"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("192.0.0.8", "IETF protocol assignments"),
    ("192.88.99.1", "6to4 relay anycast"),
    ("239.255.255.250", "IPv4 multicast (SSDP)"),
    ("ff05::2", "IPv6 multicast"),
    ("100::1", "discard-only"),
    ("5f00::1", "outside 2000::/3"),
    ("4000::1", "outside 2000::/3"),
    # more embeddings
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("::ffff:7f00:1", "IPv4-mapped loopback, hex"),
    ("::ffff:10.1.2.3", "IPv4-mapped private"),
    ("::ffff:224.0.0.1", "IPv4-mapped multicast"),
    ("::10.0.0.1", "IPv4-compatible private"),
    ("64:ff9b::10.0.0.1", "NAT64 to private"),
    ("64:ff9b::a9fe:a9fe", "NAT64 to link-local metadata"),
    ("64:ff9b:1::808:808", "NAT64 local-use, even to a public address"),
    ("2002:c0a8:101::1", "6to4 of 192.168.1.1"),
    ("2002:a9fe:a9fe::1", "6to4 of 169.254.169.254"),
    # Teredo: server 65.54.227.120, client 127.0.0.1 (stored inverted)
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo to a loopback client"),
    # Teredo: server 10.0.0.1, client 8.8.8.8
    ("2001:0:a00:1::f7f7:f7f7", "Teredo through a private server"),
    ("2001::1", "Teredo with an all-ones-inverted client"),
    ("not an address", "not an address"),
    ("", "empty"),
]

PUBLIC = [
    ("8.8.8.8", "IPv4"),
    ("1.1.1.1", "IPv4"),
    ("2606:4700::1111", "IPv6"),
    ("2001:4860:4860::8888", "IPv6"),
    ("2a00:1450:4001:80e::200e", "IPv6"),
    ("::ffff:8.8.8.8", "IPv4-mapped public"),
    ("64:ff9b::808:808", "NAT64 well-known prefix to a public address"),
    ("2002:808:808::1", "6to4 of a public address"),
    # Teredo: server 65.54.227.120, client 8.8.8.8 (inverted f7f7:f7f7)
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", "Teredo, public server and client"),
    ("[2606:4700::1111]", "bracketed IPv6"),
]


@pytest.mark.parametrize(
    ("address", "what"), REFUSED, ids=[a or "empty" for a, _ in REFUSED]
)
def test_refused_everywhere(address, what):
    assert is_public_address(address) is False, what


@pytest.mark.parametrize(("address", "what"), PUBLIC, ids=[a for a, _ in PUBLIC])
def test_public_passes(address, what):
    assert is_public_address(address) is True, what


def test_the_engine_rule_is_django_free_and_has_reasons():
    from retrieval.engine.wire.netaddrs import refusal_reason

    assert refusal_reason("fec0::1") == "site-local (deprecated)"
    assert refusal_reason("2002:7f00:1::1") == "embeds 127.0.0.1: loopback"
    assert refusal_reason("8.8.8.8") is None


@pytest.mark.parametrize("address", [a for a, _ in REFUSED[:9]])
def test_the_form_check_refuses_the_same_spellings(address):
    from retrieval import netpolicy

    with pytest.raises(netpolicy.DestinationRefused):
        netpolicy.check_destination(address, 993)
