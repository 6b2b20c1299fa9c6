"""A mailbox's "delete after N days" (with keep): form and API rule, pages, spec,
and the rcfile round trip through export_fetchmailrc and import_fetchmailrc.

The polls themselves run against Dovecot in
tests/live/test_delete_after_days_service.py.
"""

from __future__ import annotations

import html
import io
import uuid
from typing import Any

import pytest
from django.core.management import call_command
from django.forms.models import model_to_dict
from django.test import Client
from django.urls import reverse

from retrieval import services
from retrieval.admin import MailboxForm as AdminMailboxForm
from retrieval.models import Mailbox, MessageResult, PollRun
from retrieval.services.specs import mailbox_spec
from tests.factories import make_mailbox, make_user

pytestmark = pytest.mark.django_db

PUBLIC = "1.1.1.1"
NEEDS_KEEP = "Deleting after a number of days works only with 'keep'"


@pytest.fixture(autouse=True)
def _quick(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": uuid.uuid4().hex,
        }
    }


def _api(user: Any) -> tuple[Client, dict[str, Any]]:
    token = services.token_create(user=user, name="test")[1]
    return Client(), {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_the_api_takes_it_with_keep_and_refuses_it_in_words_without() -> None:
    client, auth = _api(make_user())
    body = {"host": PUBLIC, "username": "anna", "password": "pw"}
    url = reverse("api:mailbox-list")

    refused = client.post(
        url, {**body, "delete_after_days": 30}, content_type="application/json", **auth
    )
    assert refused.status_code == 400
    assert NEEDS_KEEP in refused.json()["fields"]["delete_after_days"][0]
    zero = client.post(
        url,
        {**body, "keep": True, "delete_after_days": 0},
        content_type="application/json",
        **auth,
    )
    assert zero.status_code == 400
    assert "delete_after_days" in zero.json()["fields"]
    assert not Mailbox.objects.exists()

    made = client.post(
        url,
        {**body, "keep": True, "delete_after_days": 30},
        content_type="application/json",
        **auth,
    )
    assert made.status_code == 201, made.json()
    assert made.json()["delete_after_days"] == 30
    box = Mailbox.objects.get()
    assert box.delete_after_days == 30
    spec = mailbox_spec(box)
    assert (spec.keep, spec.delete_after_days) == (True, 30)

    detail = reverse("api:mailbox-detail", args=[box.pk])
    cleared = client.patch(
        detail, {"delete_after_days": None}, content_type="application/json", **auth
    )
    assert cleared.status_code == 200, cleared.json()
    box.refresh_from_db()
    assert box.delete_after_days is None
    assert mailbox_spec(box).delete_after_days is None


def test_the_form_page_refuses_it_without_keep() -> None:
    user = make_user("dora@example.org")
    box = make_mailbox(user, password="pw", host=PUBLIC, keep=False)
    client = Client()
    client.force_login(user)
    url = reverse("retrieval:mailbox-edit", args=[box.pk])
    page = client.get(url)
    assert "Delete after (days)" in page.content.decode()
    data = {
        name: value
        for name, value in page.context["form"].initial.items()
        if value is not None and name != "folders"
    }
    data.update({"delete_after_days": "14", "poll_interval": box.poll_interval})
    answer = client.post(url, data)
    assert answer.status_code == 200
    assert NEEDS_KEEP in html.unescape(answer.content.decode())
    box.refresh_from_db()
    assert box.delete_after_days is None

    data["keep"] = "on"
    assert client.post(url, data).status_code == 302
    box.refresh_from_db()
    assert (box.keep, box.delete_after_days) == (True, 14)
    shown = client.get(reverse("retrieval:mailbox-detail", args=[box.pk]))
    assert (
        "kept on the server, deleted 14 days after delivery" in shown.content.decode()
    )


def test_the_run_page_names_a_message_deleted_by_age() -> None:
    user = make_user("erin@example.org")
    box = make_mailbox(user, password="pw", host=PUBLIC, keep=True)
    run = PollRun.objects.create(
        mailbox=box, outcome=PollRun.Outcome.NOMAIL, exit_code=1, deleted=1
    )
    MessageResult.objects.create(
        run=run,
        uid="17",
        status="expired",
        deleted=True,
        listener_reply="delivered 2026-11-01 12:00 UTC, 31 days ago; "
        "deleted after 30 days (keep)",
    )
    client = Client()
    client.force_login(user)
    page = client.get(reverse("retrieval:run-detail", args=[box.pk, run.pk]))
    text = page.content.decode()
    assert 'class="status-expired"' in text
    assert "deleted after the kept days" in text
    assert "31 days ago; deleted after 30 days (keep)" in text


def _command(name: str, *args: str, **options: Any) -> str:
    out = io.StringIO()
    call_command(name, *args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def test_export_writes_a_comment_fetchmail_skips_and_import_reads_it_back(
    tmp_path: Any,
) -> None:
    owner = make_user("fay@example.org")
    make_mailbox(
        owner, password="pw", host="mail.example.org", keep=True, delete_after_days=45
    )
    text = _command("export_fetchmailrc", owner=owner.email)
    assert "# fetchweb: delete-after-days 45" in text
    Mailbox.objects.all().delete()

    rc = tmp_path / "rc"
    rc.write_text(text)
    _command("import_fetchmailrc", str(rc), owner=owner.email, netrc="/nonexistent")
    box = Mailbox.objects.get()
    assert (box.keep, box.delete_after_days) == (True, 45)
    assert "delete_after_days" not in (box.options.get("user") or {})


def test_the_admin_form_holds_the_same_rule() -> None:
    box = make_mailbox(make_user("gil@example.org"), password="pw", host=PUBLIC)
    data = {k: v for k, v in model_to_dict(box).items() if v is not None}
    data["folders"] = "[]"
    data["options"] = "{}"
    form = AdminMailboxForm({**data, "delete_after_days": 10}, instance=box)
    assert not form.is_valid()
    assert NEEDS_KEEP in form.errors["delete_after_days"][0]
    form = AdminMailboxForm(
        {**data, "keep": True, "delete_after_days": 10}, instance=box
    )
    assert form.is_valid(), form.errors
