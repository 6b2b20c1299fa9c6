"""The admin's pages for mailboxes, polls and ledgers.

Only superusers reach them (fetchweb/adminsite.py), so nothing here narrows what
is shown: the tenancy rules live in the mailbox pages, not in the admin. Every
write goes through retrieval.services, like the pages' (save_model,
delete_model, delete_queryset, save_formset and the actions below).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse

from retrieval import services
from retrieval.models import (
    ACCOUNT_BUSY,
    PASSWORD_AGAIN,
    Mailbox,
    MessageResult,
    MultidropRule,
    PollRun,
    SeenMessage,
)

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.http import HttpRequest, HttpResponse


class MailboxForm(forms.ModelForm):
    """The password is write-only: it is never sent back to the browser."""

    new_password = forms.CharField(
        label="Password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(
            render_value=False, attrs={"autocomplete": "new-password"}
        ),
        help_text="Leave empty to keep the stored password.",
    )
    clear_password = forms.BooleanField(
        label="Remove the stored password", required=False
    )

    class Meta:
        model = Mailbox
        fields = (
            "name",
            "owner",
            "domain",
            *Mailbox.SETTINGS,
            "options",
        )

    def clean_new_password(self) -> str:
        value: str = self.cleaned_data["new_password"]
        if any(c in value for c in "\r\n\0"):
            raise forms.ValidationError(
                "A password cannot contain line breaks or NUL characters."
            )
        return value

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if services.password_needed(mailbox=self.instance, values=cleaned):
            self.add_error("new_password", PASSWORD_AGAIN)
        if services.account_busy(mailbox=self.instance, values=cleaned):
            self.add_error(None, ACCOUNT_BUSY)
        # The multidrop editor's and the importer's check, on the JSON.
        found = services.multidrop_problems(
            values=services.multidrop_in_options(options=cleaned.get("options"))
        )
        for name, problems in found.items():
            for problem in problems:
                self.add_error("options", f"{name}: {problem}")
        if "owner" in cleaned and "domain" in cleaned:
            refusal = services.owner_domain_refusal(
                owner=cleaned["owner"], domain=cleaned["domain"]
            )
            if refusal:
                self.add_error("domain", refusal)
        refusal = services.delete_after_days_refusal(
            keep=bool(cleaned.get("keep")), days=cleaned.get("delete_after_days")
        )
        if refusal:
            self.add_error("delete_after_days", refusal)
        return cleaned


class MultidropRuleInline(admin.TabularInline):
    model = MultidropRule
    extra = 0
    fields = ("position", "remote", "local")


@admin.register(Mailbox)
class MailboxAdmin(admin.ModelAdmin):
    inlines = (MultidropRuleInline,)
    form = MailboxForm
    list_display = (
        "__str__",
        "owner",
        "protocol",
        "host",
        "enabled",
        "next_poll_at",
        "lease_until",
    )
    list_filter = ("protocol", "enabled", "tls_mode", "domain")
    search_fields = ("host", "username", "name", "owner__email")
    readonly_fields = ("password_state", "next_poll_at", "lease_owner", "lease_until")
    actions = ("poll_now",)
    fieldsets = (
        (None, {"fields": ("name", "owner", "domain", "enabled", "poll_interval")}),
        (
            "Remote server",
            {
                "fields": (
                    "protocol",
                    "host",
                    "port",
                    "tls_mode",
                    "verify_tls",
                    "ca_file",
                )
            },
        ),
        (
            "Login",
            {
                "fields": (
                    "auth",
                    "username",
                    "password_state",
                    "new_password",
                    "clear_password",
                )
            },
        ),
        (
            "Messages",
            {
                "fields": (
                    "folders",
                    "keep",
                    "delete_after_days",
                    "fetchall",
                    "timeout",
                )
            },
        ),
        (
            "Delivery",
            {
                "fields": (
                    "delivery_kind",
                    "delivery_host",
                    "delivery_port",
                    "recipient",
                )
            },
        ),
        ("More fetchmail options", {"classes": ("collapse",), "fields": ("options",)}),
        ("Schedule", {"fields": ("next_poll_at", "lease_owner", "lease_until")}),
    )

    def save_model(
        self,
        request: HttpRequest,
        obj: Mailbox,
        form: forms.ModelForm,
        change: bool,  # noqa: FBT001 (Django API)
    ) -> None:
        # The pages' write path, so the admin keeps the same rules (a changed
        # remote account drops the ledger and needs the password again).
        services.mailbox_save(
            mailbox=obj,
            new_password=form.cleaned_data.get("new_password", ""),
            clear_password=form.cleaned_data.get("clear_password", False),
        )

    def save_formset(
        self,
        request: HttpRequest,
        form: forms.ModelForm,
        formset: Any,
        change: bool,  # noqa: FBT001 (Django API)
    ) -> None:
        """The rules inline: the rows left, in the order of their positions,
        become the mailbox's rules (renumbered from 0)."""
        kept = [
            data
            for data in formset.cleaned_data
            if data and not data.get("DELETE") and data.get("remote")
        ]
        kept.sort(key=lambda data: data.get("position") or 0)
        services.mailbox_rules_replace(
            mailbox=form.instance,
            rules=[(data["remote"], data.get("local") or "") for data in kept],
        )
        # What the admin's history message reads after a formset's own save().
        formset.new_objects, formset.changed_objects, formset.deleted_objects = (
            [],
            [],
            [],
        )

    def delete_model(self, request: HttpRequest, obj: Mailbox) -> None:
        try:
            services.mailbox_delete(mailbox=obj)
        except services.MailboxBusy as exc:
            self.message_user(request, str(exc), messages.ERROR)
            request._fetchweb_not_deleted = True  # type: ignore[attr-defined]

    def response_delete(
        self, request: HttpRequest, obj_display: str, obj_id: Any
    ) -> HttpResponse:
        if getattr(request, "_fetchweb_not_deleted", False):
            return HttpResponseRedirect(
                reverse("admin:retrieval_mailbox_change", args=[obj_id])
            )
        return super().response_delete(request, obj_display, obj_id)

    def delete_queryset(
        self, request: HttpRequest, queryset: QuerySet[Mailbox]
    ) -> None:
        _, busy = services.mailboxes_delete(mailboxes=queryset)
        if busy:
            names = ", ".join(str(m) for m in busy)
            self.message_user(
                request,
                f"Not deleted, being polled right now: {names}.",
                messages.WARNING,
            )

    @admin.display(description="Stored password")
    def password_state(self, obj: Mailbox) -> str:
        return "set (encrypted)" if obj.has_password else "none"

    @admin.action(description="Poll the selected mailboxes now")
    def poll_now(self, request: HttpRequest, queryset: QuerySet[Mailbox]) -> None:
        count = services.mailboxes_poll_request(
            mailbox_ids=list(queryset.values_list("pk", flat=True))
        )
        self.message_user(request, f"{count} poll(s) queued.", messages.SUCCESS)


