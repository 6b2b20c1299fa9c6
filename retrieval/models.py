"""Remote mailboxes, the ledger of delivered messages, and the record of every poll."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.utils import timezone

from retrieval import crypto
from retrieval.engine.report import ExitCode

if TYPE_CHECKING:
    from collections.abc import Mapping

# A change of any of these names another remote account, whose UIDs mean nothing
# to the ledger kept for this one (the port does not: same server, other door).
REMOTE_IDENTITY = ("protocol", "host", "username")
# The destination's account (delivery kind IMAP): a change sends its password
# or token somewhere else.
DESTINATION_ACCOUNT = ("destination_host", "destination_port", "destination_username")

PASSWORD_AGAIN = (
    "The server, protocol or user name changed: type the password again. A stored "
    "password is only sent to the account it was typed for."
)


class PasswordRequired(ValidationError):
    """A save would send the stored password to another remote account."""

    def __init__(self) -> None:
        super().__init__({"new_password": [PASSWORD_AGAIN]})

    def __str__(self) -> str:
        return PASSWORD_AGAIN


ACCOUNT_BUSY = (
    "This mailbox is being polled right now: change its server, protocol or user "
    "name when the poll has ended."
)


class AccountBusy(ValidationError):
    """A poll holds the lease: its ledger rows would land after the drop."""

    def __init__(self) -> None:
        super().__init__(ACCOUNT_BUSY)

    def __str__(self) -> str:
        return ACCOUNT_BUSY


def remote_identity(values: Mapping[str, Any]) -> tuple[str, str, str]:
    """The remote account that ``values`` (a row's protocol, host, username) names;
    host names are case-insensitive."""
    return (
        str(values["protocol"]),
        str(values["host"]).strip().lower(),
        str(values["username"]),
    )


def destination_port(port: int | None, tls_mode: str) -> int:
    """The port of a mailbox delivered into: IMAPS 993, or 143 with STARTTLS."""
    return port or (143 if tls_mode == "starttls" else 993)


def default_poll_interval() -> int:
    return int(settings.FETCH_DEFAULT_INTERVAL)


class Mailbox(models.Model):
    """A remote account that fetchweb empties, and where its mail goes."""

    class Protocol(models.TextChoices):
        POP3 = "pop3", "POP3"
        IMAP = "imap", "IMAP"
        ETRN = "etrn", "ETRN (ask the server to flush a domain's queue)"
        ODMR = "odmr", "ODMR (on-demand mail relay)"

    class TlsMode(models.TextChoices):
        IMPLICIT = "implicit", "TLS from the start (POP3S 995, IMAPS 993)"
        STARTTLS = "starttls", "STARTTLS, required"
        NONE = "none", "No encryption (not recommended)"

    class Auth(models.TextChoices):
        ANY = "any", "Best the server offers"
        PASSWORD = "password", "Password (USER/PASS, LOGIN, PLAIN)"
        PLAIN = "plain", "SASL PLAIN"
        LOGIN = "login", "SASL LOGIN"
        CRAM_MD5 = "cram-md5", "CRAM-MD5"
        APOP = "apop", "APOP (POP3)"
        XOAUTH2 = "xoauth2", "XOAUTH2 (token as password)"
        OAUTHBEARER = "oauthbearer", "OAUTHBEARER (token as password)"
        EXTERNAL = "external", "EXTERNAL (client certificate)"
        GSSAPI = "gssapi", "GSSAPI (Kerberos)"
        KERBEROS_V5 = "kerberos_v5", "Kerberos V5"
        NTLM = "ntlm", "NTLM"
        OTP = "otp", "One-time password"
        MSN = "msn", "MSN"
        SSH = "ssh", "None (preauthenticated tunnel)"

    class DeliveryKind(models.TextChoices):
        SMTP = "smtp", "SMTP listener"
        LMTP = "lmtp", "LMTP listener"
        MDA = "mda", "A program on this server (superusers only)"
        IMAP = "imap", "Into an IMAP mailbox (Gmail, Microsoft 365, ...)"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100, blank=True, help_text="A label for you.")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mailboxes"
    )
    domain = models.ForeignKey(
        "accounts.Domain",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="mailboxes",
    )

    protocol = models.CharField(max_length=8, choices=Protocol, default=Protocol.IMAP)
    host = models.CharField(max_length=253, help_text="The remote mail server.")
    port = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(65535)],
        help_text="Empty: the usual port for the protocol and encryption.",
    )
    tls_mode = models.CharField(
        max_length=10, choices=TlsMode, default=TlsMode.IMPLICIT
    )
    verify_tls = models.BooleanField(
        default=True,
        verbose_name="verify certificate",
        help_text="Refuse servers whose certificate does not verify.",
    )
    ca_file = models.CharField(
        max_length=500,
        blank=True,
        help_text="A file of CA certificates on this server, for private CAs.",
    )
    auth = models.CharField(max_length=12, choices=Auth, default=Auth.ANY)
    username = models.CharField(max_length=320)
    password_encrypted = models.TextField(blank=True, editable=False)
    folders = models.JSONField(
        default=list, blank=True, help_text="IMAP folders to empty; empty means INBOX."
    )
    keep = models.BooleanField(default=False, help_text="Leave messages on the server.")
    # fetchmail has no such option (the engine's MailboxSpec.delete_after_days).
    delete_after_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="With keep: delete a message from the server this many days "
        "after it was delivered. Empty: keep it for ever.",
    )
    fetchall = models.BooleanField(
        default=False, help_text="Fetch old messages too, not only new ones."
    )
    timeout = models.PositiveIntegerField(
        default=120, help_text="Seconds to wait for the server at any one step."
    )

    delivery_kind = models.CharField(
        max_length=8, choices=DeliveryKind, default=DeliveryKind.SMTP
    )
    delivery_host = models.CharField(
        max_length=500,
        default="localhost",
        help_text="The listener's host name or address, or a unix socket path for LMTP.",
    )
    delivery_port = models.PositiveIntegerField(
        default=25, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    recipient = models.CharField(
        max_length=320,
        blank=True,
        help_text="Deliver to this address; empty means the owner's address.",
    )
    # Delivery kind IMAP: each message is APPENDed into this account's folder
    # (retrieval.engine.append); the password is encrypted like the others.
    destination_host = models.CharField(
        max_length=253, blank=True, help_text="The IMAP server to deliver into."
    )
    destination_port = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(65535)],
        help_text="Empty: 993, or 143 with STARTTLS.",
    )
    destination_tls_mode = models.CharField(
        max_length=8, choices=TlsMode, default=TlsMode.IMPLICIT
    )
    destination_auth = models.CharField(max_length=12, choices=Auth, default=Auth.ANY)
    destination_username = models.CharField(max_length=320, blank=True)
    destination_password_encrypted = models.TextField(blank=True, editable=False)
    destination_folder = models.CharField(max_length=200, default="INBOX")
    destination_flags = models.CharField(
        max_length=200,
        blank=True,
        help_text="Flags to set, separated by spaces: \\Seen, \\Flagged, $Imported.",
    )
    destination_create_folder = models.BooleanField(
        default=False, help_text="Create the folder if the server does not have it."
    )
    # The rest of fetchmail's language, keyed as retrieval.rcfile.model names it:
    # {"globals": {...}, "server": {...}, "user": {...}}; see retrieval/rcmap.py.
    options = models.JSONField(default=dict, blank=True)
    esmtp_password_encrypted = models.TextField(blank=True, editable=False)

    poll_interval = models.PositiveIntegerField(
        default=default_poll_interval,
        validators=[MinValueValidator(10)],
        help_text="Seconds between polls.",
    )
    enabled = models.BooleanField(default=True)
    next_poll_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # The lease: who polls this mailbox now, until when (see services.mailbox_lease).
    lease_owner = models.CharField(max_length=64, blank=True, editable=False)
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)

    # Failure handling (services.failures): consecutive failed polls, how many of
    # them could not be cured by waiting, and the state people are alerted about.
    # A state changes by a conditional UPDATE, so each change alerts once.
    class Health(models.TextChoices):
        OK = "ok", "Working"
        FAILING = "failing", "Failing"
        PAUSED = "paused", "Needs attention"
        # The OAuth2 grant was revoked or expired (invalid_grant): only its owner
        # can give a new consent ("Reconnect"); the schedule leaves it alone.
        REAUTH = "reauth", "Reconnect needed"

    health = models.CharField(
        max_length=8, choices=Health, default=Health.OK, editable=False
    )
    health_reason = models.TextField(blank=True, editable=False)
    health_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    failure_count = models.PositiveIntegerField(default=0, editable=False)
    permanent_failures = models.PositiveIntegerField(default=0, editable=False)

    # The last finished run (newest started), kept as runs are recorded, closed
    # or deleted (retrieval/services/latest_run.py): the console's states, state
    # filters and "last checked" sorts read these columns, not a subquery per
    # mailbox. No database constraint: a deleted run is replaced by the service
    # that deletes it, without Django fetching the runs to null the column.
    latest_run = models.ForeignKey(
        "PollRun",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
        editable=False,
    )
    latest_outcome = models.CharField(  # "" until a run finished
        max_length=10, blank=True, default="", editable=False
    )
    latest_at = models.DateTimeField(null=True, blank=True, editable=False)

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    DESTINATION: ClassVar = (
        "destination_host",
        "destination_port",
        "destination_tls_mode",
        "destination_auth",
        "destination_username",
        "destination_folder",
        "destination_flags",
        "destination_create_folder",
    )
    # The settings a person edits, in the order the admin, the mailbox form and
    # the API list them: one declaration, so a new setting is added once.
    SETTINGS: ClassVar = (
        "enabled",
        "poll_interval",
        "protocol",
        "host",
        "port",
        "tls_mode",
        "verify_tls",
        "ca_file",
        "auth",
        "username",
        "folders",
        "keep",
        "delete_after_days",
        "fetchall",
        "timeout",
        "delivery_kind",
        "delivery_host",
        "delivery_port",
        "recipient",
        *DESTINATION,
    )

    class Meta:
        ordering: ClassVar = ["owner__email", "host", "username"]
        verbose_name_plural = "mailboxes"
        indexes: ClassVar = [
            models.Index(fields=["latest_at"], name="mailbox_latest_at"),
            models.Index(fields=["latest_outcome"], name="mailbox_latest_outcome"),
        ]

    def __str__(self) -> str:
        return (
            self.name or f"{self.username}@{self.host} ({self.get_protocol_display()})"
        )

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save, keeping the rule on a change of remote account for every writer.

        The rule sits here, not only in the service (retrieval.services.mailbox_save)
        that the pages, the admin and the importer call, so that a shell's
        ``mailbox.save()`` cannot break it either. When protocol, host or user
        name change:

        * the ledger is dropped, in the same transaction: the old server's UIDs
          could name other messages on the new one, which a poll would then
          delete unread;
        * the save is refused (PasswordRequired) while the row still carries the
          stored password: it was typed for the old account, and whoever may edit
          the row could otherwise send it to a server of their choosing. A new
          password (``set_password``, a fresh ciphertext) or none at all passes;
        * the save is refused (AccountBusy) while a poll holds the lease: that
          poll would go on recording the old server's UIDs after the drop.

        Refusing, rather than dropping the ledger and keeping the password, was
        chosen so that a shell cannot send the password anywhere either.
        """
        update_fields = kwargs.get("update_fields")
        if (
            self._state.adding
            or self.pk is None
            or (update_fields is not None and not {*update_fields} & {*REMOTE_IDENTITY})
        ):
            super().save(*args, **kwargs)
            return
        with transaction.atomic():
            before = (
                Mailbox.objects.select_for_update()
                .filter(pk=self.pk)
                .values(*REMOTE_IDENTITY, "password_encrypted", "lease_until")
                .first()
            )
            if before is not None and remote_identity(before) != remote_identity(
                {name: getattr(self, name) for name in REMOTE_IDENTITY}
            ):
                lease = before["lease_until"]
                if lease is not None and lease > timezone.now():
                    raise AccountBusy
                # set_password encrypts with a fresh nonce: an unchanged ciphertext
                # is the old password, never one typed for the new account.
                stale = before["password_encrypted"]
                if stale and self.password_encrypted == stale:
                    raise PasswordRequired
                if update_fields is not None:
                    # The new password goes with the new account, or the old one
                    # would stay stored for it.
                    kwargs["update_fields"] = {*update_fields, "password_encrypted"}
                SeenMessage.objects.filter(mailbox_id=self.pk).delete()
                # A token was granted for the old account: never sent to another.
                OAuthGrant.objects.filter(
                    mailbox_id=self.pk, purpose=OAuthGrant.Purpose.SOURCE
                ).delete()
            super().save(*args, **kwargs)

    # Each secret is bound to the mailbox and to its purpose: a value copied
    # from one column (or row) into another does not decrypt there.
    def _seal(self, raw: str, purpose: str = "") -> str:
        bound = f"{self.uuid}:{purpose}" if purpose else str(self.uuid)
        return crypto.encrypt(raw, bound_to=bound) if raw else ""

    def _unseal(self, sealed: str, purpose: str = "") -> str:
        bound = f"{self.uuid}:{purpose}" if purpose else str(self.uuid)
        return crypto.decrypt(sealed, bound_to=bound) if sealed else ""

    def set_password(self, raw: str) -> None:
        self.password_encrypted = self._seal(raw)

    def get_password(self) -> str:
        return self._unseal(self.password_encrypted)

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)

    def set_esmtp_password(self, raw: str) -> None:
        """The password for SMTP AUTH to the listener (fetchmail's esmtppassword)."""
        self.esmtp_password_encrypted = self._seal(raw, "esmtp")

    def get_esmtp_password(self) -> str:
        return self._unseal(self.esmtp_password_encrypted, "esmtp")

    def set_destination_password(self, raw: str) -> None:
        """The password (or access token) of the mailbox delivered into."""
        self.destination_password_encrypted = self._seal(raw, "destination")

    def get_destination_password(self) -> str:
        return self._unseal(self.destination_password_encrypted, "destination")

    def next_after(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.poll_interval)

    @property
    def delivery_address(self) -> str:
        return self.recipient or self.owner.email


