"""The authorization matrix (issue 11): every URL x role x object owner x GET/POST.

Each probe asserts the status (and where a redirect goes) from the tables of
``tests/security/matrix.py``, that the response names nothing the role may not
see (mailbox names, hosts, remote user names, greetings, transcripts, listener
replies, rules, UIDs, owners, other domains), and that a refused request, or any
request that is not an allowed change, left the database as it was.

The rows are made once for the module and rolled back at its end; each probe
runs in its own savepoint, so a probe that deletes a mailbox cannot disturb the
next one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core import mail
from django.db import transaction
from django.test import Client
from django.test.utils import override_settings
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent, DeliveryTarget, Domain, User
from retrieval import services
from retrieval.models import (
    ConnectionTest,
    Mailbox,
    MessageResult,
    MultidropRule,
    PollRun,
    SeenMessage,
)
from retrieval.tasks import poll_mailbox, probe_connection
from tests.security import matrix as m

if TYPE_CHECKING:
    from collections.abc import Iterator

PUBLIC = "1.1.1.1"  # a public address literal: the network policy passes it without DNS
MISSING = 999_999_999
PATTERNS = m.url_patterns()


# --- the rows ------------------------------------------------------------------------


@dataclass
class World:
    users: dict[str, int] = field(default_factory=dict)
    domains: dict[str, int] = field(default_factory=dict)
    mailboxes: dict[str, int] = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)
    probes: dict[str, int] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    group: int = 0
    audit: int = 0
    target: int = 0
    sessions: dict[str, str] = field(default_factory=dict)  # role -> session key
    baseline: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _build() -> World:
    world = World()
    domains = {
        key: Domain.objects.create(name=name) for key, name in m.DOMAIN_NAMES.items()
    }
    world.domains = {key: d.pk for key, d in domains.items()}
    home: dict[str, str | None] = {
        "alice": "dom1",
        "peer": "dom1",
        "bob": "dom2",
        "admin1": "dom1",
        "admin2": "dom2",
        "staff1": "dom1",
        "root": None,
    }
    users: dict[str, User] = {}
    for role, email in m.EMAILS.items():
        # No password: force_login needs none, and hashing seven would be slow.
        where = home[role]
        dom = domains[where] if where else None
        if role == "root":
            users[role] = User.objects.create_superuser(email, None)
        else:
            users[role] = User.objects.create_user(
                email, None, domain=dom, is_staff=role == "staff1"
            )
    domains["dom1"].admins.add(users["admin1"], users["staff1"])
    domains["dom2"].admins.add(users["admin2"])
    # What a site gives a domain administrator it lets into the admin: the
    # mailbox models, not the accounts.
    users["staff1"].user_permissions.add(
        *Permission.objects.filter(content_type__app_label="retrieval")
    )
    world.users = {role: u.pk for role, u in users.items()}
    group = Group.objects.create(name="GROUP-SECRET-site")
    world.group = group.pk
    world.audit = AuditEvent.objects.create(
        actor_label="AUDIT-SECRET-site", action=AuditEvent.Action.UPDATE
    ).pk
    # Offered to the domains' administrators (their defaults page lists it):
    # not a secret, but the admin's to edit, the superuser's only.
    world.target = DeliveryTarget.objects.create(
        name="Relay-site", host="relay.example.net", port=25
    ).pk
    mailbox_domain = {"alice": "dom1", "peer": "dom1", "bob": "dom2", "root": "dom1"}
    for owner in m.OWNERS:
        mailbox = Mailbox(
            owner=users[owner],
            domain=domains[mailbox_domain[owner]],
            name=f"MBNAME-{owner}",
            protocol=Mailbox.Protocol.IMAP,
            host=f"imap.{owner}-secret.example",
            username=f"remote-{owner}-secret",
        )
        mailbox.set_password(f"password-{owner}")
        mailbox.save()
        world.mailboxes[owner] = mailbox.pk
        MultidropRule.objects.create(
            mailbox=mailbox, remote=f"rule-secret-{owner}@remote.example", local=owner
        )
        run = PollRun.objects.create(
            mailbox=mailbox,
            outcome=PollRun.Outcome.ERROR,
            exit_code=3,
            finished_at=timezone.now(),
            greeting=f"* OK GREETING-SECRET-{owner}",
            transcript=f"S: * OK\nC: A1 LOGIN ********\nS: TRANSCRIPT-SECRET-{owner}",
            error=f"ERROR-SECRET-{owner}",
        )
        world.runs[owner] = run.pk
        probe = ConnectionTest.objects.create(
            mailbox=mailbox,
            status=ConnectionTest.Status.DONE,
            finished_at=timezone.now(),
            ok=False,
            greeting=f"* OK GREETING-SECRET-{owner}",
            error=f"ERROR-SECRET-{owner}",
            transcript=f"S: TRANSCRIPT-SECRET-{owner}",
        )
        world.probes[owner] = probe.pk
        MessageResult.objects.create(
            run=run,
            uid=f"UID-SECRET-{owner}",
            message_id=f"MSGID-SECRET-{owner}",
            size=10,
            recipients=[m.EMAILS[owner]],
            status="delivered",
            listener_reply=f"250 REPLY-SECRET-{owner}",
        )
        seen = SeenMessage.objects.create(
            mailbox=mailbox,
            uid=f"UID-SECRET-{owner}",
            message_id=f"MSGID-SECRET-{owner}",
        )
        world.seen[owner] = seen.pk
    return world


@pytest.fixture(scope="module")
def world(django_db_setup: None, django_db_blocker: Any) -> Iterator[World]:
    """The rows, once for the module, rolled back after its last probe."""
    with django_db_blocker.unblock(), transaction.atomic():
        built = _build()
        # One session per role, made here rather than per probe: a probe that
        # logs out deletes it only inside its own savepoint.
        for role, pk in built.users.items():
            client = Client()
            client.force_login(User.objects.get(pk=pk))
            built.sessions[role] = client.cookies[settings.SESSION_COOKIE_NAME].value
        # Every probe starts from these rows (each runs in a savepoint rolled
        # back after it), so one snapshot serves as everyone's "before".
        built.baseline = world_state()
        yield built
        transaction.set_rollback(True)


@dataclass
class Calls:
    polls: list[int] = field(default_factory=list)
    tests: list[int] = field(default_factory=list)


@pytest.fixture
def calls(
    db: None,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> Calls:
    """No poll or connection test leaves the process: they are recorded instead.
    A fresh cache per probe, so that the buttons' rate limit never carries over.
    A file broker whose folder exists, so that /healthz is ready in any checkout."""
    settings.REDIS_URL = ""
    queue = tmp_path_factory.getbasetemp() / "authz-broker-queue"
    queue.mkdir(exist_ok=True)
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(queue)}
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": uuid.uuid4().hex,
        }
    }
    recorded = Calls()

    def poll_request(*, mailbox: Mailbox) -> None:
        recorded.polls.append(mailbox.pk)

    monkeypatch.setattr(services, "mailbox_poll_request", poll_request)
    monkeypatch.setattr(
        probe_connection, "delay", lambda *a: recorded.tests.append(a[0])
    )
    monkeypatch.setattr(poll_mailbox, "delay", lambda *a: recorded.polls.append(a[0]))
    return recorded


# --- one probe -------------------------------------------------------------------------


def _object_ids(world: World, pattern: m.Pattern, owner: str) -> dict[str, str]:
    """The URL's parameters for ``owner``'s object."""
    if pattern.key == "accounts:password-reset-confirm":
        # A link that is not valid: some user id, a made-up token.
        return {"uidb64": "MQ", "token": "no-such-token"}
    if owner == "-":
        return {name: "no-such-page/" for name in pattern.params}  # the catch-all
    if pattern.key in m.PEOPLE_TARGETS:
        if "person_pk" in pattern.params:
            return {"person_pk": str(world.users.get(owner, MISSING))}
        if "domain_pk" in pattern.params:
            return {"domain_pk": str(world.domains.get(owner, MISSING))}
        return {}
    if pattern.key in m.API:
        table = {
            "api:run-detail": world.runs,
            "api:connection-test-detail": world.probes,
            "api:domain-detail": world.domains,
            "api:user-detail": world.users,
        }.get(pattern.key, world.mailboxes)
        return {"pk": str(table.get(owner, MISSING))}
    if pattern.key in m.RUN_PAGES:
        if owner == "missing":
            return {"pk": str(MISSING), "run_pk": str(MISSING)}
        box, _, run = owner.partition("+")
        run = run or box
        return {"pk": str(world.mailboxes[box]), "run_pk": str(world.runs[run])}
    if pattern.key in m.CONNECTION_TEST_PAGES:
        if owner == "missing":
            return {"pk": str(MISSING), "test_pk": str(MISSING)}
        box, _, probe = owner.partition("+")
        probe = probe or box
        return {
            "pk": str(world.mailboxes[box]),
            "test_pk": str(world.probes[probe]),
        }
    if pattern.params == ("pk",):
        return {"pk": str(world.mailboxes.get(owner, MISSING))}
    if pattern.key == "admin:app_list":
        return {"app_label": owner}
    if pattern.key == "admin:view_on_site":
        ct = ContentType.objects.get_for_model(Mailbox)
        return {"content_type_id": str(ct.pk), "object_id": str(world.mailboxes[owner])}
    if pattern.key == "admin:auth_user_password_change":
        return {"id": str(world.users[owner])}
    model = m.admin_model(pattern)
    assert model, pattern
    table = {
        "auth_group": {"site": world.group},
        "accounts_auditevent": {"site": world.audit},
        "accounts_user": world.users,
        "accounts_domain": world.domains,
        "accounts_deliverytarget": {"site": world.target},
        "retrieval_mailbox": world.mailboxes,
        "retrieval_pollrun": world.runs,
        "retrieval_seenmessage": world.seen,
    }[model]
    return {"object_id": str(table[owner])}


def concrete_url(world: World, pattern: m.Pattern, owner: str) -> str:
    values = _object_ids(world, pattern, owner) if pattern.params else {}
    if pattern.key in m.PEOPLE_TARGETS and not pattern.params:
        values = {}  # the domain goes in the POSTed form
    if pattern.name:
        return reverse(pattern.name, kwargs=values)
    return m.fill_route(pattern.route, values)


_ADMIN_MODELS: dict[str, Any] = {
    "auth_group": Group,
    "accounts_auditevent": AuditEvent,
    "accounts_user": User,
    "accounts_domain": Domain,
    "accounts_deliverytarget": DeliveryTarget,
    "retrieval_mailbox": Mailbox,
    "retrieval_pollrun": PollRun,
    "retrieval_seenmessage": SeenMessage,
}


def post_body(world: World, pattern: m.Pattern, owner: str) -> dict[str, Any]:
    """A plausible form for each POST: what a browser would send to do the thing."""
    key = pattern.key
    if key == "api:mailbox-list":
        return {**API_MAILBOX, "name": "ADDED-BY-PROBE", "owner": world.users[owner]}
    if key == "api:mailbox-detail":
        return {**API_MAILBOX, "name": "EDITED-BY-PROBE"}
    if key == "api:mailbox-rules":
        return {"rules": [{"remote": "probe@remote.example", "local": "probe"}]}
    if key in ("api:domain-list", "api:domain-detail"):
        return {"name": "probe-domain.example"}
    if key == "api:user-list":
        return {"email": "probe-person@probe.example", "password": "Probe-pass-123456"}
    if key == "api:user-detail":
        return {"full_name": "PROBE-NAME"}
    if key in m.API:
        return {}
    if key in ("login", "admin:login"):
        return {"username": "nobody@nowhere.example", "password": "wrong"}
    if key == "accounts:password-change":
        return {
            "old_password": "wrong",
            "new_password1": "Probe-pass-123456",
            "new_password2": "Probe-pass-123456",
        }
    if key == "accounts:password-reset":
        return {"email": "nobody@nowhere.example"}
    if key == "accounts:password-reset-confirm":
        return {
            "new_password1": "Probe-pass-123456",
            "new_password2": "Probe-pass-123456",
        }
    if key == "retrieval:rcfile-import":
        return {"text": API_RCFILE, "owner": str(world.users[owner])}
    if key == "retrieval:mailbox-add":
        return _mailbox_form(name="ADDED-BY-PROBE", owner=str(world.users[owner]))
    if key in m.PEOPLE_PAGES:
        return _people_form(world, key, owner)
    if key == "retrieval:mailbox-edit":
        return _mailbox_form(name="EDITED-BY-PROBE")
    if key == "retrieval:mailbox-bulk":
        return {"action": "pause", "ids": [str(world.mailboxes.get(owner, MISSING))]}
    if key == "retrieval:mailbox-rules":
        return {"rules": "probe@remote.example -> probe"}
    if key == "admin:password_change":
        return {
            "old_password": "wrong",
            "new_password1": "Probe-pass-123456",
            "new_password2": "Probe-pass-123456",
        }
    if key == "admin:auth_user_password_change":
        return {"password1": "Probe-pass-123456", "password2": "Other-pass-654321"}
    model = m.admin_model(pattern)
    if model and m.model_page_kind(pattern) == "delete":
        return {"post": "yes"}
    if model and m.model_page_kind(pattern) == "changelist":
        # Django's bulk delete, confirmed, of every row of the model.
        pks = _ADMIN_MODELS[model].objects.values_list("pk", flat=True)
        return {
            "action": "delete_selected",
            "_selected_action": [str(pk) for pk in pks],
            "post": "yes",
        }
    return {}


# What a script would send to add or change a mailbox through the API.
API_MAILBOX: dict[str, Any] = {
    "poll_interval": 300,
    "protocol": "imap",
    "host": PUBLIC,
    "tls_mode": "implicit",
    "username": "probe-remote",
    "password": "probe-password",
}
# The rcfile import's probe: a dry run of a file for the caller themselves.
API_RCFILE = f"poll {PUBLIC} proto imap user probe-remote password probe-password\n"


def _request(
    client: Client, method: str, path: str, pattern: m.Pattern, body: Any
) -> Any:
    if pattern.key not in m.API:
        return client.get(path) if method == "GET" else client.post(path, body)
    if pattern.key == "api:rcfile-import" and method == "POST":
        return client.post(path + "?dry_run=1", API_RCFILE, content_type="text/plain")
    call = getattr(client, method.lower())
    if method in ("GET", "DELETE"):
        return call(path)
    return call(path, body or {}, content_type="application/json")


def _mailbox_form(**overrides: str) -> dict[str, str]:
    data = {
        "name": "",
        "enabled": "on",
        "poll_interval": "300",
        "protocol": "imap",
        "host": PUBLIC,
        "port": "",
        "tls_mode": "implicit",
        "verify_tls": "on",
        "auth": "any",
        "username": "probe-remote",
        "new_password": "probe-password",
        "folders": "",
        # The superuser's form has these too; other forms ignore them.
        "ca_file": "",
        "timeout": "300",
        "delivery_kind": "smtp",
        "delivery_host": "localhost",
        "delivery_port": "25",
        "recipient": "",
        "mda": "",
    }
    data.update(overrides)
    return data


def _people_form(world: World, key: str, owner: str) -> dict[str, Any]:
    """What the people and domain pages' forms send."""
    person = {
        "email": "probe-person@probe.example",
        "full_name": "PROBE-NAME",
        "domain": str(world.domains.get(owner, MISSING)),
    }
    return {
        "people:person-add": {
            **person,
            "password1": "Probe-pass-123456",
            "password2": "Probe-pass-123456",
        },
        "people:person-invite": person,
        "people:person": {"action": "disable"},
        "people:person-remove": {},
        "people:domain-add": {"name": "probe-domain.example"},
        "people:domain-edit": {"name": "probe-domain.example"},
        "people:domain-defaults": {
            "default_delivery": "",
            "default_postmaster": "probe-postmaster",
            "default_poll_interval": "600",
        },
        "people:delivery-targets": {
            "name": "PROBE-TARGET",
            "kind": "lmtp",
            "host": "lmtp.probe.example",
            "port": "24",
        },
        "people:time-zone": {"time_zone": "Europe/Berlin"},
    }.get(key, {})


