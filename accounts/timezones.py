"""Times on the pages in the person's own zone (User.time_zone), named."""

from __future__ import annotations

import zoneinfo
from typing import TYPE_CHECKING

from django.utils import timezone

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.http import HttpRequest, HttpResponse


def zone_of(user: object) -> zoneinfo.ZoneInfo | None:
    """The person's zone, or None for the installation's (TIME_ZONE). A name
    that this system's zoneinfo no longer knows falls back to that too."""
    name = getattr(user, "time_zone", "") or ""
    if not name:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


class TimeZoneMiddleware:
    """Activates the signed-in person's zone for the request, so that templates
    (and timezone.localtime) show their times. Goes after AuthenticationMiddleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        zone = zone_of(user) if user is not None and user.is_authenticated else None
        if zone is None:
            timezone.deactivate()
        else:
            timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


def context(request: HttpRequest) -> dict[str, str]:
    """Template context: the zone the page's times are in, for "(Europe/Berlin)"."""
    return {"time_zone_name": timezone.get_current_timezone_name()}
