"""Response headers that browsers enforce.

Django 5.2 has no Content-Security-Policy of its own, and the policy is one fixed
header, so a few lines here instead of a dependency. The policy allows scripts and
styles from our own origin only (htmx is served as a static file): no inline
``<script>``, no ``on*=`` handlers, no ``style=`` attributes, no ``eval``. A test
scans templates/ so that none creeps back in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.http import HttpRequest, HttpResponse


class SecurityHeadersMiddleware:
    """Adds Content-Security-Policy and Permissions-Policy to every response.

    A view may set its own Content-Security-Policy (it then wins); an empty
    CONTENT_SECURITY_POLICY setting turns the header off.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.csp = settings.CONTENT_SECURITY_POLICY
        self.permissions = settings.PERMISSIONS_POLICY

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.csp and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = self.csp
        if self.permissions and "Permissions-Policy" not in response:
            response["Permissions-Policy"] = self.permissions
        return response
