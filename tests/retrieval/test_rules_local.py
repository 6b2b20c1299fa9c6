"""Multidrop rules deliver only inside the domain (issue 11 item 2).

A domain administrator saved ``x@y.example -> victim@external.example`` and the
listener was asked for ``RCPT TO:<victim@external.example>``. A rule's target
is a bare local name, an address in the mailbox's domain or a person of the
domain; a superuser may also name any person with an account here (mail moves
between tenants, never out of the installation).
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import make_user
from tests.retrieval.test_views import _as, _errors, _quick_settings, trio

__all__ = ["_quick_settings", "trio"]

pytestmark = pytest.mark.django_db


def _url(trio) -> str:
    return reverse("retrieval:mailbox-rules", args=[trio.mailbox.pk])


@pytest.mark.parametrize(
    "text",
    [
        "x@y.example -> victim@external.example",
        "joe -> Victim@External.Example",
        # A name alone is the same on both sides: a whole outside address.
        "victim@external.example",
        # A subdomain, or a name that merely ends like the domain, is outside.
        "joe -> joe@mail.example.org",
        "joe -> joe@badexample.org",
    ],
)
@pytest.mark.parametrize("role", ["bob", "root"])
def test_a_rule_to_an_outside_address_is_refused_in_words(client, trio, role, text):
    response = _as(client, getattr(trio, role)).post(_url(trio), {"rules": text})
    errors = _errors(response)
    assert "Line 1:" in errors and "is outside this mailbox's domain" in errors
    assert "people of example.org" in errors
    assert not trio.mailbox.rules.exists()


def test_an_outside_address_is_refused_among_good_lines(client, trio):
    response = _as(client, trio.bob).post(
        _url(trio), {"rules": "joe\nx -> victim@external.example\n*"}
    )
    assert "Line 2: victim@external.example is outside" in _errors(response)
    assert not trio.mailbox.rules.exists()


def test_a_domain_administrator_may_not_name_a_person_of_another_tenant(client, trio):
    # charlie has an account, but not in this domain: only a superuser may.
    response = _as(client, trio.bob).post(
        _url(trio), {"rules": "c -> charlie@elsewhere.example"}
    )
    assert "charlie@elsewhere.example is outside" in _errors(response)
    # A member of the domain is inside, whatever their address.
    make_user("dave@home.example", domain=trio.domain)
    response = _as(client, trio.bob).post(
        _url(trio), {"rules": "dave -> dave@home.example\njoe -> Joe@Example.org\n*"}
    )
    assert response.status_code == 302, _errors(response)
    assert trio.mailbox.rules.count() == 3
    response = _as(client, trio.root).post(
        _url(trio), {"rules": "c -> charlie@elsewhere.example"}
    )
    assert response.status_code == 302
    assert list(trio.mailbox.rules.values_list("remote", "local")) == [
        ("c", "charlie@elsewhere.example")
    ]