class MultidropRule(models.Model):
    """One local name of a multidrop mailbox, in order (fetchmail's ``is ... here``).

    ``remote`` is the name as it appears in the envelope's local part (or ``*``:
    any local part passes through unchanged); ``local`` is who gets the mail,
    empty meaning the same name. ``is joe jane here`` is two rules with an empty
    ``local``; ``is jdoe=joe here`` is one rule ``jdoe -> joe``.
    """

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="rules")
    position = models.PositiveIntegerField(default=0)
    remote = models.CharField(max_length=320)
    local = models.CharField(max_length=320, blank=True)

    class Meta:
        ordering: ClassVar = ["mailbox", "position", "id"]
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["mailbox", "position"], name="rule_position"
            )
        ]

    def __str__(self) -> str:
        if self.remote == "*":
            return "*"
        return f"{self.remote}={self.local}" if self.local else self.remote


class SeenMessage(models.Model):
    """A message already delivered, so a rerun or a keep-mode poll never repeats it.

    The row is committed after the listener accepted the message and before the
    delete is sent to the server, and made durable (DatabaseLedger.sync) before the
    server may commit the delete: a killed worker duplicates one message at most and
    never loses one. POP3 has no UIDVALIDITY; it is stored as 0.
    """

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="seen")
    folder = models.CharField(max_length=500, default="INBOX")
    uidvalidity = models.BigIntegerField(default=0)
    uid = models.CharField(max_length=255)
    message_id = models.CharField(max_length=998, blank=True)
    delivered_at = models.DateTimeField(default=timezone.now)
    # A partial delivery (LMTP accepted some recipients, deferred others) is a row
    # with complete=False listing who already has it: the retry skips them.
    recipients = models.JSONField(default=list, blank=True)
    complete = models.BooleanField(default=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["mailbox", "folder", "uidvalidity", "uid"], name="seen_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.folder}/{self.uidvalidity}/{self.uid}"


class PollRun(models.Model):
    """One poll of one mailbox: when, how it ended, and what the server said."""

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCESS = "success", "Mail delivered"
        NOMAIL = "nomail", "No new mail"
        ERROR = "error", "Failed"
        SKIPPED = "skipped", "Skipped"
        # The worker died mid-poll (hard time limit, out of memory, lost host):
        # closed by the dispatcher once the run's lease is gone.
        LOST = "lost", "Worker lost"
        # Celery's soft time limit stopped the poll (settings.FETCH_SOFT_LIMIT).
        TIMEOUT = "timeout", "Took too long"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Poll now"
        COMMAND = "command", "Command line"
        PUSH = "push", "New mail (IDLE)"

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=10, choices=Trigger, default=Trigger.SCHEDULE)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome, default=Outcome.RUNNING)
    exit_code = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="fetchmail's exit status for this poll."
    )
    fetched = models.PositiveIntegerField(default=0)
    delivered = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    bytes_fetched = models.BigIntegerField(default=0)
    greeting = models.TextField(blank=True)
    transcript = models.TextField(blank=True, help_text="Secrets are masked.")
    error = models.TextField(blank=True)
    # The mailbox lease this run was started under (Mailbox.lease_owner): once the
    # mailbox no longer holds it, a run still "running" has lost its worker.
    lease_owner = models.CharField(max_length=64, blank=True, editable=False)

    class Meta:
        ordering: ClassVar = ["-started_at"]
        indexes: ClassVar = [
            # The dispatcher looks for running runs every few seconds; they are a
            # handful among all the runs ever recorded.
            models.Index(
                fields=["mailbox"],
                condition=models.Q(outcome="running"),
                name="pollrun_running",
            ),
            # A mailbox's latest runs: its page, and the console's state of every
            # mailbox (one index probe each, not a sort of its runs).
            models.Index(fields=["mailbox", "-started_at"], name="pollrun_recent"),
            # A mailbox's last finished run, in the console's order (newest
            # first, ties by id): one index probe per mailbox and column of the
            # list and the dashboard's state counts, instead of reading and
            # sorting all of the mailbox's runs (bench/console.py).
            models.Index(
                fields=["mailbox", "-started_at", "-id"],
                condition=~models.Q(outcome="running"),
                name="pollrun_last_finished",
            ),
            # The dashboard's last errors, newest first: read until ten of the
            # person's are found, instead of every error of their mailboxes.
            models.Index(
                fields=["-started_at", "-id"],
                condition=models.Q(outcome__in=["error", "lost", "timeout"]),
                name="pollrun_errors",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.mailbox} at {self.started_at:%Y-%m-%d %H:%M:%S}"

    @property
    def exit_code_name(self) -> str:
        if self.exit_code is None:
            return ""
        try:
            return ExitCode(self.exit_code).name
        except ValueError:
            return str(self.exit_code)


class MessageResult(models.Model):
    """What happened to one message during one poll."""

    run = models.ForeignKey(PollRun, on_delete=models.CASCADE, related_name="messages")
    folder = models.CharField(max_length=500, default="INBOX")
    uid = models.CharField(max_length=255)
    message_id = models.CharField(max_length=998, blank=True)
    size = models.BigIntegerField(default=0)
    recipients = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=10)
    listener_reply = models.TextField(blank=True)
    deleted = models.BooleanField(default=False)

    # What the admin's inline and the API show of each message, in this order.
    SHOWN: ClassVar = (
        "folder",
        "uid",
        "message_id",
        "size",
        "recipients",
        "status",
        "listener_reply",
        "deleted",
    )

    class Meta:
        ordering: ClassVar = ["id"]

    def __str__(self) -> str:
        return f"{self.uid}: {self.status}"