def world_state() -> dict[str, list[dict[str, Any]]]:
    """Every row a probe could change, to prove a refused one changed none."""
    models: list[Any] = [
        DeliveryTarget,
        Domain,
        Domain.admins.through,
        User,
        User.groups.through,
        User.user_permissions.through,
        Group,
        Mailbox,
        MultidropRule,
        SeenMessage,
        PollRun,
        MessageResult,
        ConnectionTest,
    ]
    return {
        model._meta.label: list(model.objects.order_by("pk").values())
        for model in models
    }


def _place(
    world: World, expect: m.Expect, pattern: m.Pattern, owner: str, path: str
) -> str | None:
    """The path a redirect must go to (its query string aside)."""
    box = owner.partition("+")[0]
    return {
        "login": reverse("login"),
        "admin-login": reverse("admin:login"),
        "admin-index": reverse("admin:index"),
        "home": reverse("home"),
        "mailbox-list": reverse("retrieval:mailbox-list"),
        "rcfile-import": reverse("retrieval:rcfile-import"),
        "password-reset-done": reverse("accounts:password-reset-done"),
        "detail": reverse(
            "retrieval:mailbox-detail", args=[world.mailboxes.get(box, 0)]
        ),
        "mailbox-page": f"/mailboxes/{world.mailboxes.get(box, 0)}/",
        "changelist": "/".join(path.split("/")[:4]) + "/",  # /admin/app/model/
        "admin-change": path + "change/",
        "people": reverse("people:people"),
        "person": reverse("people:person", args=[world.users.get(box, 0)]),
        "domain-edit": reverse("people:domain-edit", args=[world.domains.get(box, 0)]),
        "domain-defaults": reverse(
            "people:domain-defaults", args=[world.domains.get(box, 0)]
        ),
        "delivery-targets": reverse("people:delivery-targets"),
        "time-zone": reverse("people:time-zone"),
        "new-mailbox": None,  # checked against the new row
        "new-person": None,
        "new-domain": None,
        "connection-test": None,  # checked against the new row
    }[expect.to or ""]