class MessageResultInline(admin.TabularInline):
    model = MessageResult
    extra = 0
    can_delete = False
    fields = MessageResult.SHOWN
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PollRun)
class PollRunAdmin(admin.ModelAdmin):
    list_display = (
        "mailbox",
        "started_at",
        "outcome",
        "exit_code",
        "delivered",
        "deleted",
        "bytes_fetched",
        "error",
    )
    list_filter = ("outcome", "trigger")
    search_fields = ("mailbox__host", "mailbox__username", "error")
    inlines = (MessageResultInline,)
    readonly_fields = [f.name for f in PollRun._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: PollRun) -> None:
        services.run_delete(run=obj)

    def delete_queryset(
        self, request: HttpRequest, queryset: QuerySet[PollRun]
    ) -> None:
        services.runs_delete(runs=queryset)


@admin.register(SeenMessage)
class SeenMessageAdmin(admin.ModelAdmin):
    list_display = (
        "mailbox",
        "folder",
        "uidvalidity",
        "uid",
        "message_id",
        "delivered_at",
    )
    search_fields = ("uid", "message_id")
    list_filter = ("folder",)

    def save_model(
        self,
        request: HttpRequest,
        obj: SeenMessage,
        form: forms.ModelForm,
        change: bool,  # noqa: FBT001 (Django API)
    ) -> None:
        services.ledger_entry_save(entry=obj)

    def delete_model(self, request: HttpRequest, obj: SeenMessage) -> None:
        services.ledger_entry_delete(entry=obj)

    def delete_queryset(
        self, request: HttpRequest, queryset: QuerySet[SeenMessage]
    ) -> None:
        services.ledger_entries_delete(entries=queryset)