class ConnectionTest(models.Model):
    """One "Test connection" of a mailbox: queued by the page, run by a worker.

    The page polls this row for its status, so the request that asked for the test
    never waits on the remote server. It belongs to the mailbox's tenancy: whoever
    may see the mailbox may see its tests, nobody else.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        RUNNING = "running", "Connecting"
        DONE = "done", "Done"

    mailbox = models.ForeignKey(
        Mailbox, on_delete=models.CASCADE, related_name="connection_tests"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="connection_tests",
    )
    status = models.CharField(max_length=10, choices=Status, default=Status.QUEUED)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    ok = models.BooleanField(null=True, help_text="Logged in? None until done.")
    greeting = models.TextField(blank=True)
    error = models.TextField(blank=True)
    transcript = models.TextField(blank=True, help_text="Secrets are masked.")

    class Meta:
        ordering: ClassVar = ["-created_at"]
        indexes: ClassVar = [models.Index(fields=["requested_by", "status"])]

    def __str__(self) -> str:
        return f"test of {self.mailbox} at {self.created_at:%Y-%m-%d %H:%M:%S}"

    @property
    def done(self) -> bool:
        return self.status == self.Status.DONE

    def lost(self, *, stale_after: float) -> bool:
        """Still not done ``stale_after`` seconds after it was asked for: a worker
        died or the broker dropped it, and nothing will finish it."""
        age = (timezone.now() - self.created_at).total_seconds()
        return not self.done and age > stale_after


class Counters(models.Model):
    """The dashboard's four counters (retrieval/services/stats.py COUNTERS)."""

    polls = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    messages = models.PositiveIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class MailboxStat(Counters):
    """Counters of one mailbox for one hour, kept as runs are recorded
    (retrieval/services/stats.py): the dashboard reads these, never the runs."""

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="stats")
    hour = models.DateTimeField(help_text="The hour, truncated, in UTC.")

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["mailbox", "hour"], name="mailboxstat_hour")
        ]
        indexes: ClassVar = [models.Index(fields=["hour"])]

    def __str__(self) -> str:
        return f"{self.mailbox_id} {self.hour:%Y-%m-%d %H}:00"


