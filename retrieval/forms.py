"""The forms of the mailbox pages: what each role may set, refused in plain words.

A field a person may not change is not in their form at all, so crafted POST data
for it is ignored: ownership, delivery, server-run commands and CA files stay as
their administrator set them. The stricter rules for non-superusers (no
cleartext, no unverified certificates, a minimum interval...) apply to values
they change: what a superuser set for them earlier stays until changed.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from accounts.models import User
from retrieval import netpolicy, services
from retrieval.destination_form import DESTINATION_SECTION, DestinationFields
from retrieval.engine.errors import ConfigError
from retrieval.engine.spec import DEFAULT_PORTS, MailProtocol
from retrieval.engine.spec import TlsMode as EngineTlsMode
from retrieval.engine.wire.tls import fingerprint_algorithm
from retrieval.models import ACCOUNT_BUSY, PASSWORD_AGAIN, Mailbox
from retrieval.rcmap import MAX_POLL_INTERVAL
from retrieval.services.multidrop import (
    COMMON_ENVELOPES,
    DEFAULT_ENVELOPE,
    DOMAIN_NAME,
    Multidrop,
    mail_name_problem,
)
from retrieval.services.multidrop import problems as multidrop_problems

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator

    from django.db.models import QuerySet


# A minute: faster polling of somebody else's server looks like abuse to them.
MIN_USER_INTERVAL = 60
MIN_INTERVAL = 10  # Mailbox.poll_interval's validator, for superusers
MAX_RULES = 500
LINE_BREAKS = ("\r", "\n", "\0")
STORED_PASSWORD_HELP = (
    "A password is stored; it is never shown. Leave empty to keep it."
)

# Choices that need something only a superuser can provide on this server: a
# tunnel program, a client certificate, a Kerberos ticket; ETRN and ODMR hand a
# whole domain's mail to the local MTA.
USER_PROTOCOLS = {Mailbox.Protocol.POP3, Mailbox.Protocol.IMAP}
SUPERUSER_AUTHS = {
    Mailbox.Auth.SSH,
    Mailbox.Auth.EXTERNAL,
    Mailbox.Auth.GSSAPI,
    Mailbox.Auth.KERBEROS_V5,
}
SUPERUSER_FIELDS = (
    "ca_file",
    "timeout",
    "delivery_host",
    "delivery_port",
    "recipient",
    "mda",
)
# rcfile options of the user entry that the form edits (kept in Mailbox.options).
OPTION_FIELDS = ("limit", "fetchlimit", "sslfingerprint")
# Where the remote server is: a change re-checks the network policy.
DESTINATION_FIELDS = {"host", "port", "protocol", "tls_mode"}

MAX_C_INT = 2**31 - 1  # what fetchmail's rcfile numbers hold
PORT_RANGE = "The port must be between 1 and 65535."
# The ports of RFC 8314 / RFC 9051 / RFC 1939: what each one speaks from the first
# byte. Another protocol or encryption there cannot work (explain.py says the
# same of a failed poll).
WELL_KNOWN_PORTS = {
    993: ("imap", "implicit", "IMAP with TLS from the start (IMAPS)"),
    995: ("pop3", "implicit", "POP3 with TLS from the start (POP3S)"),
    143: ("imap", "starttls", "plain IMAP, where TLS begins with STARTTLS"),
    110: ("pop3", "starttls", "plain POP3, where TLS begins with STARTTLS"),
}
TLS_WORDS = {
    "implicit": "TLS from the start",
    "starttls": "STARTTLS",
    "none": "No encryption",
}


def refuse_line_breaks(value: str, what: str) -> None:
    if any(ch in value for ch in LINE_BREAKS):
        raise ValidationError(
            f"The {what} cannot contain a line break or a NUL character."
        )


def default_port(protocol: str, tls_mode: str) -> int:
    """The port the engine uses when none is given; 0 when there is none."""
    try:
        key = (MailProtocol(protocol), EngineTlsMode(tls_mode))
    except ValueError:
        return 0
    return DEFAULT_PORTS.get(key, 0)


class LinesField(forms.CharField):
    """A list of values, typed one per line."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return "\n".join(str(v) for v in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, list | tuple):
            return [str(v) for v in value]
        text = super().to_python(value) or ""
        lines = (line.removesuffix("\r").strip() for line in text.split("\n"))
        return [line for line in lines if line]


