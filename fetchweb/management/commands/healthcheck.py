"""`manage.py healthcheck [--url URL]`: the readiness of /healthz, for container
health checks. Exit 0 when ready, 1 when not; prints the JSON either way.

Without --url it checks the database, the broker and (FETCH_IDLE_HEALTH) the
IDLE process from this process (worker, beat). With --url it asks a running web
server instead, sending the first ALLOWED_HOSTS name as the Host header so that
a production ALLOWED_HOSTS without "localhost" still lets the check in.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from fetchweb.monitoring import CHECK_TIMEOUT, readiness


class Command(BaseCommand):
    help = "Check the database, the broker and the IDLE process (exit 1 if not ready)."
    # The answer must be this command's JSON, quickly: not the system checks'
    # (which would stop at an unreachable broker before saying anything else).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", help="ask this /healthz URL instead")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["url"]:
            ok, body = self._ask(options["url"])
        else:
            ready, checks = readiness()
            ok = ready
            body = {"status": "ok" if ready else "fail", "checks": checks}
        self.stdout.write(json.dumps(body))
        if not ok:
            raise CommandError("not ready", returncode=1)

    def _ask(self, url: str) -> tuple[bool, dict[str, Any]]:
        if not url.startswith(("http://", "https://")):
            raise CommandError("--url must be an http(s) URL")
        request = urllib.request.Request(url)
        hosts = [h for h in settings.ALLOWED_HOSTS if h and h != "*"]
        if hosts:
            request.add_header("Host", hosts[0].lstrip("."))
        try:
            with urllib.request.urlopen(request, timeout=CHECK_TIMEOUT * 3) as response:
                return response.status == 200, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                return False, json.loads(exc.read())
            except ValueError:
                return False, {"status": "fail", "http": exc.code}
        except OSError as exc:
            return False, {"status": "fail", "error": type(exc).__name__}
