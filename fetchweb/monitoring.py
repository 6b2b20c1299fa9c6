"""/metrics (Prometheus) and /healthz (readiness): for machines, not people.

The IDLE check asks the IDLE process's own endpoint (``manage.py idle --health``).

See docs/metrics.md and the README's "Monitoring" section.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import urllib.request
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from retrieval import observability

logger = logging.getLogger(__name__)

CHECK_TIMEOUT = 2.0  # seconds per dependency: a health check must answer quickly


# --- /metrics ---------------------------------------------------------------------


def _client_allowed(request: HttpRequest) -> bool:
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    for network in settings.FETCH_METRICS_ALLOW:
        try:
            if address in ipaddress.ip_network(network.strip(), strict=False):
                return True
        except ValueError:
            logger.warning("FETCH_METRICS_ALLOW: %r is not a network", network)
    return False


def _bearer(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Allowed to a client in FETCH_METRICS_ALLOW, or with the bearer token.

    A token that is sent but wrong is refused even from an allowed network.
    """
    expected = settings.FETCH_METRICS_TOKEN
    token = _bearer(request)
    if token is not None:
        allowed = bool(expected) and hmac.compare_digest(
            token.encode(), expected.encode()
        )
    else:
        allowed = _client_allowed(request)
    if not allowed:
        response = HttpResponse(
            "metrics: not allowed from here\n",
            status=401 if expected else 403,
            content_type="text/plain",
        )
        if expected:
            response["WWW-Authenticate"] = 'Bearer realm="fetchweb metrics"'
        return response
    body = generate_latest(observability.registry())
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


# --- /healthz ---------------------------------------------------------------------


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _broker() -> str:
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_connect_timeout=CHECK_TIMEOUT,
            socket_timeout=CHECK_TIMEOUT,
        )
        try:
            client.ping()
        finally:
            client.close()
        return "ok"
    folder = Path(str(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]))
    if not folder.is_dir():
        raise FileNotFoundError(f"the file broker's folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"the file broker's folder {folder} is not writable")
    return "ok"


def _idle() -> str:
    url = settings.FETCH_IDLE_HEALTH
    if not url.startswith(("http://", "https://")):
        raise ValueError("FETCH_IDLE_HEALTH must be an http(s) URL")
    with urllib.request.urlopen(url, timeout=CHECK_TIMEOUT) as response:
        if response.status != 200:
            raise OSError(f"answered HTTP {response.status}")
    return "ok"


def readiness() -> tuple[bool, dict[str, str]]:
    """Each dependency's state: "ok", or "fail: <exception class>"."""
    checks_to_run = {"database": _database, "broker": _broker}
    if settings.FETCH_IDLE_HEALTH:
        checks_to_run["idle"] = _idle
    checks: dict[str, str] = {}
    for name, check in checks_to_run.items():
        try:
            checks[name] = check()
        except Exception as exc:
            # The class names what failed; the text could repeat a URL with a
            # password in it, so it goes to the log only, at debug level.
            checks[name] = f"fail: {type(exc).__name__}"
            logger.warning("health check %s failed: %s", name, type(exc).__name__)
            logger.debug("health check %s: %s", name, exc)
    return all(v == "ok" for v in checks.values()), checks


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when the database, the broker and (with FETCH_IDLE_HEALTH)
    the IDLE process answer, 503 naming the one that does not."""
    ok, checks = readiness()
    return JsonResponse(
        {"status": "ok" if ok else "fail", "checks": checks}, status=200 if ok else 503
    )
