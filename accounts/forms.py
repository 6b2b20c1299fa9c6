"""Sign-in forms that refuse, with words a person understands, while throttled."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import (
    AuthenticationForm,
    PasswordChangeForm,
    PasswordResetForm,
    SetPasswordForm,
)

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


# --- passwords ----------------------------------------------------------------------


class _PasswordSetThroughServices:
    """Django's password forms store the new password through the services (the
    one write path), which the audit log then records as "password changed"."""

    user: Any
    cleaned_data: dict[str, Any]

    def save(self, commit: bool = True) -> Any:  # noqa: FBT001, FBT002 (Django's)
        from retrieval import services

        password = self.cleaned_data["new_password1"]
        if not commit:
            self.user.set_password(password)
            return self.user
        return services.user_password_set(user=self.user, password=password)


class ServicePasswordChangeForm(_PasswordSetThroughServices, PasswordChangeForm):
    pass


class ServiceSetPasswordForm(_PasswordSetThroughServices, SetPasswordForm):
    pass


class ThrottledPasswordResetForm(PasswordResetForm):
    """Refuses, in words, past the reset request limits (accounts/throttle.py);
    otherwise counts the request, whether or not the address has an account."""

    request: Any = None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        email = (cleaned or {}).get("email") or ""
        if email:
            address = throttle.client_address(self.request)
            refusal = throttle.reset_refusal(email, address)
            if refusal is not None:
                raise forms.ValidationError(refusal.message, code="throttled")
            throttle.record_reset(email, address)
        return cleaned  # type: ignore[return-value]