def _check_answer(
    world: World,
    response: Any,  # the test client's response
    accepted: tuple[m.Expect, ...],
    pattern: m.Pattern,
    owner: str,
    path: str,
) -> m.Expect:
    """The accepted answer that ``response`` is, or an assertion error."""
    location = response.headers.get("Location", "")
    for expect in accepted:
        if response.status_code != expect.status:
            continue
        if expect.status != 302:
            return expect
        target = urlsplit(location)
        if expect.to == "new-mailbox":
            if target.path.startswith("/mailboxes/"):
                return expect
            continue
        if expect.to in ("new-person", "new-domain"):
            model = User if expect.to == "new-person" else Domain
            name = (
                "people:person" if expect.to == "new-person" else "people:domain-edit"
            )
            made = model.objects.order_by("-pk").first()
            if made is not None and target.path == reverse(name, args=[made.pk]):
                return expect
            continue
        if expect.to == "connection-test":
            box = world.mailboxes.get(owner.partition("+")[0], 0)
            newest = ConnectionTest.objects.filter(mailbox_id=box).order_by("-pk")
            if newest and target.path == reverse(
                "retrieval:connection-test", args=[box, newest[0].pk]
            ):
                return expect
            continue
        if target.path != _place(world, expect, pattern, owner, path):
            continue
        if expect.to in ("login", "admin-login") and target.query:
            # Back to where they were going after logging in, nowhere else.
            assert parse_qs(target.query) == {"next": [path]}, location
        return expect
    raise AssertionError(
        f"{response.status_code} {location!r}, expected one of {accepted}"
    )


