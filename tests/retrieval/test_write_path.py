"""One write path (issue 12 item 1): only retrieval/services/ changes state.

The pages, the forms, the admin, the selectors and the management commands call
service functions; none of them saves, creates, updates or deletes a row by
itself. Checked two ways:

* statically: every such module is parsed, and a call of a write method
  (``.save(``, ``.create(``, ...) fails the test unless the allow-list below
  names it, with the reason it is not a model write;
* for the admin, whose writes are Django's own methods: every ModelAdmin of our
  models overrides them (save_model, delete_model, delete_queryset and, with
  inlines, save_formset) with a call into the services; and what they now do is
  checked below.
"""

from __future__ import annotations

import ast
import inspect
import io
import textwrap
import uuid
from pathlib import Path

import pytest
from django.contrib import admin
from django.core.management import CommandError, call_command
from django.test import RequestFactory
from django.urls import reverse

from accounts.models import User
from retrieval import services
from retrieval.models import Mailbox, MultidropRule
from tests.factories import make_domain, make_mailbox, make_user
from tests.retrieval.test_remote_identity import _admin_data, _form_errors, _polling

ROOT = Path(__file__).resolve().parents[2]

# The modules that must not write by themselves (the selectors read only).
CHECKED = [
    "retrieval/views.py",
    "retrieval/forms.py",
    "retrieval/admin.py",
    "retrieval/selectors.py",
    "retrieval/permissions.py",
    "retrieval/tasks.py",
    "accounts/admin.py",
    "retrieval/console.py",
    "retrieval/console_views.py",
    "retrieval/rcfile_views.py",
    "retrieval/rcimport.py",  # the importer's checks: the writes are services'
    "retrieval/rcexport.py",
    "accounts/views.py",
    "accounts/forms.py",  # the password forms save through services
    "accounts/people_views.py",  # domains and people in the browser
    "accounts/people_forms.py",
    "accounts/timezones.py",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "retrieval/api").glob("*.py")),
    *sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "retrieval/management/commands").glob("*.py")
    ),
]

WRITES = {
    "save",
    "create",
    "update",
    "delete",
    "bulk_create",
    "bulk_update",
    "get_or_create",
    "update_or_create",
}

# (module, the call's receiver as written) -> why it is not a model write.
ALLOWED: dict[tuple[str, str], str] = {}


def _write_calls(path: str) -> list[tuple[int, str]]:
    tree = ast.parse((ROOT / path).read_text(), filename=path)
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in WRITES
        ):
            receiver = ast.unparse(node.func.value)
            if (path, f"{receiver}.{node.func.attr}") not in ALLOWED:
                found.append((node.lineno, ast.unparse(node.func)))
    return found


def test_the_checked_modules_exist():
    missing = [path for path in CHECKED if not (ROOT / path).is_file()]
    assert not missing
    assert "retrieval/management/commands/import_fetchmailrc.py" in CHECKED


@pytest.mark.parametrize("path", CHECKED)
def test_no_page_form_admin_or_command_writes_a_row_itself(path):
    calls = _write_calls(path)
    assert not calls, (
        f"{path} writes rows itself: "
        + ", ".join(f"line {line}: {call}(...)" for line, call in calls)
        + ". Call a function of retrieval/services/ instead."
    )


def test_the_check_finds_a_write(tmp_path, monkeypatch):
    # The test of the test: a view that saves is caught.
    module = tmp_path / "retrieval" / "bad.py"
    module.parent.mkdir()
    module.write_text(
        "def view(request, mailbox):\n"
        "    mailbox.save()\n"
        "    Mailbox.objects.filter(pk=1).update(enabled=False)\n"
        "    return mailbox.rules.all().delete()\n"
    )
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert [line for line, _ in _write_calls("retrieval/bad.py")] == [2, 3, 4]


def test_allowed_calls_say_why():
    assert all(reason.strip() for reason in ALLOWED.values())


# --- the admin ----------------------------------------------------------------------

OUR_APPS = {"accounts", "retrieval"}


def _ours(admin_class: type, name: str) -> bool:
    """Is ``name`` defined by one of our classes (not inherited from Django's)?"""
    return getattr(admin_class, name).__module__.split(".")[0] in OUR_APPS


def _source(function) -> str:
    return textwrap.dedent(inspect.getsource(function))


def _superuser_request():
    request = RequestFactory().get("/")
    request.user = User(email="root@example.org", is_superuser=True, is_active=True)
    return request


def _our_admins():
    return [
        (model, model_admin)
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in OUR_APPS
    ]


def test_our_models_are_in_the_admin():
    names = {model.__name__ for model, _ in _our_admins()}
    assert {"Mailbox", "PollRun", "SeenMessage", "User", "Domain"} <= names


READ_ONLY_ADMINS = {"AuditEventAdmin"}


