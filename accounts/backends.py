"""The model backend, refusing an account while it is throttled.

The sign-in forms refuse first with a readable message (accounts/forms.py); this
covers every other caller of ``authenticate()``, so no route skips the limit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef

from accounts import throttle
from accounts.models import Domain, User

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

    def get_user(self, user_id: Any) -> Any:
        """The signed-in person, with whether they administer a domain read in
        the same query (User.is_domain_admin): every page's navigation asks."""
        administers = Domain.admins.through.objects.filter(user_id=OuterRef("pk"))
        try:
            user = User._default_manager.annotate(
                administers_any=Exists(administers)
            ).get(pk=user_id)
        except User.DoesNotExist:
            return None
        return user if self.user_can_authenticate(user) else None
