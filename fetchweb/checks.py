"""System checks that refuse an unsafe production start.

They run with every management command (migrate, check) and so before the service
starts; with DEBUG on they stay quiet, because the zero-configuration default is
meant for one developer's machine.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register
from django.core.checks import Warning as CheckWarning
from django.db import DatabaseError

DOCS = "See .env.example and the README's configuration table."


@register()
def production_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    if settings.DEBUG:
        return []
    errors: list[Error] = []
    if (
        settings.SECRET_KEY == settings.DEV_SECRET_KEY
        or len(settings.SECRET_KEY) < 40
        or settings.SECRET_KEY_GENERATED
    ):
        errors.append(
            Error(
                "SECRET_KEY is not set in the environment (it comes from the file "
                f"{settings.SECRETS_FILE} of this machine), or it is the development "
                "default or too short.",
                hint="Set SECRET_KEY to 50 random characters, the same for every "
                "process. " + DOCS,
                id="fetchweb.E001",
            )
        )
    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        errors.append(
            Error(
                "DEBUG is off but the database is SQLite.",
                hint="Set DATABASE_URL to a PostgreSQL database. " + DOCS,
                id="fetchweb.E002",
            )
        )
    if not settings.FIELD_ENCRYPTION_KEYS or settings.FIELD_ENCRYPTION_KEYS_GENERATED:
        errors.append(
            Error(
                "FIELD_ENCRYPTION_KEYS is not set in the environment: mailbox "
                f"passwords would be encrypted with the key in {settings.SECRETS_FILE}, "
                "which other processes and hosts (web, worker, beat) do not share.",
                hint="Generate one with `python manage.py generate_encryption_key`. "
                + DOCS,
                id="fetchweb.E003",
            )
        )
    broker_error = _broker_unreachable()
    if broker_error:
        errors.append(Error(broker_error, hint=DOCS, id="fetchweb.E004"))
    return errors


@register()
def encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """A malformed key fails `check` (and so `migrate` and the start), in every
    mode, instead of failing the first poll that needs a password."""
    from retrieval.crypto import validate_keys

    problem = validate_keys(settings.FIELD_ENCRYPTION_KEYS)
    if not problem:
        return []
    return [
        Error(
            f"FIELD_ENCRYPTION_KEYS cannot be used: {problem}",
            hint="Each key is 32 random bytes in base64url, as printed by "
            "`python manage.py generate_encryption_key`; separate keys with commas. "
            + DOCS,
            id="fetchweb.E005",
        )
    ]


def _broker_unreachable() -> str:
    if not settings.REDIS_URL:
        return "DEBUG is off but no REDIS_URL is set (the file broker serves one host only)."
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        return f"The broker at REDIS_URL cannot be reached: {exc}"
    return ""


@register()
def staff_without_superuser(
    app_configs: Any = None, **kwargs: Any
) -> list[CheckWarning]:
    """The admin admits superusers only (fetchweb/adminsite.py): a staff flag on
    anyone else grants nothing, and suggests a way around the tenancy that is
    closed. Say so, whatever DEBUG is."""
    from accounts.models import User

    try:
        emails = list(
            User.objects.filter(is_staff=True, is_superuser=False)
            .order_by("email")
            .values_list("email", flat=True)[:6]
        )
    except DatabaseError:
        return []  # not migrated yet: there is nobody to warn about
    if not emails:
        return []
    shown = ", ".join(emails[:5]) + (", ..." if len(emails) > 5 else "")
    return [
        CheckWarning(
            f"Accounts with staff status that are not superusers: {shown}. The "
            "administration site admits superusers only, so staff status gives "
            "them nothing.",
            hint="Clear is_staff on them (domain administrators use the mailbox "
            "pages), or make them superusers if they are meant to administer "
            "the whole service.",
            id="fetchweb.W001",
        )
    ]


@register()
def kept_sessions_unused(app_configs: Any = None, **kwargs: Any) -> list[CheckWarning]:
    """FETCH_KEEP_SESSIONS asked for, in a configuration where it does nothing
    or little (retrieval/services/kept.py)."""
    if settings.FETCH_KEEP_SESSIONS <= 0:
        return []
    if settings.FETCH_MAX_SESSIONS_PER_HOST:
        return [
            CheckWarning(
                "FETCH_KEEP_SESSIONS is set but no session is kept while "
                "FETCH_MAX_SESSIONS_PER_HOST limits the sessions open to a host: "
                "a kept session would stay open outside that count.",
                hint="Set FETCH_MAX_SESSIONS_PER_HOST=0 to keep sessions, or "
                "FETCH_KEEP_SESSIONS=0.",
                id="fetchweb.W002",
            )
        ]
    if settings.FETCH_POLL_SHARDS <= 0:
        return [
            CheckWarning(
                "FETCH_KEEP_SESSIONS is set without FETCH_POLL_SHARDS: a mailbox's "
                "next poll reaches the process that kept its session only by chance.",
                hint="Set FETCH_POLL_SHARDS (bin/run then starts one single-process "
                "worker per shard).",
                id="fetchweb.W003",
            )
        ]
    return []
