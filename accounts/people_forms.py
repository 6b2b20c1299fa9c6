"""The forms of the people and domain pages (accounts/people_views.py)."""

from __future__ import annotations

import re
import zoneinfo
from functools import cache
from typing import TYPE_CHECKING, Any

from django import forms
from django.conf import settings
from django.contrib.auth import password_validation

from accounts.models import AuditEvent, DeliveryTarget, Domain, User

if TYPE_CHECKING:
    from django.db.models import QuerySet


class PersonForm(forms.Form):
    """A new person who is not a superuser (no form here makes one), in one of
    the domains the one adding them administers; a superuser may leave the
    domain empty."""

    email = forms.EmailField(max_length=254)
    full_name = forms.CharField(max_length=150, required=False)
    domain = forms.ModelChoiceField(queryset=Domain.objects.none())

    def __init__(
        self, *args: Any, domains: QuerySet[Domain], superuser: bool, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["domain"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = domains
        field.required = not superuser
        field.empty_label = "(no domain)" if superuser else None

    def clean_email(self) -> str:
        email = str(self.cleaned_data["email"]).strip().lower()
        if User.objects.filter(email=email).exists():
            raise forms.ValidationError("Someone already signs in with this address.")
        return email


class AddPersonForm(PersonForm):
    """Added with a password chosen for them (an invitation lets them choose)."""

    password1 = forms.CharField(
        label="Password", strip=False, widget=forms.PasswordInput
    )
    password2 = forms.CharField(
        label="Password again", strip=False, widget=forms.PasswordInput
    )

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        first, second = cleaned.get("password1"), cleaned.get("password2")
        if first and second and first != second:
            self.add_error("password2", "The two passwords differ.")
        elif first:
            probe = User(
                email=cleaned.get("email") or "",
                full_name=cleaned.get("full_name") or "",
            )
            try:
                password_validation.validate_password(first, probe)
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return cleaned


class ActiveForm(forms.Form):
    action = forms.ChoiceField(choices=[("disable", "Disable"), ("enable", "Enable")])


_POSTMASTER = re.compile(r"^[^\s@]+(@[^\s@]+)?$")


class DomainDefaultsForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Domain
        fields = ("default_delivery", "default_postmaster", "default_poll_interval")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["default_delivery"]
        assert isinstance(field, forms.ModelChoiceField)
        field.empty_label = "(the installation's listener)"

    def clean_default_postmaster(self) -> str:
        value = str(self.cleaned_data.get("default_postmaster") or "").strip()
        if value and not _POSTMASTER.match(value):
            raise forms.ValidationError(
                "A local name or an address, such as postmaster or postmaster@example.org."
            )
        return value


class DeliveryTargetForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = DeliveryTarget
        fields = ("name", "kind", "host", "port")


class DeleteTargetForm(forms.Form):
    delete = forms.IntegerField(min_value=1)


@cache
def time_zone_names() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


class TimeZoneForm(forms.Form):
    time_zone = forms.ChoiceField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["time_zone"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [
            ("", f"The installation's ({settings.TIME_ZONE})"),
            *((name, name) for name in time_zone_names()),
        ]


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, max_length=320, label="Who")
    action = forms.ChoiceField(
        required=False,
        choices=[("", "any action"), *AuditEvent.Action.choices],
    )
