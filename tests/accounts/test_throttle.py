"""Sign-ins are throttled per account and per address (issue 11, item 5).

Before: 60 wrong passwords and then the right one signed in at once, on /login/
and on /admin/login/.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from accounts.models import AuditEvent
from tests.factories import make_user

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
RIGHT = "correct horse battery"  # tests/factories.py


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _post(client: Client, url: str, email: str, password: str, address: str):
    return client.post(
        url,
        {"username": email, "password": password},
        REMOTE_ADDR=address,
    )


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.parametrize(
    ("url", "superuser"), [("/login/", False), ("/admin/login/", True)]
)
def test_sixty_wrong_passwords_then_the_right_one_is_refused(url, superuser):
    user = make_user(superuser=superuser)
    client = Client()
    for _ in range(60):
        response = _post(client, url, user.email, "wrong", "198.51.100.7")
        assert response.status_code == 200
        assert not _signed_in(client)
    response = _post(client, url, user.email, RIGHT, "198.51.100.7")
    assert response.status_code == 200
    assert not _signed_in(client)
    page = response.content.decode()
    assert "Too many failed sign-in attempts for this account" in page
    assert "try again" in page
    assert "minute" in page


def test_the_account_limit_is_five_failures_whatever_the_address():
    user = make_user()
    for i in range(5):
        _post(Client(), "/login/", user.email, "wrong", f"198.51.100.{i + 1}")
    client = Client()
    _post(client, "/login/", user.email, RIGHT, "203.0.113.50")
    assert not _signed_in(client)


def test_four_failures_still_let_the_right_password_in_and_reset_the_count():
    user = make_user()
    for _ in range(4):
        _post(Client(), "/login/", user.email, "wrong", "198.51.100.8")
    client = Client()
    response = _post(client, "/login/", user.email, RIGHT, "198.51.100.8")
    assert response.status_code == 302
    assert _signed_in(client)
    # the success cleared the account's count: four more mistakes are allowed
    for _ in range(4):
        _post(Client(), "/login/", user.email, "wrong", "198.51.100.8")
    client = Client()
    _post(client, "/login/", user.email, RIGHT, "198.51.100.8")
    assert _signed_in(client)


def test_an_address_is_refused_after_twenty_failures_over_many_accounts():
    victim = make_user()
    for i in range(20):  # four wrong guesses each for five made-up accounts
        _post(Client(), "/login/", f"guess{i % 5}@example.org", "x", "192.0.2.66")
    client = Client()
    response = _post(client, "/login/", victim.email, RIGHT, "192.0.2.66")
    assert not _signed_in(client)
    assert "from your network" in response.content.decode()
    # the same account from another address is fine
    other = Client()
    _post(other, "/login/", victim.email, RIGHT, "192.0.2.67")
    assert _signed_in(other)


def test_other_callers_of_authenticate_are_throttled_too():
    from django.contrib.auth import authenticate

    user = make_user()
    for _ in range(5):
        assert authenticate(None, username=user.email, password="wrong") is None
    assert authenticate(None, username=user.email, password=RIGHT) is None


def test_refusals_are_in_the_audit_log_without_the_password():
    user = make_user()
    for _ in range(6):
        _post(Client(), "/login/", user.email, "Hunter2-wrong", "198.51.100.9")
    _post(Client(), "/login/", user.email, RIGHT, "198.51.100.9")
    events = AuditEvent.objects.filter(actor_label=user.email)
    actions = list(events.values_list("action", flat=True))
    assert actions.count(AuditEvent.Action.LOGIN_FAILED) == 5
    assert AuditEvent.Action.LOGIN_THROTTLED in actions
    assert AuditEvent.Action.LOGIN not in actions
    assert {e.address for e in events} == {"198.51.100.9"}
    for text in events.values_list("summary", "object_repr"):
        assert "Hunter2" not in " ".join(text) and RIGHT not in " ".join(text)


def _settings_caches(**env: str) -> str:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"REDIS_URL", "DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
    }
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='fetchweb.settings';"
        "from django.conf import settings as s;"
        "print(s.CACHES['default']['BACKEND'], s.CACHES['throttle']['BACKEND'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def test_the_throttle_cache_is_shared_between_processes_in_both_configurations():
    # Without Redis: files under var/, which every gunicorn worker sees.
    plain = _settings_caches()
    assert "LocMemCache" not in plain
    assert plain.count("FileBasedCache") == 2
    # With Redis: Redis.
    assert (
        _settings_caches(REDIS_URL="redis://127.0.0.1:6379/0").count("RedisCache") == 2
    )


def _lock_out(email: str) -> None:
    from accounts import throttle

    for _ in range(5):
        throttle.record_failure(email, "192.0.2.200")


def test_a_lock_recorded_by_one_process_holds_in_another(settings, tmp_path):
    """The file cache of the default configuration: what one gunicorn worker
    counted, another sees."""
    location = str(tmp_path / "throttle")
    settings.CACHES = {
        alias: {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": location,
            "TIMEOUT": 1920,
        }
        for alias in ("default", "throttle")
    }
    _lock_out("carol@example.org")
    code = (
        "import django, os, sys;"
        "os.environ['DJANGO_SETTINGS_MODULE']='fetchweb.settings';"
        "from django.conf import settings; django.setup();"
        f"settings.CACHES['throttle']['LOCATION']={location!r};"
        "from accounts import throttle;"
        "r = throttle.refusal('Carol@Example.org', None);"
        "sys.exit(0 if r and r.scope == 'account' else 1)"
    )
    clean = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL"}}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_lock_works_on_redis(settings, redis_url):
    from accounts import throttle

    settings.CACHES = {
        alias: {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": f"t-{os.getpid()}-{alias}",
        }
        for alias in ("default", "throttle")
    }
    _lock_out("dave@example.org")
    refusal = throttle.refusal("dave@example.org", None)
    assert refusal is not None and refusal.scope == "account"
    assert 15 <= refusal.minutes <= 30
    assert throttle.refusal("erin@example.org", None) is None
    throttle.clear_account("dave@example.org")
    assert throttle.refusal("dave@example.org", None) is None