@pytest.mark.parametrize(
    "model_admin",
    [model_admin for _, model_admin in _our_admins()],
    ids=lambda model_admin: type(model_admin).__name__,
)
def test_every_admin_write_goes_through_the_services(model_admin):
    request = _superuser_request()
    cls = type(model_admin)
    writes = []
    if model_admin.has_add_permission(request) or model_admin.has_change_permission(
        request
    ):
        writes.append("save_model")
        if model_admin.inlines:
            writes.append("save_formset")
    if model_admin.has_delete_permission(request):
        writes += ["delete_model", "delete_queryset"]
    # Only the audit log's admin is read-only, even for superusers; any other
    # admin that stopped writing would be a change to review.
    assert (not writes) == (cls.__name__ in READ_ONLY_ADMINS), (cls.__name__, writes)
    inherited = [name for name in writes if not _ours(cls, name)]
    assert not inherited, f"{cls.__name__} writes with Django's own {inherited}"
    for name in writes:
        source = ast.unparse(ast.parse(_source(getattr(cls, name))))
        assert "services." in source, f"{cls.__name__}.{name} calls no service"


@pytest.fixture
def _quick(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": uuid.uuid4().hex,
        }
    }


def _rules_data(*rules: tuple[int, str, str]) -> dict[str, str]:
    data = {
        "rules-TOTAL_FORMS": str(len(rules)),
        "rules-INITIAL_FORMS": "0",
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
    }
    for n, (position, remote, local) in enumerate(rules):
        data |= {
            f"rules-{n}-position": str(position),
            f"rules-{n}-remote": remote,
            f"rules-{n}-local": local,
        }
    return data


@pytest.mark.django_db
@pytest.mark.usefixtures("_quick")
class AdminWriteTests:
    def test_the_rules_inline_replaces_the_rules_in_order(self, client):
        client.force_login(make_user(superuser=True))
        mailbox = make_mailbox()
        url = reverse("admin:retrieval_mailbox_change", args=[mailbox.pk])
        rules = _rules_data((5, "jane", ""), (1, "jdoe", "joe"))
        response = client.post(url, _admin_data(mailbox) | rules)
        assert response.status_code == 302, _form_errors(response)
        stored = MultidropRule.objects.filter(mailbox=mailbox).order_by("position")
        assert [(r.position, r.remote, r.local) for r in stored] == [
            (0, "jdoe", "joe"),
            (1, "jane", ""),
        ]

    def test_the_rules_inline_keeps_and_deletes_stored_rules(self, client):
        client.force_login(make_user(superuser=True))
        mailbox = make_mailbox()
        services.mailbox_rules_replace(
            mailbox=mailbox, rules=[("jane", ""), ("jdoe", "joe")]
        )
        jane, jdoe = MultidropRule.objects.filter(mailbox=mailbox).order_by("position")
        url = reverse("admin:retrieval_mailbox_change", args=[mailbox.pk])
        data = _rules_data((0, "jane", ""), (1, "jdoe", "joe")) | {
            "rules-INITIAL_FORMS": "2",
            "rules-0-id": str(jane.pk),
            "rules-0-mailbox": str(mailbox.pk),
            "rules-0-DELETE": "on",
            "rules-1-id": str(jdoe.pk),
            "rules-1-mailbox": str(mailbox.pk),
        }
        response = client.post(url, _admin_data(mailbox) | data)
        assert response.status_code == 302, _form_errors(response)
        stored = MultidropRule.objects.filter(mailbox=mailbox)
        assert [(r.position, r.remote, r.local) for r in stored] == [(0, "jdoe", "joe")]

    def test_a_mailbox_being_polled_is_not_deleted(self, client):
        client.force_login(make_user(superuser=True))
        mailbox = make_mailbox()
        _polling(mailbox)
        url = reverse("admin:retrieval_mailbox_delete", args=[mailbox.pk])
        response = client.post(url, {"post": "yes"}, follow=True)
        assert Mailbox.objects.filter(pk=mailbox.pk).exists()
        assert "being polled right now" in response.content.decode()

    def test_the_bulk_delete_keeps_a_mailbox_being_polled(self, client):
        client.force_login(make_user(superuser=True))
        busy, idle = make_mailbox(), make_mailbox()
        _polling(busy)
        response = client.post(
            reverse("admin:retrieval_mailbox_changelist"),
            {
                "action": "delete_selected",
                "_selected_action": [busy.pk, idle.pk],
                "post": "yes",
            },
            follow=True,
        )
        assert list(Mailbox.objects.values_list("pk", flat=True)) == [busy.pk]
        assert "being polled right now" in response.content.decode()

    def test_the_admin_refuses_a_domain_the_owner_has_nothing_to_do_with(self, client):
        client.force_login(make_user(superuser=True))
        mailbox = make_mailbox()
        other = make_domain("elsewhere.example.net")
        url = reverse("admin:retrieval_mailbox_change", args=[mailbox.pk])
        response = client.post(url, _admin_data(mailbox, domain=str(other.pk)))
        assert "neither a member nor an administrator" in _form_errors(response)
        mailbox.refresh_from_db()
        assert mailbox.domain_id is None


