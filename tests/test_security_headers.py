"""Headers that browsers enforce (issue 11, item 10).

Every page carries a Content-Security-Policy that allows no inline script or style,
and nothing in templates/ needs one: no inline <script>, no on*= handler, no style
attribute or element, no javascript: URL, no htmx hx-on (it evaluates code).
"""

from __future__ import annotations

import re
import uuid
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from django.urls import reverse

from retrieval.models import PollRun
from tests.factories import make_mailbox, make_user

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DIRS = [ROOT / "templates", *ROOT.glob("*/templates")]


@pytest.fixture(autouse=True)
def _quick(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": uuid.uuid4().hex,
        }
    }


class _InlineFinder(HTMLParser):
    """Collects what a `script-src 'self'; style-src 'self'` policy would block."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name.lower(): value or "" for name, value in attrs}
        if tag == "script":
            kind = names.get("type", "").lower()
            # JSON data blocks are not executed, so the CSP allows them.
            if "src" not in names and kind not in {"application/json"}:
                self.found.append(f"inline <script> at line {self.getpos()[0]}")
        if tag == "style":
            self.found.append(f"<style> element at line {self.getpos()[0]}")
        for name, value in names.items():
            if name.startswith("on"):
                self.found.append(f"{name}= handler at line {self.getpos()[0]}")
            if name == "style":
                self.found.append(f"style= attribute at line {self.getpos()[0]}")
            if name.startswith(("hx-on", "data-hx-on")):
                self.found.append(f"{name} (evaluated code) at line {self.getpos()[0]}")
            if value.strip().lower().startswith("javascript:"):
                self.found.append(f"javascript: URL at line {self.getpos()[0]}")


def _inline(html: str) -> list[str]:
    finder = _InlineFinder()
    finder.feed(html)
    return finder.found


def _template_files() -> list[Path]:
    return sorted(p for d in TEMPLATE_DIRS for p in d.rglob("*.html"))


def test_the_scanner_sees_what_csp_blocks():
    bad = (
        "<script>alert(1)</script><style>p{}</style>"
        '<a onclick="x()" style="color:red" href="javascript:x()">'
        '<button hx-on:click="x()">'
    )
    assert len(_inline(bad)) == 6
    assert _inline('<script src="/static/htmx.min.js" defer></script>') == []


@pytest.mark.parametrize(
    "template", _template_files(), ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_template_has_inline_script_or_style(template):
    text = template.read_text(encoding="utf-8")
    # Template tags are not HTML: blank them so that the parser sees the markup.
    markup = re.sub(r"{%.*?%}|{{.*?}}|{#.*?#}", "x", text, flags=re.DOTALL)
    assert _inline(markup) == [], template


def _pages(client, django_user_model):
    admin = make_user(email=f"root-{uuid.uuid4().hex[:6]}@example.org", superuser=True)
    mailbox = make_mailbox()
    run = PollRun.objects.create(mailbox=mailbox)
    anonymous = [
        reverse("login"),
        "/admin/login/",
        reverse("healthz"),
        "/no-such-page/",
    ]
    signed_in = [
        reverse("home"),
        reverse("retrieval:mailbox-add"),
        reverse("retrieval:mailbox-detail", args=[mailbox.pk]),
        reverse("retrieval:mailbox-edit", args=[mailbox.pk]),
        reverse("retrieval:mailbox-rules", args=[mailbox.pk]),
        reverse("retrieval:mailbox-test", args=[mailbox.pk]),
        reverse("retrieval:mailbox-delete", args=[mailbox.pk]),
        reverse("retrieval:run-detail", args=[mailbox.pk, run.pk]),
        "/admin/",
        "/admin/accounts/user/",
        f"/admin/accounts/user/{admin.pk}/change/",
        "/admin/accounts/domain/add/",
        "/admin/retrieval/mailbox/",
        f"/admin/retrieval/mailbox/{mailbox.pk}/change/",
    ]
    for url in anonymous:
        yield url, client.get(url)
    client.force_login(admin)
    for url in signed_in:
        yield url, client.get(url)


@pytest.mark.django_db
def test_every_page_carries_the_policy(client, django_user_model):
    seen = 0
    for url, response in _pages(client, django_user_model):
        # /healthz may answer 503 here (no broker in this test): the header still counts.
        assert response.status_code in {200, 302, 404, 405, 503}, (url, response.status_code)
        policy = response.get("Content-Security-Policy", "")
        assert "script-src 'self'" in policy, url
        assert "style-src 'self'" in policy, url
        assert "frame-ancestors 'none'" in policy, url
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, url
        assert response.get("Permissions-Policy"), url
        assert response.get("X-Content-Type-Options") == "nosniff", url
        if response.status_code == 200 and "html" in response.get("Content-Type", ""):
            assert _inline(response.content.decode()) == [], url
            seen += 1
    assert seen >= 10


def test_docker_compose_runs_with_debug_off():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    app = compose["x-app"]
    assert str(app["environment"]["DEBUG"]).lower() == "false"
    for name in ("web", "worker", "beat"):
        assert str(compose["services"][name]["environment"]["DEBUG"]).lower() == "false"
