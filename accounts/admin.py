from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import UserChangeForm, UserCreationForm

from accounts.models import AuditEvent, DeliveryTarget, Domain, User
from fetchweb.adminsite import is_admin_user
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
        ("Person", {"fields": ("full_name", "domain", "time_zone")}),
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


@admin.register(DeliveryTarget)
class DeliveryTargetAdmin(admin.ModelAdmin):
    """The listeners offered to domain administrators: a superuser's choice (the
    console's *Delivery targets* page edits the same rows, through the same
    services). Superusers only, said here too, not only by the admin site."""

    list_display = ("name", "kind", "host", "port")
    list_filter = ("kind",)
    search_fields = ("name", "host")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_admin_user(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_admin_user(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_admin_user(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_admin_user(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_admin_user(request.user)

    def save_model(
        self,
        request: HttpRequest,
        obj: DeliveryTarget,
        form: Any,
        change: bool,  # noqa: FBT001 (Django API)
    ) -> None:
        services.delivery_target_save(target=obj)

    def delete_model(self, request: HttpRequest, obj: DeliveryTarget) -> None:
        services.delivery_target_delete(target=obj)

    def delete_queryset(
        self, request: HttpRequest, queryset: QuerySet[DeliveryTarget]
    ) -> None:
        services.delivery_targets_delete(targets=queryset)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The audit log: for superusers, and read-only for them too."""

    list_display = (
        "created_at",
        "actor_label",
        "address",
        "action",
        "object_type",
        "object_repr",
        "summary",
    )
    list_filter = ("action", "object_type")
    search_fields = ("actor_label", "object_repr", "summary", "address")
    date_hierarchy = "created_at"
    list_select_related = ("actor",)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
