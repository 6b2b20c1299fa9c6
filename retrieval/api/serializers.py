"""What the API shows, and the shape of what it accepts (for the schema).

The mailbox's values are checked by retrieval.forms.MailboxForm, not here: the
input serializer only describes them; retrieval.api.views.mailbox_form binds the
form, so a rule is written once.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.models import Domain, User
from retrieval.display import shown_to
from retrieval.forms import default_port
from retrieval.models import ConnectionTest, Mailbox, MessageResult, PollRun


class _Shown(serializers.ModelSerializer):  # type: ignore[type-arg]
    """Texts a server or a program wrote, with a non-superuser's view of
    commands masked (retrieval.display), as the pages show them."""

    masked: tuple[str, ...] = ()

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        request = self.context.get("request")
        mailbox = self._mailbox(instance)
        if request is not None:
            shown = shown_to(request.user, mailbox)
            for name in self.masked:
                if name in data and isinstance(data[name], str):
                    data[name] = shown.text(data[name])
        return data

    def _mailbox(self, instance: Any) -> Mailbox:
        """Runs and connection tests name their mailbox; a message result's
        serializer reaches it through its run."""
        mailbox: Mailbox = instance.mailbox
        return mailbox


class MailboxSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    owner = serializers.EmailField(source="owner.email", read_only=True)
    owner_id = serializers.IntegerField(read_only=True)
    domain = serializers.CharField(source="domain.name", read_only=True, default=None)
    has_password = serializers.BooleanField(read_only=True)
    effective_port = serializers.SerializerMethodField()
    state = serializers.SerializerMethodField()
    last_run = serializers.SerializerMethodField()

    class Meta:
        model = Mailbox
        fields = (
            "id",
            "name",
            "owner",
            "owner_id",
            "domain",
            *Mailbox.SETTINGS,
            "effective_port",
            "has_password",
            "next_poll_at",
            "created_at",
            "updated_at",
            "state",
            "last_run",
        )
        read_only_fields = fields

    def get_effective_port(self, mailbox: Mailbox) -> int:
        return mailbox.port or default_port(mailbox.protocol, mailbox.tls_mode)

    def get_state(self, mailbox: Mailbox) -> str:
        return mailbox_state(mailbox)

    def get_last_run(self, mailbox: Mailbox) -> int | None:
        runs = getattr(mailbox, "recent_runs", None)
        if runs is None:
            runs = list(mailbox.runs.order_by("-started_at")[:1])
        return runs[0].pk if runs else None


FAILING = {PollRun.Outcome.ERROR, PollRun.Outcome.LOST, PollRun.Outcome.TIMEOUT}


def mailbox_state(mailbox: Mailbox) -> str:
    """ok, failing, disabled or never (polled), as the console's filter says."""
    if not mailbox.enabled:
        return "disabled"
    outcome = getattr(mailbox, "last_outcome", None)
    if outcome is None:
        runs = getattr(mailbox, "recent_runs", None)
        if runs is None:
            runs = list(mailbox.runs.order_by("-started_at")[:1])
        outcome = runs[0].outcome if runs else None
    if outcome is None:
        return "never"
    return "failing" if outcome in FAILING else "ok"


class MailboxInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """The values a mailbox is added or changed with; omitted ones keep their
    value (the default, for a new mailbox). Fields only a superuser may set are
    refused for others when they differ from the stored value."""

    owner = serializers.IntegerField(
        required=False, help_text="For whom (a superuser or domain administrator)."
    )
    name = serializers.CharField(required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)
    poll_interval = serializers.IntegerField(required=False)
    protocol = serializers.ChoiceField(Mailbox.Protocol.choices, required=False)
    host = serializers.CharField(required=False)
    port = serializers.IntegerField(required=False, allow_null=True)
    tls_mode = serializers.ChoiceField(Mailbox.TlsMode.choices, required=False)
    verify_tls = serializers.BooleanField(required=False)
    auth = serializers.ChoiceField(Mailbox.Auth.choices, required=False)
    username = serializers.CharField(required=False)
    password = serializers.CharField(
        required=False, write_only=True, help_text="Write-only; never shown back."
    )
    clear_password = serializers.BooleanField(required=False)
    folders = serializers.ListField(child=serializers.CharField(), required=False)
    keep = serializers.BooleanField(required=False)
    delete_after_days = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="With keep: delete messages this many days after their delivery; "
        "null keeps them for ever.",
    )
    fetchall = serializers.BooleanField(required=False)
    ca_file = serializers.CharField(required=False, allow_blank=True)
    timeout = serializers.IntegerField(required=False)
    delivery_kind = serializers.ChoiceField(
        Mailbox.DeliveryKind.choices, required=False
    )
    delivery_host = serializers.CharField(required=False, allow_blank=True)
    delivery_port = serializers.IntegerField(required=False)
    recipient = serializers.CharField(required=False, allow_blank=True)
    mda = serializers.CharField(required=False, allow_blank=True)
    destination_host = serializers.CharField(required=False, allow_blank=True)
    destination_port = serializers.IntegerField(required=False, allow_null=True)
    destination_tls_mode = serializers.ChoiceField(
        Mailbox.TlsMode.choices, required=False
    )
    destination_auth = serializers.ChoiceField(Mailbox.Auth.choices, required=False)
    destination_username = serializers.CharField(required=False, allow_blank=True)
    destination_password = serializers.CharField(
        required=False, write_only=True, help_text="Write-only; never shown back."
    )
    destination_folder = serializers.CharField(required=False)
    destination_flags = serializers.CharField(required=False, allow_blank=True)
    destination_create_folder = serializers.BooleanField(required=False)