@pytest.mark.django_db
@pytest.mark.usefixtures("_quick")
class ServiceRuleTests:
    def test_owner_and_domain_must_agree(self):
        owner = make_user()
        mailbox = make_mailbox(owner)
        mailbox.domain = make_domain()
        with pytest.raises(services.OwnerDomainMismatch):
            services.mailbox_save(mailbox=mailbox)

    def test_a_domain_the_owner_administers_is_fine(self):
        owner = make_user()
        mailbox = make_mailbox(owner)
        mailbox.domain = make_domain(admins=(owner,))
        services.mailbox_save(mailbox=mailbox)
        assert Mailbox.objects.get(pk=mailbox.pk).domain_id == mailbox.domain.pk

    def test_a_row_stored_before_its_owner_moved_can_still_be_saved(self):
        mailbox = make_mailbox(domain=make_domain())
        mailbox.enabled = False
        services.mailbox_save(mailbox=mailbox)

    def test_a_delivery_program_only_for_a_superusers_mailbox(self):
        mailbox = make_mailbox(delivery_kind=Mailbox.DeliveryKind.MDA)
        with pytest.raises(services.ServerCommandRefused):
            services.mailbox_save(mailbox=mailbox, mda="/usr/bin/procmail")
        root = make_user(superuser=True)
        theirs = make_mailbox(root, delivery_kind=Mailbox.DeliveryKind.MDA)
        with pytest.raises(services.ServerCommandRefused):
            services.mailbox_save(
                mailbox=theirs, mda="/usr/bin/procmail", editor=make_user()
            )
        services.mailbox_save(mailbox=theirs, mda="/usr/bin/procmail", editor=root)
        theirs.refresh_from_db()
        assert theirs.options["user"]["mda"] == "/usr/bin/procmail"

    def test_the_importer_refuses_a_domain_the_owner_has_nothing_to_do_with(
        self, tmp_path
    ):
        root = make_user(superuser=True)
        owner = make_user()
        domain = make_domain()
        rcfile = tmp_path / "rc"
        rcfile.write_text("poll pop.example.net proto pop3 user joe password pw\n")
        with pytest.raises(CommandError, match="neither a member nor an admin"):
            call_command(
                "import_fetchmailrc",
                str(rcfile),
                owner=owner.email,
                domain=domain.name,
                as_email=root.email,
                stdout=io.StringIO(),
            )
        assert not Mailbox.objects.exists()


# Functions of the package that take a positional argument, and why.
POSITIONAL = {
    "mailbox_spec": "reads a row into the engine's spec, writes nothing",
}


def test_service_functions_take_keyword_arguments_only():
    positional = []
    for name in services.__all__:
        function = getattr(services, name)
        if not inspect.isfunction(function) or name in POSITIONAL:
            continue
        parameters = inspect.signature(inspect.unwrap(function)).parameters.values()
        if any(p.kind is not inspect.Parameter.KEYWORD_ONLY for p in parameters):
            positional.append(name)
    assert not positional


@pytest.mark.django_db
@pytest.mark.usefixtures("_quick")
class UserMoveTests:
    def test_a_person_who_changes_domain_takes_their_mailboxes_along(self):
        old, new = make_domain(), make_domain()
        person = make_user(domain=old)
        mailbox = make_mailbox(person, domain=old)
        person.domain = new
        services.user_save(user=person)
        mailbox.refresh_from_db()
        assert mailbox.domain_id == new.pk

    def test_mailboxes_of_a_domain_they_administer_stay(self):
        old, new = make_domain(), make_domain()
        person = make_user(domain=old)
        old.admins.add(person)
        mailbox = make_mailbox(person, domain=old)
        person.domain = new
        services.user_save(user=person)
        mailbox.refresh_from_db()
        assert mailbox.domain_id == old.pk

    def test_the_admin_moves_them_too(self, client):
        client.force_login(make_user(superuser=True))
        old, new = make_domain(), make_domain()
        person = make_user(domain=old)
        mailbox = make_mailbox(person, domain=old)
        url = reverse("admin:accounts_user_change", args=[person.pk])
        data = {
            "email": person.email,
            "full_name": "",
            "domain": str(new.pk),
            "is_active": "on",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        }
        response = client.post(url, data)
        assert response.status_code == 302, _form_errors(response)
        mailbox.refresh_from_db()
        assert mailbox.domain_id == new.pk


@pytest.mark.django_db
@pytest.mark.usefixtures("_quick")
class DomainAdminTests:
    def test_the_admin_sets_a_domains_administrators_through_the_service(self, client):
        client.force_login(make_user(superuser=True))
        first, second = make_user(), make_user()
        domain = make_domain(admins=(first,))
        url = reverse("admin:accounts_domain_change", args=[domain.pk])
        response = client.post(url, {"name": domain.name, "admins": [second.pk]})
        assert response.status_code == 302, _form_errors(response)
        assert list(domain.admins.all()) == [second]

    def test_a_new_domain_gets_its_administrators(self, client):
        client.force_login(make_user(superuser=True))
        person = make_user()
        url = reverse("admin:accounts_domain_add")
        response = client.post(url, {"name": "new.example.net", "admins": [person.pk]})
        assert response.status_code == 302, _form_errors(response)
        assert list(person.administered_domains.values_list("name", flat=True)) == [
            "new.example.net"
        ]
