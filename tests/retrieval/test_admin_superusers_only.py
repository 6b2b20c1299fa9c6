"""Django's admin is for superusers only (issue 11 item 1).

The admin edits rows without the tenancy rules of the mailbox pages, so a staff
flag on a domain administrator must not open it: every admin URL, for every
registered model, GET and POST, sends them to the admin's login page and changes
nothing. The URL list is generated from ``admin.site._registry`` so a model
registered later is covered without editing this file.
"""

from __future__ import annotations

import uuid

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client, RequestFactory
from django.urls import reverse

from accounts.models import AuditEvent, DeliveryTarget
from fetchweb.checks import staff_without_superuser
from retrieval.models import Mailbox, MultidropRule, PollRun, SeenMessage
from tests.factories import make_domain, make_mailbox, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _quick_settings(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": uuid.uuid4().hex,
        }
    }


@pytest.fixture
def world():
    """Two tenants, a superuser's mailbox, and one row of every registered model."""

    class World:
        root = make_user("root@example.net", superuser=True)
        domain = make_domain("example.org")
        other = make_domain("other.example")
        staff_admin = make_user("bob@example.org", domain=domain, is_staff=True)
        domain_admin = make_user("dora@example.org", domain=domain)
        alice = make_user("alice@example.org", domain=domain)
        victim = make_user("vic@other.example", domain=other)
        root_box = make_mailbox(root, host="1.1.1.1", username="root-remote")
        own_box = make_mailbox(alice, domain=domain, host="1.1.1.1")
        foreign_box = make_mailbox(victim, domain=other, host="1.1.1.1")

    World.domain.admins.add(World.staff_admin, World.domain_admin)
    World.target = DeliveryTarget.objects.create(
        name="Main relay", kind="smtp", host="relay.example.net", port=25
    )
    run = PollRun.objects.create(mailbox=World.own_box)
    SeenMessage.objects.create(mailbox=World.own_box, folder="INBOX", uid="1")
    MultidropRule.objects.create(mailbox=World.own_box, position=0, remote="a")
    Group.objects.create(name="operators")
    World.run = run
    return World


def _some_object(model):
    return model._default_manager.order_by("pk").first()


def _admin_urls(world) -> list[str]:
    """Every page of the admin: index, each app, and for each registered model
    its change list, add, change, delete and history pages."""
    urls = [reverse("admin:index"), reverse("admin:password_change")]
    apps = {model._meta.app_label for model in admin.site._registry}
    urls += [reverse("admin:app_list", args=[label]) for label in sorted(apps)]
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        urls.append(reverse("admin:{}_{}_changelist".format(*info)))
        urls.append(reverse("admin:{}_{}_add".format(*info)))
        obj = _some_object(model)
        assert obj is not None, f"the fixture has no {model.__name__} row"
        for page in ("change", "delete", "history"):
            urls.append(reverse(f"admin:{info[0]}_{info[1]}_{page}", args=[obj.pk]))
    return urls


def _refused(response) -> bool:
    """The admin's answer to someone it does not admit: its login page."""
    return response.status_code == 302 and response["Location"].startswith(
        reverse("admin:login")
    )


def _snapshot():
    return {
        model: sorted(model._default_manager.values_list("pk", flat=True))
        for model in admin.site._registry
    }


def test_every_registered_model_is_covered(world):
    # Guard for the generated list: the models this project registers.
    names = {m.__name__ for m in admin.site._registry}
    assert {
        "Mailbox",
        "PollRun",
        "SeenMessage",
        "User",
        "Domain",
        "DeliveryTarget",
    } <= names


@pytest.mark.parametrize("role", ["anonymous", "user", "domain_admin", "staff_admin"])
def test_every_admin_page_refuses_anyone_but_a_superuser(world, role):
    client = Client()
    if role != "anonymous":
        client.force_login(
            {"user": world.alice, "domain_admin": world.domain_admin}.get(
                role, world.staff_admin
            )
        )
    pages = _admin_urls(world)
    let_in = [url for url in pages if not _refused(client.get(url))]
    assert let_in == []


def test_every_admin_post_is_refused_to_a_staff_domain_admin(world):
    client = Client()
    client.force_login(world.staff_admin)
    before = _snapshot()
    owner_before = Mailbox.objects.get(pk=world.root_box.pk).owner_id
    let_in = []
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        obj = _some_object(model)
        posts = [
            (
                reverse("admin:{}_{}_changelist".format(*info)),
                {
                    "action": "delete_selected",
                    "_selected_action": [obj.pk],
                    "post": "yes",
                },
            ),
            (
                reverse("admin:{}_{}_add".format(*info)),
                {"mailbox": world.foreign_box.pk},
            ),
            (
                reverse("admin:{}_{}_change".format(*info), args=[obj.pk]),
                {"owner": world.staff_admin.pk, "host": "127.0.0.1"},
            ),
            (
                reverse("admin:{}_{}_delete".format(*info), args=[obj.pk]),
                {"post": "yes"},
            ),
        ]
        if model is Mailbox:
            posts.append(
                (
                    reverse("admin:retrieval_mailbox_changelist"),
                    {"action": "poll_now", "_selected_action": [world.root_box.pk]},
                )
            )
        let_in += [url for url, data in posts if not _refused(client.post(url, data))]
    assert let_in == []
    assert _snapshot() == before
    assert Mailbox.objects.get(pk=world.root_box.pk).owner_id == owner_before