_CLIENT: list[Client] = []


def _client(role: str, world: World) -> Client:
    """One test client for the module (it loads the middleware once), with no
    cookie but the role's session."""
    if not _CLIENT:
        _CLIENT.append(Client())
    client = _CLIENT[0]
    client.cookies.clear()
    if role != "anonymous":
        client.cookies[settings.SESSION_COOKIE_NAME] = world.sessions[role]
    return client


def probe(
    world: World, calls: Calls, pattern: m.Pattern, role: str, owner: str, method: str
) -> None:
    client = _client(role, world)
    path = concrete_url(world, pattern, owner)
    body = post_body(world, pattern, owner) if method != "GET" else None
    before = world.baseline
    response = _request(client, method, path, pattern, body)
    accepted = m.expect(pattern, role, owner, method)

    content = response.content.decode("utf-8", "replace") + response.headers.get(
        "Location", ""
    )
    leaked = [s for s in m.forbidden_markers(role) if s in content]
    assert not leaked, f"{role} was shown {leaked} by {method} {path}"

    answer = _check_answer(world, response, accepted, pattern, owner, path)
    # Only the superuser changes anything through the admin; for everyone else
    # even a redirect there (logout's, to the index) is a refusal.
    admitted = not pattern.admin or role == "root"
    changes = method == "POST" and answer.status == 302 and answer.allowed and admitted
    if pattern.key in m.API:
        changes = m.api_changes(pattern.key, method, answer)
    if pattern.key == "accounts:password-reset":
        # "Check your mail" for an address with no account: nothing changed and
        # nothing was sent.
        changes = False
        assert not mail.outbox, [msg.to for msg in mail.outbox]
    if not changes:
        assert world_state() == before, f"{method} {path} as {role} changed rows"
    if not changes:
        assert not calls.polls and not calls.tests, (calls, method, path)
    if changes and not pattern.admin:
        _check_effect(world, calls, pattern, role, owner, method)


