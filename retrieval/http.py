"""The request of a page behind ``login_required``, for the type checker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest

if TYPE_CHECKING:
    from accounts.models import User


class AuthenticatedHttpRequest(HttpRequest):
    """A request whose user has signed in (``login_required`` ran first)."""

    user: User  # type: ignore[assignment]
