"""The address-list parser multidrop reads header recipients with (issue 10.7)."""

from __future__ import annotations

import pytest

from retrieval.engine.deliver.addresses import MAX_ADDRESSES, parse_address_list


def addresses(value: str) -> list[str]:
    return [m.address for m in parse_address_list(value)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # A bare local name with a comment, next to a full address.
        ("alice@mx1.isp.example, carol (Carol C.)", ["alice@mx1.isp.example", "carol"]),
        ("carol", ["carol"]),
        # Comments anywhere, nested, with quoted pairs and parentheses inside.
        ("joe(home)@(the mx)example.org", ["joe@example.org"]),
        ("(a (nested \\) one)) bob@example.org (trailing)", ["bob@example.org"]),
        ("Bob (the (real) one) <bob@example.org>", ["bob@example.org"]),
        # Display names: quoted, with commas, with dots (obs-phrase), 8-bit.
        ('"Carol C." <carol@client.example>', ["carol@client.example"]),
        (
            '"Smith, John" <john@example.org>, x@y.example',
            ["john@example.org", "x@y.example"],
        ),
        ("John Q. Public <jqp@example.org>", ["jqp@example.org"]),
        ("Jürgen <jue@example.org>", ["jue@example.org"]),
        # Groups, empty or not, between other addresses.
        ("undisclosed-recipients:;", []),
        (
            "team: a@x.example, b@y.example;, c@z.example",
            ["a@x.example", "b@y.example", "c@z.example"],
        ),
        (
            "a@x.example, Friends: b@y.example; , c@z.example",
            ["a@x.example", "b@y.example", "c@z.example"],
        ),
        ("list:(nobody);", []),
        # Quoted local parts: kept quoted when they must be, unquoted otherwise.
        ('"joe smith"@example.org', ['"joe smith"@example.org']),
        ('"joe"@example.org', ["joe@example.org"]),
        ('"a\\"b"@example.org', ['"a\\"b"@example.org']),
        ('Joe <"joe.x"@example.org>', ["joe.x@example.org"]),
        # Obsolete forms: a source route, CFWS around dots, empty elements.
        ("<@relay.example,@hop.example:joe@example.org>", ["joe@example.org"]),
        ("Joe <@relay.example:joe@example.org>", ["joe@example.org"]),
        ("joe . smith @ example . org", ["joe.smith@example.org"]),
        (",, a@x.example,,b@y.example,", ["a@x.example", "b@y.example"]),
        # Domain literals stay literals.
        ("user@[127.0.0.1]", ["user@[127.0.0.1]"]),
        ("user@[ IPv6:::1 ]", ["user@[IPv6:::1]"]),
        # Words without an address name nobody.
        ("Carol Smith", []),
        ("", []),
        ("<>", []),
    ],
)
def test_rfc5322_address_lists(value: str, expected: list[str]) -> None:
    assert addresses(value) == expected


def test_display_names_are_kept() -> None:
    (mailbox,) = parse_address_list('"Carol C." <carol@client.example>')
    assert mailbox.display == "Carol C."


@pytest.mark.parametrize(
    "value",
    [
        '"never closed@example.org',
        "(never closed a@example.org",
        "<a@example.org",
        "a@",
        "@b",
        "\\",
    ],
)
def test_broken_values_end_without_error(value: str) -> None:
    assert isinstance(addresses(value), list)


def test_a_huge_list_is_bounded() -> None:
    value = ", ".join(f"u{n}@example.org" for n in range(5000))
    assert len(addresses(value)) == MAX_ADDRESSES


@pytest.mark.parametrize(
    "value",
    [
        "a@b" + ":" * 60000,  # once quadratic: every ":" looked back for an "@"
        "(" * 60000,
        '"' + "\\" * 60000,
        "<" + "@a," * 20000,
    ],
)
def test_hostile_values_are_parsed_in_one_pass(value: str) -> None:
    assert len(addresses(value)) <= 1
