"""The person's own account pages: API tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.models import ApiToken
from retrieval import services

if TYPE_CHECKING:
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
