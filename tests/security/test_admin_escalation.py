"""What a staff domain administrator could once do through Django's admin.

Before the admin became superuser-only (issue 11 item 1), a domain
administrator with staff status edited the superuser's mailbox of their domain
(read-only to them on the pages) with a valid form, and so chose a command that
the worker ran with the superuser's rights. These tests post those forms and
prove nothing changes; the superuser's own post shows the form is valid.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from tests.factories import make_domain, make_mailbox, make_user

if TYPE_CHECKING:
    from accounts.models import User
    from retrieval.models import Mailbox

pytestmark = pytest.mark.django_db

COMMAND = "/usr/bin/touch /tmp/fetchweb-escalation-probe"


@pytest.fixture
def cast(settings: Any) -> dict[str, Any]:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    domain = make_domain("tenant-one.example")
    staff = make_user("staff1@tenant-one.example", domain=domain, is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="retrieval")
    )
    domain.admins.add(staff)
    root = make_user("root@operator.example", superuser=True)
    alice = make_user("alice@tenant-one.example", domain=domain)
    return {
        "staff": staff,
        "root": root,
        "alice": alice,
        "root_box": make_mailbox(root, domain=domain, host="1.1.1.1"),
        "alice_box": make_mailbox(alice, domain=domain, host="1.1.1.1"),
    }


def _admin_form(mailbox: Mailbox, **overrides: str) -> dict[str, str]:
    """The admin's change form for ``mailbox`` as a browser posts it back."""
    data = {
        "name": mailbox.name,
        "owner": str(mailbox.owner_id),
        "domain": str(mailbox.domain_id or ""),
        "enabled": "on",
        "poll_interval": str(mailbox.poll_interval),
        "protocol": mailbox.protocol,
        "host": mailbox.host,
        "port": str(mailbox.port or ""),
        "tls_mode": mailbox.tls_mode,
        "verify_tls": "on",
        "ca_file": mailbox.ca_file,
        "auth": mailbox.auth,
        "username": mailbox.username,
        "new_password": "",
        "folders": json.dumps(mailbox.folders),
        "timeout": str(mailbox.timeout),
        "delivery_kind": mailbox.delivery_kind,
        "delivery_host": mailbox.delivery_host,
        "delivery_port": str(mailbox.delivery_port),
        "recipient": mailbox.recipient,
        "options": json.dumps(mailbox.options),
        "rules-TOTAL_FORMS": "0",
        "rules-INITIAL_FORMS": "0",
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


def _post(user: User, mailbox: Mailbox, **overrides: str) -> Any:
    client = Client()
    client.force_login(user)
    url = reverse("admin:retrieval_mailbox_change", args=[mailbox.pk])
    return client.post(url, _admin_form(mailbox, **overrides))


def test_the_form_is_valid_when_a_superuser_sends_it(cast: dict[str, Any]) -> None:
    """The control: the same body does change the row for a superuser, so the
    refusals below are refusals, not a broken form."""
    response = _post(
        cast["root"],
        cast["root_box"],
        delivery_kind="mda",
        options=json.dumps({"user": {"mda": COMMAND}}),
    )
    assert response.status_code == 302, response.content[:2000]
    cast["root_box"].refresh_from_db()
    assert cast["root_box"].options["user"]["mda"] == COMMAND


def test_staff_cannot_set_a_command_on_the_superusers_mailbox(
    cast: dict[str, Any],
) -> None:
    _post(
        cast["staff"],
        cast["root_box"],
        delivery_kind="mda",
        options=json.dumps({"user": {"mda": COMMAND}}),
    )
    cast["root_box"].refresh_from_db()
    assert cast["root_box"].options.get("user", {}).get("mda") != COMMAND
    assert cast["root_box"].delivery_kind != "mda"


def test_staff_cannot_hand_a_mailbox_to_the_superuser(cast: dict[str, Any]) -> None:
    """Giving alice's mailbox to root would give it root's rights (commands,
    private addresses)."""
    _post(cast["staff"], cast["alice_box"], owner=str(cast["root"].pk))
    cast["alice_box"].refresh_from_db()
    assert cast["alice_box"].owner_id == cast["alice"].pk