def test_the_admin_login_form_refuses_a_staff_account_that_is_not_a_superuser(world):
    world.staff_admin.set_password("correct horse battery")
    world.staff_admin.save()
    client = Client()
    response = client.post(
        reverse("admin:login"),
        {"username": "bob@example.org", "password": "correct horse battery"},
    )
    assert response.status_code == 200
    assert "for superusers only" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_an_inactive_superuser_is_refused(world):
    world.root.is_active = False
    world.root.save()
    client = Client()
    client.force_login(world.root)
    assert _refused(client.get(reverse("admin:index")))


def test_a_superuser_still_has_every_page(world):
    client = Client()
    client.force_login(world.root)
    answers = {url: client.get(url).status_code for url in _admin_urls(world)}
    # 403 only where a model admin itself forbids it: polls are not added by hand,
    # and the audit log is read-only.
    assert {url: code for url, code in answers.items() if code != 200} == {
        reverse("admin:retrieval_pollrun_add"): 403,
        reverse("admin:accounts_auditevent_add"): 403,
        **{
            url: 403
            for url in answers
            if url.startswith("/admin/accounts/auditevent/")
            and url.endswith("/delete/")
        },
    }


class StaffCheckTests:
    def test_it_warns_about_staff_accounts_that_are_not_superusers(self, world):
        warnings = staff_without_superuser()
        assert [w.id for w in warnings] == ["fetchweb.W001"]
        assert "bob@example.org" in warnings[0].msg
        assert "root@example.net" not in warnings[0].msg

    def test_it_is_quiet_when_only_superusers_have_staff_status(self, world):
        world.staff_admin.is_staff = False
        world.staff_admin.save()
        assert staff_without_superuser() == []

    def test_manage_py_check_reports_it(self, world):
        with pytest.raises(SystemCheckError, match=r"fetchweb\.W001"):
            call_command("check", "--fail-level", "WARNING")


def test_the_pages_link_to_the_admin_for_superusers_only(world):
    client = Client()
    admin_link = f'href="{reverse("admin:index")}"'
    client.force_login(world.staff_admin)
    assert admin_link not in client.get(reverse("home")).content.decode()
    client.force_login(world.root)
    assert admin_link in client.get(reverse("home")).content.decode()


def test_the_user_form_says_what_staff_status_gives(world):
    client = Client()
    client.force_login(world.root)
    url = reverse("admin:accounts_user_change", args=[world.staff_admin.pk])
    assert "Gives nothing on its own" in client.get(url).content.decode()


def test_delivery_targets_in_the_admin_are_a_superusers(world):
    target = world.target
    change = reverse("admin:accounts_deliverytarget_change", args=[target.pk])
    edited = {"name": "Mine", "kind": "lmtp", "host": "10.0.0.9", "port": 24}

    staff = Client()
    staff.force_login(world.staff_admin)  # is_staff, and a domain administrator
    assert _refused(staff.get(reverse("admin:accounts_deliverytarget_changelist")))
    assert _refused(staff.get(change))
    assert _refused(staff.post(change, edited))
    assert _refused(staff.post(reverse("admin:accounts_deliverytarget_add"), edited))
    target.refresh_from_db()
    assert (target.name, target.host) == ("Main relay", "relay.example.net")
    assert DeliveryTarget.objects.count() == 1
    # The model admin says no by itself too, should the site ever admit staff.
    request = RequestFactory().get("/")
    request.user = world.staff_admin
    model_admin = admin.site._registry[DeliveryTarget]
    assert not model_admin.has_module_permission(request)
    assert not any(
        allowed(request)
        for allowed in (
            model_admin.has_view_permission,
            model_admin.has_add_permission,
            model_admin.has_change_permission,
            model_admin.has_delete_permission,
        )
    )

    root = Client()
    root.force_login(world.root)
    assert "Delivery targets" in root.get(reverse("admin:index")).content.decode()
    assert root.post(change, edited).status_code == 302
    target.refresh_from_db()
    assert (target.name, target.kind, target.host, target.port) == (
        "Mine",
        "lmtp",
        "10.0.0.9",
        24,
    )
    # Written through the services: audited like the console page's writes.
    audited = AuditEvent.objects.filter(
        action=AuditEvent.Action.UPDATE,
        object_type=target._meta.label_lower,
        object_id=str(target.pk),
    ).get()
    assert audited.actor == world.root and "host" in audited.summary
    # A target a domain uses is kept (the database protects it); a free one goes.
    world.domain.default_delivery = target
    world.domain.save()
    delete = reverse("admin:accounts_deliverytarget_delete", args=[target.pk])
    assert root.post(delete, {"post": "yes"}).status_code != 302
    assert DeliveryTarget.objects.filter(pk=target.pk).exists()
    world.domain.default_delivery = None
    world.domain.save()
    assert root.post(delete, {"post": "yes"}).status_code == 302
    assert not DeliveryTarget.objects.exists()