class DomainsField(LinesField):
    """Domain names, one per line (or separated by spaces or commas)."""

    widget = forms.Textarea(attrs={"rows": 3, "spellcheck": "false"})

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        return [
            name
            for line in super().to_python(value)
            for name in line.replace(",", " ").split()
        ]


class FoldersField(LinesField):
    """A list of folder names, typed one per line."""

    def validate(self, value: Any) -> None:
        for name in value:
            refuse_line_breaks(name, "folder name")
            if len(name) > 500:
                raise ValidationError("A folder name is at most 500 characters.")
        if len(set(value)) != len(value):
            raise ValidationError("A folder is listed twice.")


def _restrict_choices(
    field: forms.Field,
    choices: list[tuple[str, str]],
    allowed: Collection[str],
    current: str,
) -> None:
    """Offer only ``allowed``, plus the value stored now (left as it is)."""
    assert isinstance(field, forms.ChoiceField)
    field.choices = [(v, label) for v, label in choices if v in allowed or v == current]


def clean_server_name(host: str) -> str:
    """A server name or address as typed, checked and normalised, or a
    ValidationError that says what to type instead."""
    refuse_line_breaks(host, "server address")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if ":" in host:
        raise ValidationError(
            "Put the port number in the Port field, not after the server name."
        )
    if "/" in host or "@" in host:
        raise ValidationError("Enter only the server's name, such as imap.example.org.")
    try:
        ascii_name = host.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_name = ""
    if not DOMAIN_NAME.match(ascii_name.lower()):
        raise ValidationError(
            "This is not a server name: enter one such as imap.example.org, "
            "or an IP address."
        )
    return host.lower()


