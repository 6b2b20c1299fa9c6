from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import UserChangeForm, UserCreationForm

from accounts.models import Domain, User
from retrieval import services

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.http import HttpRequest

# Every write goes through retrieval.services (save_model, delete_model,
# delete_queryset; a domain's administrators too). A person's groups and
# permissions are saved by Django's save_related: fetchweb does not use them.


class EmailUserCreationForm(UserCreationForm):
    class Meta:
        model = User
        fields = ("email",)


class EmailUserChangeForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"
        help_texts = {
            # The admin admits superusers only (fetchweb/adminsite.py); say so
            # where the flag is set, so nobody grants it expecting an effect.
            "is_staff": "Gives nothing on its own: this administration site is for "
            "superusers only, and manage.py check warns about staff accounts that "
            "are not superusers (fetchweb.W001). Domain administrators use the "
            "mailbox pages.",
        }


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    form = EmailUserChangeForm
    add_form = EmailUserCreationForm
    ordering = ("email",)
    list_display = (
        "email",
        "full_name",
        "domain",
        "is_staff",
        "is_superuser",
        "is_active",
    )
    list_filter = ("is_staff", "is_superuser", "is_active", "domain")
    search_fields = ("email", "full_name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Person", {"fields": ("full_name", "domain")}),
        (
            "Permissions",
            {
                "fields": (
                    "is_active",
                    "is_staff",
                    "is_superuser",
                    "groups",
                    "user_permissions",
                )
            },
        ),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),
    )

    def save_model(
        self,
        request: HttpRequest,
        obj: User,
        form: Any,
        change: bool,  # noqa: FBT001 (Django API)
    ) -> None:
        services.user_save(user=obj)

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        services.user_delete(user=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        services.users_delete(users=queryset)


@admin.register(Domain)
class DomainAdmin(admin.ModelAdmin):
    list_display = ("name", "created_at")
    search_fields = ("name",)
    filter_horizontal: ClassVar = ("admins",)

    def save_model(
        self,
        request: HttpRequest,
        obj: Domain,
        form: Any,
        change: bool,  # noqa: FBT001 (Django API)
    ) -> None:
        # The administrators are set by the service too, not by save_related.
        services.domain_save(domain=obj, admins=form.cleaned_data.get("admins"))

    def save_related(
        self,
        request: HttpRequest,
        form: Any,
        formsets: Any,
        change: bool,  # noqa: FBT001 (Django API)
    ) -> None:
        """Django saves the form's many-to-many here; save_model did."""

    def delete_model(self, request: HttpRequest, obj: Domain) -> None:
        services.domain_delete(domain=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Domain]) -> None:
        services.domains_delete(domains=queryset)
