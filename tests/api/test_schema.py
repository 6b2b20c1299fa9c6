"""The OpenAPI schema: valid OpenAPI 3, names every route of the API, and a loop of
requests generated from it finds no server error (5xx) on the live test server.
The docs page runs without inline script (the Content-Security-Policy)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse
from openapi_spec_validator import validate

from retrieval import services
from retrieval.models import ConnectionTest, MessageResult, MultidropRule, PollRun
from retrieval.tasks import probe_connection
from tests.factories import make_domain, make_mailbox, make_user
from tests.security import matrix as m

if TYPE_CHECKING:
    from collections.abc import Iterator


def _schema() -> dict[str, Any]:
    answer = Client().get(reverse("api:schema"), {"format": "json"})
    assert answer.status_code == 200
    data: dict[str, Any] = json.loads(answer.content)
    return data


@pytest.mark.django_db
def test_the_schema_is_valid_openapi_3() -> None:
    schema = _schema()
    assert schema["openapi"].startswith("3.")
    validate(schema)


def test_the_validator_can_fail() -> None:
    with pytest.raises(Exception):  # noqa: B017
        validate({"openapi": "3.0.3", "info": {"title": "x"}, "paths": {"/a": 1}})


@pytest.mark.django_db
def test_the_schema_lists_every_route_and_method() -> None:
    paths = _schema()["paths"]
    for pattern in m.url_patterns():
        if not pattern.key.startswith("api:") or pattern.key in m.API_PUBLIC:
            continue
        path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", pattern.route)
        assert path in paths, pattern.key
        allowed = {
            method.lower()
            for method, by_level in m.API[pattern.key].items()
            if any(e.status != 405 for e in by_level.values())
        }
        if pattern.key in m.SUPERUSER_WRITES:
            allowed = {"get"} | {x.lower() for x in m.SUPERUSER_WRITES[pattern.key]}
        if pattern.key == "api:mailbox-list":
            allowed = {"get", "post"}
        assert set(paths[path]) - {"parameters"} == allowed, pattern.key
    security = _schema()["components"]["securitySchemes"]
    assert security["tokenAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "fw_<prefix>_<secret>",
    }


@pytest.mark.django_db
def test_the_password_is_write_only_in_the_schema() -> None:
    components = _schema()["components"]["schemas"]
    assert "password" not in components["Mailbox"]["properties"]
    assert "password" in components["MailboxInputRequest"]["properties"]


@pytest.mark.django_db
def test_the_docs_page_has_no_inline_script_or_style_and_no_cdn() -> None:
    page = Client().get(reverse("api:docs"))
    assert page.status_code == 200
    html = page.content.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts
    for attributes, content in scripts:
        assert 'src="' in attributes and not content.strip(), attributes
    assert "<style" not in html and " style=" not in html
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert all(not s.startswith(("http:", "https:", "//")) for s in sources), sources
    for source in sources:
        if source.startswith("/static/"):
            assert finders.find(source.removeprefix("/static/")), source
    init = [s for s in sources if "script" in s and not s.startswith("/static/")]
    assert init, sources
    script = Client().get(init[0].replace("&amp;", "&"))
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()


# --- requests generated from the schema ---------------------------------------------

ODD_STRINGS = ["", "ünïcødé", "a" * 2000, "line\nbreak", "\0"]
ODD_VALUES: dict[str, list[Any]] = {
    "string": ODD_STRINGS,
    "integer": [-1, 2**63, "seven", None],
    "boolean": ["maybe", None],
    "array": [["a", "a"], "not a list", [{"x": 1}]],
    "object": [{}, "not an object", []],
}


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        node = schema["components"]["schemas"][name]
    if "allOf" in node:
        return _resolve(schema, node["allOf"][0])
    return node


def _bodies(
    schema: dict[str, Any], operation: dict[str, Any]
) -> Iterator[tuple[str, Any]]:
    content = operation.get("requestBody", {}).get("content", {})
    if "text/plain" in content:
        for text in [
            "",
            "poll",
            "poll 1.1.1.1 proto imap user x password y\n",
            "poll x\n\0",
            "set daemon\n",
            "poll a proto bogus\n" * 50,
        ]:
            yield "text/plain", text
        return
    if "application/json" not in content:
        yield "", None
        return
    body = _resolve(schema, content["application/json"]["schema"])
    props = body.get("properties", {})
    good = {"host": "1.1.1.1", "username": "probe", "password": "pw"}
    yield "application/json", {}
    yield "application/json", good
    yield "application/json", ["not", "an", "object"]
    yield "application/json", "text"
    for name, prop in props.items():
        kind = _resolve(schema, prop).get("type", "string")
        if "enum" in _resolve(schema, prop):
            kind = "string"
        for value in ODD_VALUES.get(kind, ODD_STRINGS):
            yield "application/json", {**good, name: value}
    if "rules" in props:
        odd_rules: list[Any] = [
            [{"remote": "*"}],
            [{"remote": "a->b"}],
            [{}],
            [1],
            None,
        ]
        for rules in odd_rules:
            yield "application/json", {"rules": rules}


def _queries(operation: dict[str, Any]) -> Iterator[str]:
    names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
    yield ""
    for name in names:
        for value in ["x", "99999999999999999999", "2026-01-01T00:00:00Z", "%00"]:
            yield f"?{name}={value}"


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "mailbox_poll_request", lambda *, mailbox: None)
    monkeypatch.setattr(probe_connection, "delay", lambda *a: None)


@pytest.mark.django_db(transaction=True)
def test_generated_requests_find_no_server_error(live_server: Any, quiet: None) -> None:
    admin = make_user("admin@dom.example")
    domain = make_domain("dom.example", admins=(admin,))
    user = make_user("user@dom.example", domain=domain)
    root = make_user("root@op.example", superuser=True)
    box = make_mailbox(user, domain=domain, password="pw", host="1.1.1.1")
    MultidropRule.objects.create(mailbox=box, remote="sales", local="user")
    run = PollRun.objects.create(mailbox=box, outcome=PollRun.Outcome.ERROR)
    MessageResult.objects.create(run=run, uid="1", status="delivered")
    probe = ConnectionTest.objects.create(mailbox=box)
    ids = {"pk": sorted({box.pk, run.pk, probe.pk, domain.pk, user.pk, 999999})}
    schema = _schema()
    tokens = [services.token_create(user=p, name="gen")[1] for p in (user, root)]
    tokens.append("")  # anonymous
    failures: list[str] = []
    sent = 0
    for template, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            paths = [template]
            if "{pk}" in template:
                paths = [template.replace("{pk}", str(pk)) for pk in ids["pk"]]
            bodies = list(_bodies(schema, operation))
            for path in paths:
                for token in tokens:
                    for query in _queries(operation):
                        # The odd queries once per body kind is enough.
                        kinds = bodies[:1] if query else bodies
                        statuses: list[int] = []
                        for ctype, body in _unless_refused(kinds, statuses):
                            status = _send(
                                live_server.url + path + query,
                                method,
                                ctype,
                                body,
                                token,
                            )
                            statuses.append(status)
                            sent += 1
                            if status >= 500:
                                failures.append(
                                    f"{status} {method} {path}{query} {body!r:.80}"
                                )
    assert sent > 500
    assert failures == []


# Answers given before DRF reads a body: authentication (401) runs in initial(),
# and an object the caller may not see is looked up (404) before any serializer.
# Every other body would take the same path; the last one is sent as well, to
# show it does.
REFUSED_BEFORE_THE_BODY = {401, 404}


def _unless_refused(
    bodies: list[tuple[str, Any]], statuses: list[int]
) -> Iterator[tuple[str, Any]]:
    """``bodies`` in order; after a first answer refused before the body was read,
    only the last of them, which must get the same answer."""
    if not bodies:
        return
    yield bodies[0]
    if statuses[0] not in REFUSED_BEFORE_THE_BODY:
        yield from bodies[1:]
    elif len(bodies) > 1:
        yield bodies[-1]
        assert statuses[-1] == statuses[0], (statuses, bodies[-1])


def _send(url: str, method: str, ctype: str, body: Any, token: str) -> int:
    data = None
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if ctype == "application/json":
        data = json.dumps(body).encode()
    elif ctype == "text/plain":
        data = str(body).encode()
    if ctype:
        headers["Content-Type"] = ctype
    request = urllib.request.Request(
        url, data=data, method=method.upper(), headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        if exc.code < 500 and exc.headers.get("Content-Type", "").startswith(
            "application/json"
        ):
            error = json.loads(exc.read())
            assert set(error) >= {"code", "message"}, (url, error)
        return int(exc.code)
