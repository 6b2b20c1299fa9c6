"""The values of domains and people, for the API's superuser writes (the pages have
no such forms: the admin, also superusers only, has Django's own)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import password_validation

from accounts.models import Domain, User


class DomainForm(forms.ModelForm):  # type: ignore[type-arg]
    admins = forms.ModelMultipleChoiceField(
        queryset=User.objects.filter(is_active=True), required=False
    )

    class Meta:
        model = Domain
        fields = ("name",)

    def clean_name(self) -> str:
        return str(self.cleaned_data["name"]).strip().lower()


class PersonForm(forms.ModelForm):  # type: ignore[type-arg]
    """A person who is not a superuser (superusers are made with createsuperuser)."""

    password = forms.CharField(required=False, strip=False, max_length=1000)

    class Meta:
        model = User
        fields = ("email", "full_name", "domain", "is_active")

    def clean_email(self) -> str:
        return str(self.cleaned_data["email"]).strip().lower()

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        password = cleaned.get("password")
        if password:
            try:
                password_validation.validate_password(password, self.instance)
            except forms.ValidationError as exc:
                self.add_error("password", exc)
        return cleaned
