"""Django's admin, for superusers only.

The admin edits rows directly: owners, domains, commands run on this server,
delivery targets, certificate checks. None of the tenancy rules of the mailbox
pages (retrieval.permissions, retrieval.forms) apply there, so it is no place for
anyone who is not a superuser, whatever their ``is_staff`` flag says. Such an
account is refused at every admin URL and warned about by the system check
fetchweb.W001 (fetchweb/checks.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin
from django.core.exceptions import ValidationError

from accounts.forms import ThrottledAdminAuthenticationForm

if TYPE_CHECKING:
    from django.http import HttpRequest

    from accounts.models import User


def is_admin_user(user: object) -> bool:
    """Who may use the admin: an active superuser, nobody else."""
    return bool(
        getattr(user, "is_active", False) and getattr(user, "is_superuser", False)
    )


class SuperuserAuthenticationForm(ThrottledAdminAuthenticationForm):
    """The admin's login form: throttled like /login/ (accounts/throttle.py), and
    with the right password the person is still refused unless a superuser
    (Django's own form lets every staff account in)."""

    def confirm_login_allowed(self, user: User) -> None:
        super().confirm_login_allowed(user)
        if not is_admin_user(user):
            raise ValidationError(
                "The administration site is for superusers only. Manage your "
                "mailboxes and domains on the mailbox pages.",
                code="invalid_login",
            )


class SuperuserAdminSite(admin.AdminSite):
    site_header = "fetchweb administration (superusers)"
    login_form = SuperuserAuthenticationForm

    def has_permission(self, request: HttpRequest) -> bool:
        # Every admin view (index, app pages, change lists, add, change, delete,
        # history, actions, autocomplete, view-on-site) asks this first.
        return is_admin_user(request.user)
