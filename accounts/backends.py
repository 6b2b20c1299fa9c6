"""The model backend, refusing an account while it is throttled.

The sign-in forms refuse first with a readable message (accounts/forms.py); this
covers every other caller of ``authenticate()``, so no route skips the limit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from accounts import throttle

if TYPE_CHECKING:
    from django.http import HttpRequest


class ThrottledModelBackend(ModelBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        name = username if username is not None else kwargs.get("email")
        if throttle.refusal(name, throttle.client_address(request)) is not None:
            # PermissionDenied stops authenticate() at once: no other backend tries.
            raise PermissionDenied
        return super().authenticate(request, username, password, **kwargs)