class MessageSerializer(_Shown):
    masked = ("listener_reply",)
    mailbox = serializers.IntegerField(source="run.mailbox_id", read_only=True)

    class Meta:
        model = MessageResult
        fields = (
            "id",
            "run",
            "mailbox",
            *MessageResult.SHOWN,
        )
        read_only_fields = fields

    def _mailbox(self, instance: Any) -> Mailbox:
        mailbox: Mailbox = instance.run.mailbox
        return mailbox


class RunSerializer(_Shown):
    masked = ("greeting", "error", "transcript")

    class Meta:
        model = PollRun
        fields = (
            "id",
            "mailbox",
            "trigger",
            "started_at",
            "finished_at",
            "outcome",
            "exit_code",
            "fetched",
            "delivered",
            "deleted",
            "bytes_fetched",
            "greeting",
            "error",
        )
        read_only_fields = fields


class RunDetailSerializer(RunSerializer):
    class Meta(RunSerializer.Meta):
        fields = (*RunSerializer.Meta.fields, "transcript")  # type: ignore[assignment]
        read_only_fields = fields  # type: ignore[assignment]


class ConnectionTestSerializer(_Shown):
    masked = ("greeting", "error", "transcript")

    class Meta:
        model = ConnectionTest
        fields = (
            "id",
            "mailbox",
            "status",
            "created_at",
            "started_at",
            "finished_at",
            "ok",
            "greeting",
            "error",
            "transcript",
        )
        read_only_fields = fields


class RuleSerializer(serializers.Serializer):  # type: ignore[type-arg]
    remote = serializers.CharField(help_text="A remote name, an address, or *.")
    local = serializers.CharField(
        required=False, allow_blank=True, help_text="Empty: the same name."
    )


class RulesSerializer(serializers.Serializer):  # type: ignore[type-arg]
    rules = RuleSerializer(many=True)


class DomainSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = Domain
        fields = ("id", "name", "created_at")
        read_only_fields = fields


class UserSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    domain = serializers.CharField(source="domain.name", read_only=True, default=None)

    class Meta:
        model = User
        fields = ("id", "email", "full_name", "domain", "is_active", "is_superuser")
        read_only_fields = fields


class DomainInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(required=False)
    admins = serializers.ListField(
        child=serializers.IntegerField(), required=False, help_text="People's ids."
    )


class PersonInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    email = serializers.EmailField(required=False)
    full_name = serializers.CharField(required=False, allow_blank=True)
    domain = serializers.IntegerField(required=False, allow_null=True)
    is_active = serializers.BooleanField(required=False)
    password = serializers.CharField(required=False, write_only=True)


class QueuedSerializer(serializers.Serializer):  # type: ignore[type-arg]
    status = serializers.CharField()
    message = serializers.CharField()
    status_url = serializers.CharField()


class ImportResultSerializer(serializers.Serializer):  # type: ignore[type-arg]
    dry_run = serializers.BooleanField()
    saved = serializers.BooleanField()
    report = serializers.ListField(child=serializers.CharField())


class ErrorSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """Every error: a code for programs, a message for people, and for refused
    values each field's messages. (Declared in get_fields: a field named
    "fields" would hide the serializer's own attribute.)"""

    def get_fields(self) -> dict[str, serializers.Field]:  # type: ignore[type-arg]
        return {
            "code": serializers.CharField(),
            "message": serializers.CharField(),
            "fields": serializers.DictField(
                child=serializers.ListField(child=serializers.CharField()),
                required=False,
            ),
        }