class MailboxForm(DestinationFields, forms.ModelForm):
    port = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=65535,
        error_messages={
            "invalid": "The port must be a whole number between 1 and 65535.",
            "min_value": PORT_RANGE,
            "max_value": PORT_RANGE,
        },
        help_text="Empty: the usual port for the protocol and encryption "
        "(IMAP 993 or 143, POP3 995 or 110).",
    )
    new_password = forms.CharField(
        label="Password",
        required=False,
        strip=False,
        max_length=1000,
        widget=forms.PasswordInput(
            render_value=False, attrs={"autocomplete": "new-password"}
        ),
    )
    clear_password = forms.BooleanField(
        label="Remove the stored password", required=False
    )
    folders = FoldersField(
        required=False,
        help_text="IMAP only: one folder per line; empty means INBOX.",
    )
    poll_interval = forms.IntegerField(
        label="Poll every (seconds)",
        error_messages={"invalid": "Enter a number of seconds."},
    )
    limit = forms.IntegerField(
        label="Largest message (bytes)",
        required=False,
        min_value=0,
        max_value=MAX_C_INT,
        error_messages={
            "min_value": "Enter a size of 0 bytes or more.",
            "max_value": "That is more than fetchweb can count: enter at most "
            f"{MAX_C_INT} bytes.",
        },
        help_text="Larger messages stay on the server, and a warning says so. "
        "Empty or 0: no limit.",
    )
    fetchlimit = forms.IntegerField(
        label="Messages per poll",
        required=False,
        min_value=0,
        max_value=MAX_C_INT,
        error_messages={
            "min_value": "Enter a number of messages, 0 or more.",
            "max_value": f"Enter at most {MAX_C_INT} messages.",
        },
        help_text="The rest waits for the next poll. Empty or 0: no limit.",
    )
    sslfingerprint = forms.CharField(
        label="Certificate fingerprint (pinning)",
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"spellcheck": "false"}),
        help_text="The server's certificate must also have this SHA-256 (64 hex "
        "digits) or MD5 (AB:CD:..., as fetchmail prints it) fingerprint.",
    )
    mda = forms.CharField(
        label="Program (MDA)",
        required=False,
        max_length=1000,
        help_text="For delivery to a program: the command, with %T for the "
        "recipient and %F for the sender. Run on this server without a shell.",
    )

    class Meta:
        model = Mailbox
        fields = (
            "owner",
            "name",
            *Mailbox.SETTINGS,
        )
        labels = {
            "tls_mode": "Encryption",
            "auth": "Authentication",
            "ca_file": "CA file",
            "username": "User name",
            "fetchall": "Fetch all",
            "delete_after_days": "Delete after (days)",
        }
        widgets = {"host": forms.TextInput(attrs={"spellcheck": "false"})}

    SECTIONS = (
        ("Mailbox", ("owner", "name", "enabled", "poll_interval")),
        ("Remote server", ("protocol", "host", "port", "tls_mode", "verify_tls")),
        ("Login", ("auth", "username", "new_password", "clear_password")),
        ("Messages", ("folders", "keep", "delete_after_days", "fetchall")),
        ("Limits and certificate pinning", OPTION_FIELDS),
        ("Where messages go", DESTINATION_SECTION),
        ("Delivery and server (superusers only)", SUPERUSER_FIELDS),
    )
    # Folded under "Advanced options" on the page: the usual values fit most.
    ADVANCED = frozenset(
        {
            "Messages",
            "Limits and certificate pinning",
            "Delivery and server (superusers only)",
        }
    )

    def __init__(
        self,
        *args: Any,
        editor: User,
        owners: QuerySet[User] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.editor = editor
        self.adding = self.instance._state.adding
        if self.adding and owners is not None:
            owner_field = self.fields["owner"]
            assert isinstance(owner_field, forms.ModelChoiceField)
            owner_field.queryset = owners
            # The instance's own initial (owner None) is already there, so the
            # default must be set, not setdefault. The person adding is the owner
            # unless they choose someone; when they may not own it themselves,
            # nobody is preselected: a browser would otherwise submit the first
            # name of the list without anyone having chosen it.
            if owners.filter(pk=editor.pk).exists():
                owner_field.empty_label = None
                self.initial["owner"] = editor.pk
            else:
                owner_field.empty_label = "Choose the owner"
                self.initial["owner"] = None
        else:
            # Set once, on creation, by the view: never from the request.
            del self.fields["owner"]
        if editor.is_superuser:
            mda = ((self.instance.options or {}).get("user") or {}).get("mda")
            self.fields["mda"].initial = mda if isinstance(mda, str) else ""
        else:
            for name in SUPERUSER_FIELDS:
                del self.fields[name]
            tls = {Mailbox.TlsMode.IMPLICIT, Mailbox.TlsMode.STARTTLS}
            if settings.FETCH_ALLOW_PRIVATE_HOSTS:
                tls.add(Mailbox.TlsMode.NONE)
            _restrict_choices(
                self.fields["protocol"],
                Mailbox.Protocol.choices,
                USER_PROTOCOLS,
                self.instance.protocol,
            )
            _restrict_choices(
                self.fields["tls_mode"],
                Mailbox.TlsMode.choices,
                tls,
                self.instance.tls_mode,
            )
            _restrict_choices(
                self.fields["auth"],
                Mailbox.Auth.choices,
                set(Mailbox.Auth) - SUPERUSER_AUTHS,
                self.instance.auth,
            )
            # Into a mailbox, or the service's own listener as a superuser set it.
            _restrict_choices(
                self.fields["delivery_kind"],
                Mailbox.DeliveryKind.choices,
                {Mailbox.DeliveryKind.SMTP, Mailbox.DeliveryKind.IMAP},
                self.instance.delivery_kind,
            )
            _restrict_choices(
                self.fields["destination_tls_mode"],
                Mailbox.TlsMode.choices,
                tls,
                self.instance.destination_tls_mode,
            )
            _restrict_choices(
                self.fields["destination_auth"],
                Mailbox.Auth.choices,
                set(Mailbox.Auth) - SUPERUSER_AUTHS - {Mailbox.Auth.APOP},
                self.instance.destination_auth,
            )
        stored = (self.instance.options or {}).get("user") or {}
        for name in OPTION_FIELDS:
            value = stored.get(name) if isinstance(stored, dict) else None
            self.fields[name].initial = value if value not in (None, 0) else None
        if self.instance.has_password:
            self.fields["new_password"].help_text = STORED_PASSWORD_HELP
        else:
            del self.fields["clear_password"]

    # --- who the mailbox belongs to, and what that allows -----------------------

    def owner(self) -> User:
        if self.adding:
            chosen: User | None = self.cleaned_data.get("owner")
            return chosen or self.editor
        return self.instance.owner

    def sections(self) -> Iterator[tuple[str, list[forms.BoundField]]]:
        """The fields this person has, grouped for the page."""
        for title, names in self.SECTIONS:
            bound = [self[name] for name in names if name in self.fields]
            if bound:
                yield title, bound

    def basic_sections(self) -> list[tuple[str, list[forms.BoundField]]]:
        return [s for s in self.sections() if s[0] not in self.ADVANCED]

    def advanced_sections(self) -> list[tuple[str, list[forms.BoundField]]]:
        return [s for s in self.sections() if s[0] in self.ADVANCED]

    def advanced_errors(self) -> bool:
        """Open the folded options when one of them is refused."""
        return any(f.errors for _, fields in self.advanced_sections() for f in fields)

    def user_options(self) -> dict[str, Any]:
        """The rcfile options this form sets (mailbox_save stores them)."""
        return {name: self.cleaned_data.get(name) for name in OPTION_FIELDS}

    # --- one field at a time --------------------------------------------------

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        refuse_line_breaks(name, "name")
        return name

    def clean_host(self) -> str:
        return clean_server_name(self.cleaned_data["host"])

    def clean_username(self) -> str:
        username: str = self.cleaned_data["username"]
        refuse_line_breaks(username, "user name")
        return username

    def clean_new_password(self) -> str:
        password: str = self.cleaned_data["new_password"]
        refuse_line_breaks(password, "password")
        return password

    def clean_poll_interval(self) -> int:
        seconds: int = self.cleaned_data["poll_interval"]
        minimum = MIN_INTERVAL
        if not self.editor.is_superuser and "poll_interval" in self.changed_data:
            minimum = MIN_USER_INTERVAL
        if seconds < minimum:
            raise ValidationError(
                f"Poll at most once every {minimum} seconds: enter {minimum} or more."
            )
        if seconds > MAX_POLL_INTERVAL:
            raise ValidationError("That is longer than fetchweb can wait.")
        return seconds

    def clean_ca_file(self) -> str:
        path: str = self.cleaned_data["ca_file"]
        refuse_line_breaks(path, "CA file name")
        if path and not Path(path).is_file():
            raise ValidationError("There is no such file on this server.")
        return path

    def clean_delivery_host(self) -> str:
        host: str = self.cleaned_data["delivery_host"]
        refuse_line_breaks(host, "listener address")
        if any(ch.isspace() for ch in host):
            raise ValidationError("The listener address cannot contain spaces.")
        return host

    def clean_recipient(self) -> str:
        recipient: str = self.cleaned_data["recipient"]
        if recipient:
            validate_email(recipient)
        return recipient

    def clean_sslfingerprint(self) -> str:
        pin: str = self.cleaned_data["sslfingerprint"].strip()
        if pin:
            try:
                fingerprint_algorithm(pin)
            except ConfigError as exc:
                raise ValidationError(str(exc)) from exc
        return pin

    def clean_mda(self) -> str:
        command: str = self.cleaned_data["mda"]
        refuse_line_breaks(command, "command")
        return command.strip()

    # --- rules across fields --------------------------------------------------

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        changed = set(self.changed_data)
        if cleaned.get("new_password") and cleaned.get("clear_password"):
            self.add_error(
                "clear_password",
                "Either type a new password or remove the stored one, not both.",
            )
        if services.password_needed(mailbox=self.instance, values=cleaned):
            # Otherwise whoever may edit the row could send its owner's stored
            # password to a server of their choosing (Mailbox.save would refuse).
            self.add_error("new_password", PASSWORD_AGAIN)
        if services.account_busy(mailbox=self.instance, values=cleaned):
            self.add_error(None, ACCOUNT_BUSY)
        turned_off = "verify_tls" in changed and not cleaned.get("verify_tls")
        if turned_off and not self.editor.is_superuser:
            self.add_error(
                "verify_tls", "Only a superuser may turn off the certificate check."
            )
        protocol = cleaned.get("protocol", self.instance.protocol)
        if (
            protocol == Mailbox.Protocol.POP3
            and cleaned.get("folders")
            and changed & {"protocol", "folders"}
        ):
            self.add_error(
                "folders",
                "A POP3 server has only the inbox: leave Folders empty, or choose IMAP.",
            )
        refusal = services.delete_after_days_refusal(
            keep=bool(cleaned.get("keep")), days=cleaned.get("delete_after_days")
        )
        if refusal:
            self.add_error("delete_after_days", refusal)
        if self.adding:
            # Said here in words; services.mailbox_save checks again under a lock.
            refusal = services.mailbox_quota_refusal(
                owner=self.owner(), creator=self.editor
            )
            if refusal:
                self.add_error("owner" if "owner" in self.fields else None, refusal)
        self._clean_delivery(cleaned)
        self.clean_destination(cleaned, changed)
        if (self.adding or changed & DESTINATION_FIELDS) and cleaned.get("port"):
            self._check_port(cleaned)
        if changed & DESTINATION_FIELDS and not self.errors.keys() & DESTINATION_FIELDS:
            self._check_destination(cleaned)
        return cleaned

    def _check_port(self, cleaned: dict[str, Any]) -> None:
        """A well-known port with another protocol or encryption than its own
        cannot work: refused in words, before a poll fails on it."""
        port = cleaned["port"]
        protocol = cleaned.get("protocol", self.instance.protocol)
        tls_mode = cleaned.get("tls_mode", self.instance.tls_mode)
        if port not in WELL_KNOWN_PORTS or protocol not in USER_PROTOCOLS:
            return
        own_protocol, own_tls, speaks = WELL_KNOWN_PORTS[port]
        usual = default_port(protocol, tls_mode)
        if protocol != own_protocol:
            self.add_error(
                "port",
                f"Port {port} is for {speaks}, not {protocol.upper()}: "
                f"leave Port empty, or enter {usual}.",
            )
        elif own_tls == "implicit" and tls_mode != "implicit":
            self.add_error(
                "tls_mode",
                f"{TLS_WORDS[tls_mode]} on port {port} will not work: {port} is "
                f"for {speaks}. Choose “TLS from the start”, or port "
                f"{default_port(protocol, 'starttls')} for STARTTLS.",
            )
        elif own_tls == "starttls" and tls_mode == "implicit":
            self.add_error(
                "tls_mode",
                f"TLS from the start on port {port} will not work: {port} is "
                f"{speaks}. Choose STARTTLS, or port "
                f"{default_port(protocol, 'implicit')}.",
            )

    def _clean_delivery(self, cleaned: dict[str, Any]) -> None:
        if cleaned.get("mda") and not self.owner().is_superuser:
            # services.mailbox_save refuses it (ServerCommandRefused): said here
            # in words, instead of a server error.
            self.add_error(
                "mda", "Only a mailbox owned by a superuser may run a program."
            )
        if cleaned.get("delivery_kind") != Mailbox.DeliveryKind.MDA:
            return
        if not cleaned.get("mda"):
            self.add_error("mda", "Delivery to a program needs the command to run.")
        if not self.owner().is_superuser:
            self.add_error(
                "delivery_kind",
                "Only a mailbox owned by a superuser may deliver to a program.",
            )

    def _check_destination(self, cleaned: dict[str, Any]) -> None:
        """Where the mailbox's owner may connect (the poll checks it again)."""
        if self.owner().is_superuser or settings.FETCH_ALLOW_PRIVATE_HOSTS:
            return
        host = cleaned.get("host")
        if not host:
            return
        port = cleaned.get("port") or default_port(
            cleaned.get("protocol", self.instance.protocol),
            cleaned.get("tls_mode", self.instance.tls_mode),
        )
        try:
            netpolicy.check_destination(host, port)
        except netpolicy.DestinationRefused as exc:
            self.add_error("host", str(exc))


class RulesForm(forms.Form):
    """A multidrop mailbox's local names, in order: ``remote -> local``, or
    ``name`` for the same name on both sides, or ``*`` for every other name."""

    rules = forms.CharField(
        label="Rules",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false"}),
        help_text="One per line, in order: “remote -> local”, or a name alone "
        "when it is the same on both sides, or * to let every other name through.",
    )

    def __init__(self, *args: Any, mailbox: Mailbox, editor: User, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.mailbox = mailbox
        self.editor = editor

    @staticmethod
    def as_text(rules: list[tuple[str, str]]) -> str:
        return "\n".join(f"{r} -> {loc}" if loc else r for r, loc in rules)

    def clean_rules(self) -> list[tuple[str, str]]:
        text: str = self.cleaned_data["rules"]
        rules: list[tuple[str, str]] = []
        seen: set[str] = set()
        problems: list[str] = []
        for number, raw in enumerate(text.split("\n"), start=1):
            line = raw.removesuffix("\r").strip()
            if not line:
                continue
            try:
                remote, local = self._parse(line)
            except ValidationError as exc:
                problems.append(f"Line {number}: {exc.messages[0]}")
                continue
            outside = self._outside(local or remote)
            if outside:
                problems.append(f"Line {number}: {outside}")
                continue
            if remote.lower() in seen:
                problems.append(f"Line {number}: {remote} is listed twice.")
                continue
            seen.add(remote.lower())
            rules.append((remote, local))
        if problems:
            raise ValidationError(problems)
        if len(rules) > MAX_RULES:
            raise ValidationError(f"At most {MAX_RULES} rules.")
        return rules

    def _outside(self, target: str) -> str:
        """Why mail may not be handed to ``target``; "" when it may.

        A rule delivers inside the mailbox's domain: to a bare local name (the
        listener of this installation resolves it), to an address in the domain,
        or to a person whose account belongs to the domain. Anything else would
        make the listener relay the domain's mail to an outside address, as the
        rcfile importer refuses too (import_fetchmailrc._recipient_refusals).
        Superusers get the same rule, plus the address of any person who has an
        account here: a superuser may move mail between tenants, never out of
        the installation.
        """
        if target == "*" or "@" not in target:
            return ""
        domain = self.mailbox.domain
        address = target.lower()
        if domain is not None and address.rpartition("@")[2] == domain.name.lower():
            return ""
        people = User.objects.filter(email__iexact=target, is_active=True)
        if domain is not None and people.filter(domain=domain).exists():
            return ""
        if self.editor.is_superuser and people.exists():
            return ""
        where = f"people of {domain.name}" if domain is not None else "people here"
        example = (
            f"a name such as “anna” or an address ending in @{domain.name}"
            if domain is not None
            else "a name such as “anna”"
        )
        return (
            f"{target} is outside this mailbox's domain. Rules deliver only to "
            f"{where}: write {example}."
        )

    @staticmethod
    def _parse(line: str) -> tuple[str, str]:
        refuse_line_breaks(line, "rule")
        parts = [p.strip() for p in line.split("->")]
        if len(parts) > 2:
            raise ValidationError("write one “->” per rule.")
        if not all(parts):
            raise ValidationError("a name is missing on one side of “->”.")
        remote, local = (parts[0], parts[1]) if len(parts) == 2 else (parts[0], "")
        if remote == "*":
            if local:
                raise ValidationError(
                    "* takes no local name: it passes every other name through."
                )
            return remote, ""
        for name in (remote, local) if local else (remote,):
            problem = mail_name_problem(name)
            if problem:
                raise ValidationError(problem)
        if local.lower() == remote.lower():
            local = ""
        return remote, local


class MultidropForm(RulesForm):
    """The multidrop editor: how a whole-domain mailbox's mail is sorted.

    Each value is checked by services.multidrop.problems, the check the rcfile
    importer makes too; the postmaster, like a rule, is inside the installation
    (RulesForm._outside), and a domain administrator's local domains and added
    domain are the mailbox's, as their import would be (import_fetchmailrc).
    """

    envelope = forms.CharField(
        label="Envelope header",
        required=False,
        widget=forms.TextInput(attrs={"list": "envelope-names", "spellcheck": "false"}),
        help_text="The header in which your provider's server names each copy's "
        "recipient, such as Delivered-To or X-Original-To. Empty: "
        f"{DEFAULT_ENVELOPE} (the address after “for” in the server's own "
        "Received line), fetchmail's default.",
    )
    no_envelope = forms.BooleanField(
        label="No envelope header: read the recipients from To, Cc and Bcc",
        required=False,
        help_text="Only when the server writes none: Bcc recipients and list "
        "mail are then missed.",
    )
    localdomains = DomainsField(
        label="Local domains",
        required=False,
        help_text="Addresses in these domains (and their subdomains) are "
        "delivered as they are, without a name mapping. One per line.",
    )
    aka = DomainsField(
        label="Other names of the mail server (aka)",
        required=False,
        help_text="Addresses at these names are this mailbox's users; the "
        "server's own name always is. One per line.",
    )
    qvirtual = forms.CharField(
        label="Prefix to remove (qvirtual)",
        required=False,
        strip=True,
        widget=forms.TextInput(attrs={"spellcheck": "false"}),
        help_text="A catch-all that writes “catchall+anna@…” in the envelope "
        "header: “catchall+” is removed before the mapping.",
    )
    smtpaddress = forms.CharField(
        label="Domain added to local names",
        required=False,
        widget=forms.TextInput(attrs={"spellcheck": "false"}),
        help_text="“anna” is delivered to anna@ this domain. Empty: the "
        "listener's own name.",
    )
    postmaster = forms.CharField(
        label="Postmaster",
        required=False,
        widget=forms.TextInput(attrs={"spellcheck": "false"}),
        help_text="Who gets mail that no mapping claims, and the reports of "
        "refused mail. Empty: the owner's name.",
    )

    FIELD_ORDER = (
        "envelope",
        "no_envelope",
        "localdomains",
        "aka",
        "qvirtual",
        "smtpaddress",
        "postmaster",
        "rules",
    )
    COMMON_ENVELOPES = COMMON_ENVELOPES

    def __init__(self, *args: Any, mailbox: Mailbox, editor: User, **kwargs: Any):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, mailbox=mailbox, editor=editor, **kwargs)
        self.order_fields(self.FIELD_ORDER)
        rules = self.fields["rules"]
        rules.label = "Name mappings"
        rules.help_text = (
            "One per line, in order: “remote -> local” (remote name, local "
            "person), or a name alone when it is the same on both sides, or * to "
            "let every other name through."
        )

    @staticmethod
    def initial_of(values: Multidrop) -> dict[str, Any]:
        return {
            "envelope": values.envelope,
            "no_envelope": values.no_envelope,
            "localdomains": list(values.localdomains),
            "aka": list(values.aka),
            "qvirtual": values.qvirtual,
            "smtpaddress": values.smtpaddress,
            "postmaster": values.postmaster,
            "rules": RulesForm.as_text(list(values.rules)),
        }

    def values(self) -> Multidrop:
        """The cleaned settings, for services.mailbox_multidrop_save."""
        c = self.cleaned_data
        return Multidrop(
            envelope="" if c["no_envelope"] else c["envelope"],
            no_envelope=c["no_envelope"],
            localdomains=tuple(c["localdomains"]),
            aka=tuple(c["aka"]),
            qvirtual=c["qvirtual"],
            postmaster=c["postmaster"],
            smtpaddress=c["smtpaddress"],
            rules=tuple(c["rules"]),
        )

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if self.errors:
            return cleaned
        values = self.values()
        for name, messages in multidrop_problems(values=values).items():
            if name != "rules":  # each line was checked with its number
                for message in messages:
                    self.add_error(name, message)
        if values.postmaster and not self.has_error("postmaster"):
            # Like a rule's local side, for superusers too (RulesForm._outside).
            outside = self._outside(values.postmaster)
            if outside:
                self.add_error("postmaster", outside)
        if not self.editor.is_superuser:
            self._confine(values)
        return cleaned

    def _confine(self, values: Multidrop) -> None:
        """A domain administrator's mail stays in the mailbox's domain."""
        home = self.mailbox.domain.name.lower() if self.mailbox.domain else ""
        for name in ("localdomains", "smtpaddress"):
            listed = getattr(values, name)
            for domain in (listed,) if isinstance(listed, str) else listed:
                if domain and domain.lower().rstrip(".") != home:
                    self.add_error(
                        name,
                        f"{domain} is not this mailbox's domain ({home or 'none'}): "
                        "only a superuser may deliver to other domains.",
                    )
