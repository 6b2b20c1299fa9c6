"""Fixtures shared by the whole suite. Nothing here may import Django at module
level: ``tests/engine`` and ``tests/rcfile`` run with ``-p no:django``."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import pytest

from tests.support.dovecot import Dovecot, MailUser
from tests.support.network_guard import loopback_only
from tests.support.ports import free_port
from tests.support.redis import redis_url_session

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.support.oauth_server import OAuthServer
    from tests.support.smtp_listener import SmtpListener


# ---- real servers: Dovecot, SMTP/LMTP listeners, Redis, network guard --------
# (tests/support/; PostgreSQL is started by tests/services_plugin.py)


@pytest.fixture(autouse=True)
def _loopback_only(request: pytest.FixtureRequest) -> Iterator[None]:
    """Connections beyond loopback raise NetworkBlockedError (see network_guard)."""
    if request.node.get_closest_marker("allow_network"):
        yield
        return
    with loopback_only():
        yield


@pytest.fixture(autouse=True)
def _private_caches(request: pytest.FixtureRequest) -> None:
    """Each Django test gets empty caches of its own: the settings' file cache
    under var/ would carry rate-limit and sign-in counts from one test (and one
    run) to the next. Tests that set CACHES themselves still win."""
    if not request.config.pluginmanager.hasplugin("django"):
        return
    if request.node.get_closest_marker("live") or request.node.get_closest_marker(
        "celery"
    ):
        return  # these start real processes that must share the real cache
    import uuid

    settings = request.getfixturevalue("settings")
    settings.CACHES = {
        alias: {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"{alias}-{uuid.uuid4().hex}",
        }
        for alias in ("default", "throttle")
    }


@pytest.fixture
def concurrent_db() -> None:
    """Skip on the in-memory SQLite test database: with its shared cache, a table
    another thread's connection reads is locked (SQLITE_LOCKED, not retried by the
    busy timeout), so a test whose poll or page runs in another thread would fail
    at random. A SQLite file, as in production, waits instead."""
    from django.db import connection

    # is_in_memory_db is the SQLite wrapper's own (not in the stubs' base class).
    in_memory = getattr(connection, "is_in_memory_db", lambda: False)()
    if connection.vendor == "sqlite" and in_memory:
        pytest.skip("needs concurrent writers: PostgreSQL (or a SQLite file)")


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    """One real Dovecot (pop3, pop3s, imap, imaps, lmtp) for the session."""
    server = Dovecot.start(tmp_path_factory.mktemp("dovecot"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def oauth_server() -> Iterator[OAuthServer]:
    """A local OAuth2 authorization server (consent, tokens, revocation,
    introspection) on a free 127.0.0.1 port, for the session."""
    from tests.support.oauth_server import OAuthServer

    server = OAuthServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def oauth_dovecot(
    tmp_path_factory: pytest.TempPathFactory, oauth_server: OAuthServer
) -> Iterator[Dovecot]:
    """A second real Dovecot whose XOAUTH2/OAUTHBEARER logins are checked by
    ``oauth_server``'s introspection (``passdb { driver = oauth2 }``)."""
    from tests.support.oauth_dovecot import OAuthDovecot

    server = OAuthDovecot.start(
        tmp_path_factory.mktemp("dovecot-oauth"),
        introspection_url=f"{oauth_server.url}/introspect",
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mailuser(dovecot: Dovecot) -> MailUser:
    """A fresh Dovecot account with an empty mailbox and a random password."""
    user = MailUser(
        name=f"user{secrets.token_hex(5)}", password=secrets.token_urlsafe(12)
    )
    dovecot.add_user(user.name, user.password)
    return user


@pytest.fixture
def smtp_listener() -> Iterator[SmtpListener]:
    """A real SMTP listener on a free 127.0.0.1 port, capturing what it receives."""
    from tests.support.smtp_listener import SmtpListener

    listener = SmtpListener.start()
    try:
        yield listener
    finally:
        listener.stop()


@pytest.fixture
def lmtp_listener() -> Iterator[SmtpListener]:
    """The same in LMTP mode: one reply per recipient after the final dot."""
    from tests.support.smtp_listener import SmtpListener

    listener = SmtpListener.start(lmtp=True)
    try:
        yield listener
    finally:
        listener.stop()


@pytest.fixture
def unused_port() -> int:
    """A 127.0.0.1 port nothing listens on (connections are refused)."""
    return free_port()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``REDIS_URL`` from the environment, else a private redis-server's URL."""
    yield from redis_url_session(tmp_path_factory)


# ---- end of real servers -----------------------------------------------------
