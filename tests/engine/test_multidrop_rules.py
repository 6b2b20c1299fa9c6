"""Multidrop as fetchmail 6.4 routes it: bare local names, everyone refused (issue 10.7)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from retrieval.engine.deliver.multidrop import route
from tests.engine.test_multidrop import NAMES, SERVER, SPEC, header

GUESS = replace(SPEC, envelope=None, wildcard=True)


def test_a_bare_local_name_with_a_comment_is_a_user_at_the_mail_server() -> None:
    routing = route(
        header(f"To: alice@{SERVER}, carol (Carol C.)"),
        GUESS,
        NAMES,
        ("pm",),
        rewrite=True,
    )
    assert routing.recipients == ("alice", "carol")
    text = "\n".join(routing.describe())
    assert f"carol -> carol (bare name read as carol@{SERVER} (rewrite)" in text


def test_a_bare_local_name_alone_is_not_sent_to_the_postmaster() -> None:
    routing = route(header("To: carol (Carol C.)"), GUESS, NAMES, ("pm",), rewrite=True)
    assert routing.recipients == ("carol",) and not routing.to_postmaster


def test_bare_names_are_mapped_by_the_names_too() -> None:
    routing = route(
        header("Cc: bob"), replace(SPEC, envelope=None), NAMES, ("pm",), rewrite=True
    )
    assert routing.recipients == ("robert",)


def test_with_no_rewrite_a_bare_name_stays_bare_as_in_fetchmail() -> None:
    routing = route(header("To: carol (Carol C.)"), GUESS, NAMES, ("pm",))
    assert routing.to_postmaster


def test_an_envelope_field_is_never_qualified() -> None:
    # fetchmail rewrites To/Cc/...; the envelope names its recipient whole.
    spec = replace(GUESS, envelope="X-Original-To")
    block = header("X-Original-To: carol", "To: alice@client.example")
    assert route(block, spec, NAMES, ("pm",), rewrite=True).to_postmaster


@pytest.mark.parametrize(
    ("to", "recipients"),
    [
        ("Team: alice@client.example, carol;", ("alice", "carol")),
        ('"bob"@client.example (Bob)', ("robert",)),
        ("<@relay.example:alice@client.example>", ("alice",)),
        ("alice@[127.0.0.1]", ("pm",)),  # a literal is not the server's name
    ],
)
def test_rfc5322_forms_in_routing(to: str, recipients: tuple[str, ...]) -> None:
    spec = replace(GUESS, wildcard=False, names=(*SPEC.names, ("carol", "carol")))
    assert (
        route(header(f"To: {to}"), spec, NAMES, ("pm",), rewrite=True).recipients
        == recipients
    )
