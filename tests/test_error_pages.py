"""Issue 13 item 8: the 403, 404 and 500 pages in the site's style with DEBUG off,
and the development-mode line bin/run prints when DEBUG is on."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client, RequestFactory, override_settings
from django.urls import include, path
from django.views.defaults import server_error

from fetchweb import devmode
from tests.factories import make_user

ROOT = Path(__file__).resolve().parent.parent


def _boom(request):  # type: ignore[no-untyped-def]
    raise RuntimeError("SECRET-TRACEBACK-detail")


def _refuse(request):  # type: ignore[no-untyped-def]
    raise PermissionDenied("Only a domain administrator may do this.")


urlpatterns = [
    path("boom/", _boom),
    path("refuse/", _refuse),
    path("", include("fetchweb.urls")),
]

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.urls("tests.test_error_pages"),
]


@pytest.fixture(autouse=True)
def _production(settings):
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["testserver"]
    settings.SECURE_SSL_REDIRECT = False
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": uuid.uuid4().hex,
        }
    }


@pytest.fixture
def client() -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(make_user("alice@example.org"))
    return client


def test_404_in_the_site_style(client: Client) -> None:
    response = client.get("/mailboxes/999999/")
    page = response.content.decode()
    assert response.status_code == 404
    assert "Page not found" in page and "css/fetchweb.css" in page
    assert "alice@example.org" in page  # base.html's header: the request's user
    assert "Technical response" not in page and "URLconf" not in page


def test_403_in_the_site_style(client: Client) -> None:
    response = client.get("/refuse/")
    page = response.content.decode()
    assert response.status_code == 403
    assert "Not allowed" in page and "Only a domain administrator" in page
    assert "css/fetchweb.css" in page


def test_500_in_the_site_style_without_the_traceback(client: Client) -> None:
    response = client.get("/boom/")
    page = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong" in page and "css/fetchweb.css" in page
    assert "SECRET-TRACEBACK-detail" not in page and "Traceback" not in page


@override_settings(ROOT_URLCONF="tests.urls_missing_module_never_imported")
def test_500_needs_no_request_context_nor_urls() -> None:
    """Django renders 500.html with no context; it must not need the URLconf."""
    response = server_error(RequestFactory().get("/"))
    assert response.status_code == 500
    assert b"Something went wrong" in response.content


def test_devmode_line_only_when_debug_is_on(settings) -> None:
    settings.DEBUG = True
    assert "DEVELOPMENT MODE" in devmode.warning()
    settings.DEBUG = False
    assert devmode.warning() == ""


def test_bin_run_prints_it() -> None:
    assert "-m fetchweb.devmode" in (ROOT / "bin" / "run").read_text()