def _check_effect(
    world: World,
    calls: Calls,
    pattern: m.Pattern,
    role: str,
    owner: str,
    method: str = "POST",
) -> None:
    """An allowed change happened, to the object asked for: the matrix proves the
    allowed cells are real permissions, not pages that ignore the request."""
    pk = world.mailboxes.get(owner, MISSING)
    key = pattern.key
    if key == "api:mailbox-detail":
        key = {"DELETE": "retrieval:mailbox-delete"}.get(
            method, "retrieval:mailbox-edit"
        )
    if key.startswith("api:mailbox-"):
        key = {"api:mailbox-list": "retrieval:mailbox-add"}.get(
            key, key.replace("api:", "retrieval:")
        )
    if key in ("api:domain-list", "api:domain-detail"):
        assert Domain.objects.filter(name="probe-domain.example").exists()
        if key == "api:domain-detail":
            assert Domain.objects.get(pk=world.domains[owner]).name == (
                "probe-domain.example"
            )
    elif key == "api:user-list":
        person = User.objects.get(email="probe-person@probe.example")
        assert person.check_password("Probe-pass-123456") and not person.is_superuser
    elif key == "api:user-detail" and method == "PATCH":
        assert User.objects.get(pk=world.users[owner]).full_name == "PROBE-NAME"
    elif key == "api:user-detail":
        assert not User.objects.filter(pk=world.users[owner]).exists()
        assert not Mailbox.objects.filter(owner_id=world.users[owner]).exists()
    elif key == "retrieval:mailbox-edit":
        assert Mailbox.objects.get(pk=pk).name == "EDITED-BY-PROBE"
    elif key == "retrieval:mailbox-rules":
        rules = MultidropRule.objects.filter(mailbox_id=pk)
        assert [r.remote for r in rules] == ["probe@remote.example"]
    elif key == "retrieval:mailbox-poll":
        assert calls.polls == [pk]
    elif key == "retrieval:mailbox-test":
        # Recorded for that mailbox by that person; the task is queued on commit,
        # which the probe's savepoint never reaches.
        probe = ConnectionTest.objects.filter(mailbox_id=pk).latest("pk")
        assert probe.pk != world.probes[owner]
        assert probe.requested_by_id == world.users[role]
    elif key == "retrieval:mailbox-delete":
        assert not Mailbox.objects.filter(pk=pk).exists()
    elif key == "retrieval:mailbox-bulk":
        # Paused where the role may change the mailbox; elsewhere nothing moved.
        if m.level(role, owner) in (m.OWN, m.ADMIN):
            assert not Mailbox.objects.get(pk=pk).enabled
        else:
            assert world_state() == world.baseline, (role, owner)
            assert not calls.polls
    elif key == "retrieval:rcfile-import-confirm":
        # No import was waiting in the session: nothing was imported.
        assert world_state() == world.baseline
    elif key == "retrieval:mailbox-add":
        added = Mailbox.objects.get(name="ADDED-BY-PROBE")
        assert added.owner_id == world.users[m.add_owner(role, owner)]
    elif key in m.PEOPLE_PAGES:
        _check_people_effect(world, key, role, owner)


