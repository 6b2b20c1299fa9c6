"""The mailbox form's "deliver into an IMAP mailbox" part (delivery kind IMAP).

Everyone may choose it, unlike the local listener's settings (superusers only):
it is how a person brings an old account's mail into their Gmail or Microsoft
365 mailbox. The destination is held to the same rules as the source: a server
name in words, a public address for a mailbox not owned by a superuser, a
password that is never shown and is asked for again when the account changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from retrieval import netpolicy
from retrieval.engine.append import flag_problem
from retrieval.models import DESTINATION_ACCOUNT, Mailbox, destination_port

if TYPE_CHECKING:
    from accounts.models import User

IMAP = Mailbox.DeliveryKind.IMAP
DESTINATION_SECTION = (
    "delivery_kind",
    "destination_host",
    "destination_port",
    "destination_tls_mode",
    "destination_auth",
    "destination_username",
    "destination_password",
    "destination_folder",
    "destination_flags",
    "destination_create_folder",
)
_KEEP_WHEN_ABSENT = (
    "delivery_kind",
    "destination_tls_mode",
    "destination_auth",
    "destination_folder",
)


class DestinationFields(forms.Form):
    destination_password = forms.CharField(
        label="Destination password",
        required=False,
        strip=False,
        max_length=4000,  # an OAuth2 access token is longer than a password
        widget=forms.PasswordInput(
            render_value=False, attrs={"autocomplete": "new-password"}
        ),
        help_text="The password (or app password) of the mailbox delivered into; "
        "never shown. Leave empty to keep the stored one.",
    )

    instance: Mailbox
    editor: User
    cleaned_data: dict[str, Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Pages and API clients written before this section send none of it:
        # what is not sent keeps the stored value (the model's default when new).
        for name in _KEEP_WHEN_ABSENT:
            if name in self.fields:
                self.fields[name].required = False

    def _kept(self, name: str) -> Any:
        value = self.cleaned_data.get(name)
        return value if value not in (None, "") else getattr(self.instance, name)

    def clean_delivery_kind(self) -> str:
        kind: str = self._kept("delivery_kind")
        return kind

    def clean_destination_tls_mode(self) -> str:
        mode: str = self._kept("destination_tls_mode")
        return mode

    def clean_destination_auth(self) -> str:
        auth: str = self._kept("destination_auth")
        return auth

    def owner(self) -> User:
        raise NotImplementedError

    def clean_destination_host(self) -> str:
        from retrieval.forms import clean_server_name

        host: str = self.cleaned_data.get("destination_host", "")
        return clean_server_name(host) if host else ""

    def clean_destination_flags(self) -> str:
        flags: str = self.cleaned_data.get("destination_flags", "")
        for flag in flags.split():
            if problem := flag_problem(flag):
                raise ValidationError(problem)
        return " ".join(flags.split())

    def clean_destination_folder(self) -> str:
        folder: str = self.cleaned_data.get("destination_folder", "").strip()
        if any(ch in folder for ch in "\r\n\0"):
            raise ValidationError("A folder name is one line.")
        return folder or "INBOX"

    def clean_destination(self, cleaned: dict[str, Any], changed: set[str]) -> None:
        """Called by MailboxForm.clean: what the destination needs, in words."""
        if cleaned.get("delivery_kind") != IMAP:
            return
        for name, words in (
            ("destination_host", "Enter the IMAP server to deliver into."),
            ("destination_username", "Enter the user name of that mailbox."),
        ):
            if not cleaned.get(name) and name not in self.errors:
                self.add_error(name, words)
        new_password = cleaned.get("destination_password")
        stored = bool(self.instance.destination_password_encrypted)
        # An OAuth2 login needs no password: "Connect a ... account" on the
        # mailbox page stores its grant (services.oauth, purpose destination).
        token_login = cleaned.get("destination_auth") in (
            Mailbox.Auth.XOAUTH2,
            Mailbox.Auth.OAUTHBEARER,
        )
        if (
            not new_password
            and not token_login
            and (not stored or changed & {*DESTINATION_ACCOUNT})
        ):
            self.add_error(
                "destination_password",
                "Type the destination mailbox's password"
                + (" again: the account changed." if stored else "."),
            )
        host = cleaned.get("destination_host")
        if not host or self.owner().is_superuser or settings.FETCH_ALLOW_PRIVATE_HOSTS:
            return
        port = destination_port(
            cleaned.get("destination_port"), cleaned.get("destination_tls_mode", "")
        )
        try:
            netpolicy.check_destination(host, port)
        except netpolicy.DestinationRefused as exc:
            self.add_error("destination_host", str(exc))
