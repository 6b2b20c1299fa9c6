"""Sign-in forms that refuse, with words a person understands, while throttled."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from accounts import audit, throttle


class ThrottledLoginMixin:
    """Checks the throttle before the password is even looked at, so that the
    right password is refused as well once the limit is reached."""

    request: Any
    cleaned_data: dict[str, Any]
    # The refusal's message, for templates that show their own wording otherwise.
    throttled = ""

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        refusal = throttle.refusal(username, throttle.client_address(self.request))
        if refusal is not None:
            audit.record_throttled(username, self.request, f"{refusal.scope} limit")
            self.throttled = refusal.message
            raise forms.ValidationError(refusal.message, code="throttled")
        return super().clean()  # type: ignore[misc,no-any-return]


class ThrottledAuthenticationForm(ThrottledLoginMixin, AuthenticationForm):
    pass


class ThrottledAdminAuthenticationForm(ThrottledLoginMixin, AdminAuthenticationForm):
    pass
