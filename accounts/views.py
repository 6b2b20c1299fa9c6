"""The person's own account pages: API tokens, their password."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django import forms
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_http_methods

from accounts.forms import (
    ServicePasswordChangeForm,
    ServiceSetPasswordForm,
    ThrottledPasswordResetForm,
)
from accounts.models import ApiToken
from retrieval import services

if TYPE_CHECKING:
    from django.forms import Form
    from django.http import HttpRequest, HttpResponse


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="What the token is for, such as “backup script”.",
    )


class RevokeForm(forms.Form):
    revoke = forms.IntegerField(min_value=1)


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    """The person's API tokens: make one (shown once, on this answer only), revoke
    one. Only the SHA-256 of a token's secret is stored."""
    user = request.user
    created = ""
    form = TokenForm()
    if request.method == "POST" and "revoke" in request.POST:
        revoke = RevokeForm(request.POST)
        if revoke.is_valid() and services.token_revoke(
            user=user,  # type: ignore[arg-type]
            pk=revoke.cleaned_data["revoke"],
        ):
            messages.success(request, "The token was revoked.")
        else:
            messages.error(request, "You have no such active token.")
        return redirect("accounts:tokens")
    if request.method == "POST":
        form = TokenForm(request.POST)
        if form.is_valid():
            try:
                _, created = services.token_create(
                    user=user,  # type: ignore[arg-type]
                    name=form.cleaned_data["name"],
                )
            except services.TokenLimit as exc:
                form.add_error(None, str(exc))
            else:
                form = TokenForm()
    rows = ApiToken.objects.filter(user_id=int(user.pk or 0))
    response = render(
        request,
        "accounts/tokens.html",
        {"form": form, "created": created, "tokens": rows},
    )
    response["Cache-Control"] = "no-store"  # the new token is on this page
    return response


# --- passwords: Django's views, our templates, the writes through the services ----


class PasswordChangeView(auth_views.PasswordChangeView):
    """Change one's password; the person stays signed in (Django keeps the
    session's hash up to date)."""

    form_class = ServicePasswordChangeForm
    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("accounts:password-change-done")


class PasswordChangeDoneView(auth_views.PasswordChangeDoneView):
    template_name = "accounts/password_change_done.html"


class PasswordResetView(auth_views.PasswordResetView):
    """Mails a one-time link to the address if it has an account; answers the
    same either way. Throttled per email address and per client address."""

    form_class = ThrottledPasswordResetForm
    template_name = "accounts/password_reset.html"
    email_template_name = "accounts/password_reset_email.txt"
    subject_template_name = "accounts/password_reset_subject.txt"
    success_url = reverse_lazy("accounts:password-reset-done")

    def get_form(self, form_class: type[Form] | None = None) -> Form:
        form = super().get_form(form_class)
        form.request = self.request  # type: ignore[attr-defined]
        return form


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "accounts/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    form_class = ServiceSetPasswordForm
    template_name = "accounts/password_reset_confirm.html"
    success_url = reverse_lazy("accounts:password-reset-complete")


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "accounts/password_reset_complete.html"