class MailboxDayStat(Counters):
    """Counters of one mailbox for one day, kept for FETCH_STATS_RETENTION_DAYS.

    Each run is added here (the day in settings.TIME_ZONE) and to its hour
    (MailboxStat) as it is recorded (retrieval/services/stats.py): the 7- and
    30-day charts read these rows only. The daily cleanup deletes the hourly
    rows past FETCH_STATS_HOURLY_DAYS (retrieval/services/stats_rollup.py)."""

    mailbox = models.ForeignKey(
        Mailbox, on_delete=models.CASCADE, related_name="day_stats"
    )
    day = models.DateField(help_text="The day in the installation's TIME_ZONE.")

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["mailbox", "day"], name="mailboxdaystat_day"
            )
        ]
        indexes: ClassVar = [models.Index(fields=["day"])]

    def __str__(self) -> str:
        return f"{self.mailbox_id} {self.day:%Y-%m-%d}"


class DomainDayStat(Counters):
    """Counters of one domain (None: the mailboxes in no domain) for one day:
    the sum of the day rows (MailboxDayStat) of the mailboxes in it now.

    A superuser's 7- and 30-day charts and per-domain table read these (at
    most one row per domain and day) instead of adding up a row per mailbox
    and day (300,000 at 10,000 mailboxes, bench/console.py), and so do a domain
    administrator's for the domains they administer. Kept equal to that sum by
    retrieval/services/domain_stats.py: each run is added here as it is
    recorded, a deleted mailbox's days are taken off, a mailbox that moves to
    another domain takes its days along; pruned with the day rows."""

    domain = models.ForeignKey(
        "accounts.Domain",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="day_stats",
    )
    day = models.DateField(help_text="The day in the installation's TIME_ZONE.")

    class Meta:
        constraints: ClassVar = [
            # One row per domain and day, and one per day for no domain (a
            # unique (domain, day) lets NULLs repeat).
            models.UniqueConstraint(
                fields=["domain", "day"],
                condition=models.Q(domain__isnull=False),
                name="domaindaystat_day",
            ),
            models.UniqueConstraint(
                fields=["day"],
                condition=models.Q(domain__isnull=True),
                name="domaindaystat_nodomain_day",
            ),
        ]
        indexes: ClassVar = [models.Index(fields=["day"], name="domaindaystat_days")]

    def __str__(self) -> str:
        return f"{self.domain_id or '-'} {self.day:%Y-%m-%d}"