def _check_people_effect(world: World, key: str, role: str, owner: str) -> None:
    """The people and domain pages changed what they were asked to, no more."""
    if key in ("people:person-add", "people:person-invite"):
        person = User.objects.get(email="probe-person@probe.example")
        assert person.domain_id == world.domains[owner]
        assert not person.is_superuser and not person.is_staff
        invited = key == "people:person-invite"
        assert person.has_usable_password() != invited
        # The invitation is mailed when the transaction commits, which the
        # probe's savepoint never reaches: tests/accounts/test_people_pages.py
        # follows the mail.
    elif key == "people:person":
        assert not User.objects.get(pk=world.users[owner]).is_active
    elif key == "people:person-resend-invitation":
        # Nobody here has chosen a password: the invitation goes again, to that
        # person, recorded as sent by the role. The mail leaves when the
        # transaction commits, which the probe's savepoint never reaches:
        # tests/accounts/test_people_pages.py follows it.
        sent = AuditEvent.objects.get(
            object_id=str(world.users[owner]), summary="invitation mailed again"
        )
        assert sent.actor_id == world.users[role]
        assert world_state() == world.baseline
    elif key == "people:person-remove":
        assert not User.objects.filter(pk=world.users[owner]).exists()
        assert not Mailbox.objects.filter(owner_id=world.users[owner]).exists()
    elif key == "people:domain-add":
        assert Domain.objects.filter(name="probe-domain.example").exists()
    elif key == "people:domain-edit":
        assert (
            Domain.objects.get(pk=world.domains[owner]).name == "probe-domain.example"
        )
    elif key == "people:domain-defaults":
        domain = Domain.objects.get(pk=world.domains[owner])
        assert (domain.default_postmaster, domain.default_poll_interval) == (
            "probe-postmaster",
            600,
        )
    elif key == "people:delivery-targets":
        assert DeliveryTarget.objects.filter(name="PROBE-TARGET").exists()
    elif key == "people:time-zone":
        assert User.objects.get(pk=world.users[role]).time_zone == "Europe/Berlin"
    else:
        raise AssertionError(f"no check of what {key} changed")


