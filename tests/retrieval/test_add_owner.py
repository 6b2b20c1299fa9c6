"""The add form's owner is never a surprise (issue 11 item 3).

The Owner drop-down had no selected option, so a browser submitted the first
name of the list: a domain administrator's new mailbox silently became the
first member's. The person adding is preselected; when they cannot own it, the
list starts with an empty "Choose the owner" that the form refuses.
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from retrieval import services
from retrieval.forms import MailboxForm
from tests.factories import make_user
from tests.retrieval.test_views import _as, _quick_settings, trio

__all__ = ["_quick_settings", "trio"]

pytestmark = pytest.mark.django_db


def _owner_options(html: str) -> list[tuple[str, bool]]:
    select = re.search(r'<select name="owner".*?</select>', html, re.S)
    assert select is not None
    return [
        (value, "selected" in attrs)
        for attrs, value in (
            (m.group(0), m.group(1))
            for m in re.finditer(r'<option value="([^"]*)"[^>]*>', select.group(0))
        )
    ]


def _selected(html: str) -> list[str]:
    return [value for value, chosen in _owner_options(html) if chosen]


@pytest.fixture
def aaron(trio):
    # First in the list (by address), before the administrator bob: the one a
    # browser picked when nothing was selected.
    return make_user("aaron@example.org", domain=trio.domain)


def test_a_domain_administrator_is_the_preselected_owner(client, trio, aaron):
    html = _as(client, trio.bob).get(reverse("retrieval:mailbox-add")).content.decode()
    assert _owner_options(html)[0][0] == str(aaron.pk)
    assert _selected(html) == [str(trio.bob.pk)]


def test_a_superuser_is_the_preselected_owner(client, trio, aaron):
    html = _as(client, trio.root).get(reverse("retrieval:mailbox-add")).content.decode()
    assert _selected(html) == [str(trio.root.pk)]


def test_an_editor_outside_the_list_must_choose_explicitly(trio, aaron):
    # Not reachable through owners_for today (it always includes the editor),
    # but the form must not fall back to the first name if it ever is.
    owners = type(trio.alice).objects.filter(pk__in=[aaron.pk, trio.alice.pk])
    form = MailboxForm(instance=services.mailbox_new(), editor=trio.bob, owners=owners)
    html = str(form["owner"])
    assert _selected(html) == [""]
    assert "Choose the owner" in html