class HostSlot(models.Model):
    """One of the FETCH_MAX_SESSIONS_PER_HOST sessions a remote host may have open.

    A counting semaphore in rows, so it holds across workers and hosts on
    PostgreSQL and on SQLite alike: a poll takes a free slot (a conditional
    UPDATE) for the length of its session and gives it back after; a slot whose
    holder died frees itself when ``until`` passes (services.hostslots).
    """

    host = models.CharField(max_length=253)
    slot = models.PositiveSmallIntegerField()
    holder = models.CharField(max_length=64, blank=True)
    until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["host", "slot"], name="hostslot_once")
        ]

    def __str__(self) -> str:
        return f"{self.host} #{self.slot}"


class OAuthGrant(models.Model):
    """The OAuth2 consent given for one mailbox (issue 16): which provider, and
    the refresh and access tokens, encrypted like the password and bound to the
    mailbox (retrieval/crypto.py). Written only by retrieval/services/oauth.py;
    the access token is refreshed there, one refresh at a time per grant (the
    ``locked_at`` write is the lock: a row lock on PostgreSQL, the database's one
    write lock on SQLite).
    """

    class Purpose(models.TextChoices):
        # Which login of the mailbox the grant is for: the server polled, or
        # the IMAP mailbox delivered into (delivery kind "IMAP mailbox").
        SOURCE = "source", "Source mailbox"
        DESTINATION = "destination", "Destination mailbox"

    mailbox = models.ForeignKey(
        Mailbox, on_delete=models.CASCADE, related_name="oauth_grants"
    )
    purpose = models.CharField(
        max_length=12, choices=Purpose, default=Purpose.SOURCE, editable=False
    )
    provider = models.CharField(max_length=32)
    refresh_token_encrypted = models.TextField(blank=True, editable=False)
    access_token_encrypted = models.TextField(blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    scope = models.TextField(blank=True, editable=False)
    connected_at = models.DateTimeField(default=timezone.now, editable=False)
    refreshed_at = models.DateTimeField(null=True, blank=True, editable=False)
    refreshes = models.PositiveIntegerField(default=0, editable=False)
    locked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "OAuth2 grant"
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["mailbox", "purpose"], name="oauthgrant_one_per_purpose"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.purpose} grant of mailbox {self.mailbox_id}"

    def _bound(self, which: str) -> str:
        # Bound to the mailbox and the purpose: a destination token copied into
        # the source's row (or the other way) does not decrypt there. A source
        # grant keeps the binding it had before destinations had grants, so
        # the tokens stored then still decrypt.
        if self.purpose == self.Purpose.SOURCE:
            return f"{self.mailbox.uuid}:oauth-{which}"
        return f"{self.mailbox.uuid}:oauth-{self.purpose}-{which}"

    def set_tokens(self, *, access: str, refresh: str | None) -> None:
        """``refresh`` None: the provider sent no new one, the old one stays."""
        self.access_token_encrypted = (
            crypto.encrypt(access, bound_to=self._bound("access")) if access else ""
        )
        if refresh is not None:
            self.refresh_token_encrypted = (
                crypto.encrypt(refresh, bound_to=self._bound("refresh"))
                if refresh
                else ""
            )

    def get_access_token(self) -> str:
        if not self.access_token_encrypted:
            return ""
        return crypto.decrypt(
            self.access_token_encrypted, bound_to=self._bound("access")
        )

    def get_refresh_token(self) -> str:
        if not self.refresh_token_encrypted:
            return ""
        return crypto.decrypt(
            self.refresh_token_encrypted, bound_to=self._bound("refresh")
        )