def _params() -> Iterator[Any]:
    for pattern, role, owner, method in m.iter_probes(PATTERNS):
        yield pytest.param(
            pattern,
            role,
            owner,
            method,
            id=f"{pattern.key}|{role}|{owner}|{method}",
        )


@pytest.mark.parametrize(("pattern", "role", "owner", "method"), list(_params()))
def test_probe(
    world: World, calls: Calls, pattern: m.Pattern, role: str, owner: str, method: str
) -> None:
    probe(world, calls, pattern, role, owner, method)


# --- the matrix covers every URL ----------------------------------------------------


def test_every_url_has_an_expectation() -> None:
    missing = [p.key for p in PATTERNS if not m.has_expectation(p)]
    assert missing == [], f"add these URLs to tests/security/matrix.py: {missing}"


def test_every_url_is_probed_for_every_role_and_method() -> None:
    probed = {(p.key, role, method) for p, role, _, method in m.iter_probes(PATTERNS)}
    assert len(probed) == sum(len(m.methods(p)) for p in PATTERNS) * len(m.ROLES)
    api = [p for p in PATTERNS if p.key.startswith("api:")]
    assert api and all(m.methods(p) == m.API_METHODS for p in api)


@override_settings(ROOT_URLCONF="tests.security.extra_urls")
def test_a_new_url_without_an_expectation_is_caught() -> None:
    """The guard itself can fail: one more URL, and it is reported by name."""
    patterns = m.url_patterns()
    missing = [p.key for p in patterns if not m.has_expectation(p)]
    assert missing == ["retrieval-extra:export"]
    assert len(patterns) == len(PATTERNS) + 1


def test_the_markers_are_where_a_leak_would_show_them(
    world: World, calls: Calls
) -> None:
    """A leak check that cannot see the markers would pass vacuously: the owner's
    own pages do show them."""
    client = Client()
    client.force_login(User.objects.get(pk=world.users["alice"]))
    run = reverse(
        "retrieval:run-detail", args=[world.mailboxes["alice"], world.runs["alice"]]
    )
    page = client.get(run).content.decode()
    for marker in ("GREETING-SECRET-alice", "TRANSCRIPT-SECRET-alice", "MBNAME-alice"):
        assert marker in page
    admin1 = Client()
    admin1.force_login(User.objects.get(pk=world.users["admin1"]))
    home = admin1.get(reverse("home")).content.decode()
    assert "MBNAME-alice" in home and "MBNAME-peer" in home
    assert "MBNAME-bob" not in home
