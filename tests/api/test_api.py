"""The REST API (issue 15 item 1): tokens, mailboxes, polls, runs, rules,
rcfiles, errors. Who may do what on every route is the authorization matrix's
(tests/security); these tests check what the routes do."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiToken, Domain, User
from retrieval import services
from retrieval.models import ConnectionTest, Mailbox, MessageResult, PollRun
from tests.factories import make_domain, make_mailbox, make_user

PUBLIC = "1.1.1.1"
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache(settings: Any) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": uuid.uuid4().hex,
        }
    }


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    polls: list[int] = []
    monkeypatch.setattr(
        services, "mailbox_poll_request", lambda *, mailbox: polls.append(mailbox.pk)
    )
    return polls


def bearer(token: str) -> dict[str, Any]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def token_for(user: Any) -> str:
    return services.token_create(user=user, name="test")[1]


# --- tokens ------------------------------------------------------------------------


def test_a_token_is_made_on_the_console_shown_once_and_stored_hashed() -> None:
    user = make_user()
    client = Client()
    client.force_login(user)
    page = client.post(reverse("accounts:tokens"), {"name": "backup script"})
    assert page.status_code == 200
    token = page.context["created"]
    assert token.startswith("fw_") and token in page.content.decode()
    assert page["Cache-Control"] == "no-store"
    row = ApiToken.objects.get(user=user)
    secret = token.split("_", 2)[2]
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    stored = " ".join(str(v) for v in ApiToken.objects.values().get().values())
    assert secret not in stored
    # Shown once: the list page shows only the prefix.
    again = client.get(reverse("accounts:tokens")).content.decode()
    assert secret not in again and f"fw_{row.prefix}_" in again
    # And it works.
    api = Client()
    answer = api.get(reverse("api:mailbox-list"), **bearer(token))
    assert answer.status_code == 200
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_a_revoked_token_gets_401() -> None:
    user = make_user()
    token = token_for(user)
    row = ApiToken.objects.get(user=user)
    client = Client()
    assert client.get(reverse("api:mailbox-list"), **bearer(token)).status_code == 200
    client.force_login(user)
    client.post(reverse("accounts:tokens"), {"revoke": row.pk})
    row.refresh_from_db()
    assert row.revoked_at is not None
    answer = Client().get(reverse("api:mailbox-list"), **bearer(token))
    assert answer.status_code == 401
    assert answer.json()["code"] == "authentication_failed"
    assert answer["WWW-Authenticate"].startswith("Bearer")


def test_nobody_revokes_someone_elses_token() -> None:
    owner, other = make_user(), make_user()
    token = token_for(owner)
    row = ApiToken.objects.get(user=owner)
    client = Client()
    client.force_login(other)
    client.post(reverse("accounts:tokens"), {"revoke": row.pk})
    row.refresh_from_db()
    assert row.revoked_at is None
    assert Client().get(reverse("api:run-list"), **bearer(token)).status_code == 200


@pytest.mark.parametrize(
    "header",
    ["Bearer fw_nope_nope", "Bearer garbage", "Bearer", "Bearer a b", "Bearer fw__x"],
)
def test_a_wrong_token_is_401_in_json(header: str) -> None:
    make_user()
    answer = Client().get(reverse("api:mailbox-list"), HTTP_AUTHORIZATION=header)
    assert answer.status_code == 401
    assert set(answer.json()) >= {"code", "message"}


def test_a_wrong_secret_with_a_real_prefix_is_refused() -> None:
    token = token_for(make_user())
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert (
        Client().get(reverse("api:mailbox-list"), **bearer(forged)).status_code == 401
    )


def test_an_inactive_persons_token_is_refused() -> None:
    user = make_user()
    token = token_for(user)
    user.is_active = False
    user.save()
    assert Client().get(reverse("api:mailbox-list"), **bearer(token)).status_code == 401


# --- mailboxes ----------------------------------------------------------------------


def _create(client: Client, token: str, **values: Any) -> Any:
    body = {
        "name": "work",
        "host": PUBLIC,
        "username": "anna",
        "password": "s3cret-remote",
        **values,
    }
    return client.post(
        reverse("api:mailbox-list"),
        body,
        content_type="application/json",
        **bearer(token),
    )


def test_create_read_update_delete_a_mailbox_the_password_write_only() -> None:
    user = make_user()
    token = token_for(user)
    client = Client()
    made = _create(client, token)
    assert made.status_code == 201, made.json()
    data = made.json()
    assert "password" not in data and data["has_password"] is True
    assert "s3cret-remote" not in made.content.decode()
    box = Mailbox.objects.get(pk=data["id"])
    assert box.owner == user and box.get_password() == "s3cret-remote"
    url = reverse("api:mailbox-detail", args=[box.pk])
    assert client.get(url, **bearer(token)).json()["name"] == "work"
    changed = client.patch(
        url,
        {"name": "renamed", "keep": True},
        content_type="application/json",
        **bearer(token),
    )
    assert changed.status_code == 200, changed.json()
    box.refresh_from_db()
    assert (box.name, box.keep, box.host) == ("renamed", True, PUBLIC)
    # GET's answer can be sent back as it is.
    full = client.get(url, **bearer(token)).json()
    answer = client.put(url, full, content_type="application/json", **bearer(token))
    assert answer.status_code == 200, answer.json()
    assert (
        client.put(
            url, full, content_type="application/json", **bearer(token)
        ).status_code
        == 200
    )
    assert client.delete(url, **bearer(token)).status_code == 204
    assert not Mailbox.objects.filter(pk=box.pk).exists()


def test_the_forms_rules_hold_a_private_host_and_superuser_fields() -> None:
    token = token_for(make_user())
    client = Client()
    private = _create(client, token, host="127.0.0.1")
    assert private.status_code == 400
    assert "host" in private.json()["fields"]
    assert private.json()["code"] == "invalid"
    mda = _create(client, token, delivery_kind="mda", mda="/bin/sh -c evil")
    assert mda.status_code == 400
    assert "mda" in mda.json()["fields"]
    # delivery_kind is the person's own choice now (into an IMAP mailbox), but
    # only between the service's listener and a mailbox.
    kind = _create(client, token, delivery_kind="mda")
    assert kind.status_code == 400 and "delivery_kind" in kind.json()["fields"]
    no_check = _create(client, token, verify_tls=False)
    assert no_check.status_code == 400 and "verify_tls" in no_check.json()["fields"]
    unknown = _create(client, token, password_encrypted="x")
    assert (
        unknown.status_code == 400 and "password_encrypted" in unknown.json()["fields"]
    )
    assert not Mailbox.objects.exists()


def test_changing_the_account_needs_the_password_again() -> None:
    user = make_user()
    box = make_mailbox(user, password="old", host=PUBLIC)
    token = token_for(user)
    url = reverse("api:mailbox-detail", args=[box.pk])
    refused = Client().patch(
        url, {"username": "other"}, content_type="application/json", **bearer(token)
    )
    assert refused.status_code == 400 and "password" in refused.json()["fields"]
    ok = Client().patch(
        url,
        {"username": "other", "password": "new"},
        content_type="application/json",
        **bearer(token),
    )
    assert ok.status_code == 200, ok.json()
    box.refresh_from_db()
    assert (box.username, box.get_password()) == ("other", "new")


def test_a_superuser_sets_delivery_fields() -> None:
    root = make_user(superuser=True)
    made = _create(Client(), token_for(root), delivery_port=2525, host="127.0.0.1")
    assert made.status_code == 201, made.json()
    assert made.json()["delivery_port"] == 2525


def test_list_filters_and_pagination() -> None:
    user = make_user()
    boxes = [
        make_mailbox(user, name=f"box{i}", host=f"h{i}.example.org") for i in range(5)
    ]
    boxes[0].enabled = False
    boxes[0].save()
    PollRun.objects.create(mailbox=boxes[1], outcome=PollRun.Outcome.ERROR)
    PollRun.objects.create(mailbox=boxes[2], outcome=PollRun.Outcome.SUCCESS)
    make_mailbox(make_user(), name="someone-else")
    token = token_for(user)
    client = Client()

    def names(**q: Any) -> list[str]:
        answer = client.get(reverse("api:mailbox-list"), q, **bearer(token))
        assert answer.status_code == 200, answer.json()
        return [r["name"] for r in answer.json()["results"]]

    assert names() == [f"box{i}" for i in range(5)]
    assert names(state="disabled") == ["box0"]
    assert names(state="failing") == ["box1"]
    assert names(state="ok") == ["box2"]
    assert names(state="never") == ["box3", "box4"]
    assert names(search="h4.example") == ["box4"]
    assert names(ordering="-name")[0] == "box4"
    page = client.get(
        reverse("api:mailbox-list"), {"page_size": 2, "page": 2}, **bearer(token)
    ).json()
    assert page["count"] == 5 and [r["name"] for r in page["results"]] == [
        "box2",
        "box3",
    ]
    bad = client.get(reverse("api:mailbox-list"), {"state": "weird"}, **bearer(token))
    assert bad.status_code == 400 and "state" in bad.json()["fields"]


def test_a_foreign_mailbox_is_404_not_403() -> None:
    box = make_mailbox(make_user())
    token = token_for(make_user())
    for method in ("get", "patch", "delete"):
        answer = getattr(Client(), method)(
            reverse("api:mailbox-detail", args=[box.pk]), **bearer(token)
        )
        assert answer.status_code == 404
        assert answer.json() == {
            "code": "not_found",
            "message": "There is no such object.",
        }


# --- poll now, connection test, runs ------------------------------------------------


def test_poll_now_is_queued_and_its_run_is_read(queued: list[int]) -> None:
    user = make_user()
    box = make_mailbox(user)
    token = token_for(user)
    client = Client()
    answer = client.post(reverse("api:mailbox-poll", args=[box.pk]), **bearer(token))
    assert answer.status_code == 202
    assert queued == [box.pk]
    status_url = answer.json()["status_url"]
    run = PollRun.objects.create(
        mailbox=box,
        outcome=PollRun.Outcome.SUCCESS,
        trigger="manual",
        started_at=timezone.now() + timedelta(seconds=1),
    )
    MessageResult.objects.create(
        run=run, uid="7", status="delivered", listener_reply="250 ok"
    )
    runs = client.get(status_url, **bearer(token)).json()["results"]
    assert [r["id"] for r in runs] == [run.pk]
    detail = client.get(
        reverse("api:run-detail", args=[run.pk]), **bearer(token)
    ).json()
    assert detail["outcome"] == "success" and "transcript" in detail
    messages = client.get(
        reverse("api:message-list"), {"run": run.pk}, **bearer(token)
    ).json()
    assert [m["uid"] for m in messages["results"]] == ["7"]
    assert (
        client.get(
            reverse("api:run-list"), {"outcome": "error"}, **bearer(token)
        ).json()["count"]
        == 0
    )
    again = client.post(reverse("api:mailbox-poll", args=[box.pk]), **bearer(token))
    assert again.status_code == 429 and again.json()["code"] == "too_soon"


def test_a_connection_test_is_queued_with_a_status_resource(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from retrieval.tasks import probe_connection

    monkeypatch.setattr(probe_connection, "delay", lambda *a: None)
    user = make_user()
    box = make_mailbox(user)
    token = token_for(user)
    answer = Client().post(reverse("api:mailbox-test", args=[box.pk]), **bearer(token))
    assert answer.status_code == 202
    probe = ConnectionTest.objects.get(mailbox=box)
    assert answer.json()["status_url"].endswith(
        reverse("api:connection-test-detail", args=[probe.pk])
    )
    status = Client().get(answer.json()["status_url"], **bearer(token)).json()
    assert status["status"] == "queued"


# --- rules -----------------------------------------------------------------------------


def test_rules_are_for_the_domain_administrator() -> None:
    admin = make_user()
    domain = make_domain(admins=(admin,))
    owner = make_user(domain=domain)
    box = make_mailbox(owner, domain=domain)
    url = reverse("api:mailbox-rules", args=[box.pk])
    body = {"rules": [{"remote": "sales", "local": "anna"}, {"remote": "*"}]}
    refused = Client().put(
        url, body, content_type="application/json", **bearer(token_for(owner))
    )
    assert refused.status_code == 403
    done = Client().put(
        url, body, content_type="application/json", **bearer(token_for(admin))
    )
    assert done.status_code == 200, done.json()
    assert done.json()["rules"] == [
        {"remote": "sales", "local": "anna"},
        {"remote": "*", "local": ""},
    ]
    outside = Client().put(
        url,
        {"rules": [{"remote": "x", "local": "x@elsewhere.example"}]},
        content_type="application/json",
        **bearer(token_for(admin)),
    )
    assert outside.status_code == 400 and "rules" in outside.json()["fields"]


# --- rcfiles ---------------------------------------------------------------------------

RCFILE = f"poll {PUBLIC} proto imap user 'anna' password 'pw1'\n"


def test_rcfile_preview_apply_and_export() -> None:
    user = make_user("anna@example.org")
    token = token_for(user)
    client = Client()
    url = reverse("api:rcfile-import")
    preview = client.post(
        url + "?dry_run=1", RCFILE, content_type="text/plain", **bearer(token)
    )
    assert preview.status_code == 200, preview.json()
    assert preview.json()["dry_run"] is True and not Mailbox.objects.exists()
    assert any("created mailbox" in line for line in preview.json()["report"])
    applied = client.post(url, RCFILE, content_type="text/plain", **bearer(token))
    assert applied.status_code == 200, applied.json()
    assert Mailbox.objects.get().owner == user
    exported = client.get(reverse("api:rcfile-export"), **bearer(token))
    assert exported.status_code == 200
    assert exported["Content-Type"].startswith("text/plain")
    text = exported.content.decode()
    assert PUBLIC in text and "pw1" not in text


def test_rcfile_errors_say_file_and_line_and_save_nothing() -> None:
    token = token_for(make_user("anna@example.org"))
    url = reverse("api:rcfile-import")
    bad = Client().post(
        url, "poll\n  proto bogus\n", content_type="text/plain", **bearer(token)
    )
    assert bad.status_code == 400
    data = bad.json()
    assert data["code"] == "refused"
    assert "fetchmailrc:" in data["message"] + " ".join(
        data.get("fields", {}).get("rcfile", [])
    )
    assert "/tmp" not in bad.content.decode()
    refused = Client().post(
        url,
        f"poll {PUBLIC} proto imap user anna password x mda '/bin/evil'\n",
        content_type="text/plain",
        **bearer(token),
    )
    assert refused.status_code == 400
    assert "mda" in refused.content.decode()
    assert not Mailbox.objects.exists()


@pytest.mark.parametrize("owner", ["victim@example.org", "nobody@example.org"])
def test_importing_or_exporting_for_someone_else_is_404(owner: str) -> None:
    """The same answer whether or not the address has an account here."""
    victim = make_user("victim@example.org")
    make_mailbox(victim, name="victims-box", host="imap.victim.example")
    token = token_for(make_user("anna@example.org"))
    answer = Client().post(
        reverse("api:rcfile-import") + f"?owner={owner}",
        RCFILE,
        content_type="text/plain",
        **bearer(token),
    )
    assert answer.status_code == 404
    assert Mailbox.objects.count() == 1
    exported = Client().get(
        reverse("api:rcfile-export"), {"owner": owner}, **bearer(token)
    )
    assert exported.status_code == 404
    assert "imap.victim.example" not in exported.content.decode()
    for domain in ("nowhere.example", make_domain().name):
        answer = Client().get(
            reverse("api:rcfile-export"), {"domain": domain}, **bearer(token)
        )
        assert answer.status_code == 404


def test_a_domain_administrator_exports_a_members_mailboxes() -> None:
    admin = make_user("admin@dom.example")
    domain = make_domain("dom.example", admins=(admin,))
    member = make_user("member@dom.example", domain=domain)
    make_mailbox(member, domain=domain, host="imap.member.example")
    answer = Client().get(
        reverse("api:rcfile-export"),
        {"owner": member.email},
        **bearer(token_for(admin)),
    )
    assert answer.status_code == 200, answer.content
    assert "imap.member.example" in answer.content.decode()


def test_a_session_needs_the_csrf_token_to_change_anything() -> None:
    user = make_user()
    box = make_mailbox(user)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    url = reverse("api:mailbox-detail", args=[box.pk])
    assert client.get(url).status_code == 200
    refused = client.delete(url)
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    assert Mailbox.objects.filter(pk=box.pk).exists()


# --- domains and people (superusers) ---------------------------------------------------


def test_a_superuser_manages_domains_and_people() -> None:
    root = make_user("root@op.example", superuser=True)
    token = token_for(root)
    client = Client()
    made = client.post(
        reverse("api:domain-list"),
        {"name": "New.Example"},
        content_type="application/json",
        **bearer(token),
    )
    assert made.status_code == 201, made.json()
    domain_id = made.json()["id"]
    assert made.json()["name"] == "new.example"
    person = client.post(
        reverse("api:user-list"),
        {
            "email": "Anna@New.example",
            "domain": domain_id,
            "password": "Long-pass-98765",
        },
        content_type="application/json",
        **bearer(token),
    )
    assert person.status_code == 201, person.json()
    anna = User.objects.get(email="anna@new.example")
    assert anna.check_password("Long-pass-98765") and not anna.is_superuser
    assert "Long-pass" not in person.content.decode()
    admins = client.patch(
        reverse("api:domain-detail", args=[domain_id]),
        {"admins": [anna.pk]},
        content_type="application/json",
        **bearer(token),
    )
    assert admins.status_code == 200
    assert list(Domain.objects.get(pk=domain_id).admins.all()) == [anna]
    in_use = client.delete(
        reverse("api:domain-detail", args=[domain_id]), **bearer(token)
    )
    assert in_use.status_code == 409 and in_use.json()["code"] == "in_use"
    weak = client.patch(
        reverse("api:user-detail", args=[anna.pk]),
        {"password": "123"},
        content_type="application/json",
        **bearer(token),
    )
    assert weak.status_code == 400 and "password" in weak.json()["fields"]
    unknown = client.patch(
        reverse("api:user-detail", args=[anna.pk]),
        {"is_superuser": True},
        content_type="application/json",
        **bearer(token),
    )
    assert unknown.status_code == 400 and "is_superuser" in unknown.json()["fields"]
    anna.refresh_from_db()
    assert not anna.is_superuser
    gone = client.delete(reverse("api:user-detail", args=[anna.pk]), **bearer(token))
    assert gone.status_code == 204
    assert not User.objects.filter(pk=anna.pk).exists()


def test_a_domain_administrator_reads_but_does_not_change_domains_or_people() -> None:
    admin = make_user()
    domain = make_domain(admins=(admin,))
    member = make_user(domain=domain)
    token = token_for(admin)
    client = Client()
    listed = client.get(reverse("api:user-list"), **bearer(token)).json()["results"]
    assert {p["email"] for p in listed} == {admin.email, member.email}
    for url, method in (
        (reverse("api:domain-list"), "post"),
        (reverse("api:domain-detail", args=[domain.pk]), "patch"),
        (reverse("api:user-detail", args=[member.pk]), "delete"),
    ):
        answer = getattr(client, method)(
            url, {}, content_type="application/json", **bearer(token)
        )
        assert answer.status_code == 403, (url, method)
    assert User.objects.filter(pk=member.pk).exists()


def test_the_browsable_pages_render_for_a_logged_in_person() -> None:
    """DRF's HTML pages (Accept: text/html, the browser's session) for every GET
    route: they render, with the same answers as JSON."""
    root = make_user(superuser=True)
    domain = make_domain()
    user = make_user(domain=domain)
    box = make_mailbox(user, domain=domain)
    run = PollRun.objects.create(mailbox=box)
    probe = ConnectionTest.objects.create(mailbox=box)
    routes = [
        ("api:mailbox-list", [], 200, 200),
        ("api:mailbox-detail", [box.pk], 200, 200),
        ("api:mailbox-rules", [box.pk], 200, 200),
        ("api:run-list", [], 200, 200),
        ("api:run-detail", [run.pk], 200, 200),
        ("api:message-list", [], 200, 200),
        ("api:connection-test-detail", [probe.pk], 200, 200),
        ("api:domain-list", [], 200, 403),
        ("api:domain-detail", [domain.pk], 200, 404),
        ("api:user-list", [], 200, 403),
        ("api:user-detail", [user.pk], 200, 200),
        ("api:rcfile-export", [], 200, 200),
    ]
    for person, column in ((root, 2), (user, 3)):
        client = Client()
        client.force_login(person)
        for route in routes:
            url = reverse(route[0], args=route[1])
            answer = client.get(url, HTTP_ACCEPT="text/html")
            assert answer.status_code == route[column], (url, person)


def test_a_program_for_a_users_mailbox_is_refused_in_words_not_a_500() -> None:
    """Found by the generated requests: a superuser's form with a program for a
    mailbox whose owner may not run one crashed in the service (page and API)."""
    root = make_user(superuser=True)
    box = make_mailbox(make_user(), host=PUBLIC)
    api = Client().patch(
        reverse("api:mailbox-detail", args=[box.pk]),
        {"mda": "/bin/true"},
        content_type="application/json",
        **bearer(token_for(root)),
    )
    assert api.status_code == 400 and "mda" in api.json()["fields"]
    page = Client()
    page.force_login(root)
    form = page.get(reverse("retrieval:mailbox-edit", args=[box.pk])).context["form"]
    data = {
        k: v for k, v in ((n, form[n].value()) for n in form.fields) if v is not None
    }
    data.update(mda="/bin/true", enabled="on", verify_tls="on")
    answer = page.post(reverse("retrieval:mailbox-edit", args=[box.pk]), data)
    assert answer.status_code == 200
    assert "mda" in answer.context["form"].errors
    box.refresh_from_db()
    assert "mda" not in (box.options or {}).get("user", {})
