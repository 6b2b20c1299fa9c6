"""People and the domains they belong to.

Three roles: a superuser runs the installation; a domain administrator manages one or
more domains and every mailbox in them; a user manages their own mailboxes, either as
a member of a domain or on their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from django.contrib.auth.models import (
    AbstractBaseUser,
    BaseUserManager,
    PermissionsMixin,
)
from django.core.validators import (
    MaxValueValidator,
    MinValueValidator,
    RegexValidator,
)
from django.db import models
from django.utils import timezone

domain_name_validator = RegexValidator(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
    "Enter a domain name in lower case, such as example.org.",
)


class DeliveryTarget(models.Model):
    """A listener that superusers offer to domain administrators as the place a
    domain's new mailboxes deliver to: the list they choose from, so that a
    domain administrator never types a host or a port."""

    class Kind(models.TextChoices):
        SMTP = "smtp", "SMTP listener"
        LMTP = "lmtp", "LMTP listener"

    name = models.CharField(max_length=100, unique=True, help_text="What people see.")
    kind = models.CharField(max_length=8, choices=Kind, default=Kind.SMTP)
    host = models.CharField(
        max_length=500,
        help_text="The listener's host name or address, or a unix socket path for LMTP.",
    )
    port = models.PositiveIntegerField(
        default=25, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind} {self.host}:{self.port})"


class Domain(models.Model):
    name = models.CharField(
        max_length=253, unique=True, validators=[domain_name_validator]
    )
    admins = models.ManyToManyField(
        "accounts.User",
        related_name="administered_domains",
        blank=True,
        help_text="People who manage every mailbox of this domain.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # The defaults of a mailbox created in this domain (the domain's
    # administrators set them; retrieval.services.mailboxes applies them).
    default_delivery = models.ForeignKey(
        DeliveryTarget,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="domains",
        verbose_name="delivery target",
        help_text="Where the domain's new mailboxes deliver; empty: the installation's.",
    )
    default_postmaster = models.CharField(
        max_length=320,
        blank=True,
        verbose_name="postmaster",
        help_text="Who gets the bounces and the mail no one else takes; empty: "
        "the installation's.",
    )
    default_poll_interval = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(10)],
        verbose_name="poll interval",
        help_text="Seconds between polls of a new mailbox; empty: the installation's.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


if TYPE_CHECKING:
    _UserManagerBase = BaseUserManager["User"]
else:  # django-stubs' generics are not subscriptable at run time
    _UserManagerBase = BaseUserManager


class UserManager(_UserManagerBase):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **extra: Any) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(
        self, email: str, password: str | None = None, **extra: Any
    ) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(
        self, email: str, password: str | None = None, **extra: Any
    ) -> User:
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person who logs in with their email address."""

    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    domain = models.ForeignKey(
        Domain,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="members",
        help_text="The domain this person belongs to; empty for someone on their own.",
    )
    is_staff = models.BooleanField(
        default=False, help_text="May log in to the administration site."
    )
    # A disabled person cannot sign in and their mailboxes are not polled
    # (the dispatcher and the IDLE process skip them); nothing is deleted.
    is_active = models.BooleanField(default=True)
    time_zone = models.CharField(
        max_length=64,
        blank=True,
        help_text="The zone the pages show times in; empty: the installation's.",
    )
    date_joined = models.DateTimeField(default=timezone.now)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.email = self.email.lower()
        super().save(*args, **kwargs)

    @property
    def is_domain_admin(self) -> bool:
        # Read along with the person by the sign-in backend (accounts/backends.py).
        known = self.__dict__.get("administers_any")
        if known is not None:
            return bool(known)
        return self.administered_domains.exists()


class AuditEvent(models.Model):
    """Who did what, when, from where: sign-ins and every change to mailboxes,
    multidrop rules, domains and people (written by ``accounts/audit.py``).

    ``summary`` names the fields that changed and shows the values of harmless ones
    only; it never holds a password, a token or a key.
    """

    class Action(models.TextChoices):
        LOGIN = "login", "signed in"
        LOGIN_FAILED = "login_failed", "sign-in failed"
        LOGIN_THROTTLED = "login_throttled", "sign-in refused (too many failures)"
        LOGOUT = "logout", "signed out"
        CREATE = "create", "created"
        UPDATE = "update", "changed"
        DELETE = "delete", "deleted"

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # No database constraint: an event outlives its actor (one deleting a batch of
    # accounts that includes their own is recorded after their row is gone), and
    # actor_label keeps the name. A missing actor reads as None.
    actor = models.ForeignKey(
        User,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
        help_text="Empty for the system (tasks, commands) or an unknown person.",
    )
    # The actor's email at the time (or "system", or the name typed at a failed
    # sign-in), kept when the account is later deleted.
    actor_label = models.CharField(max_length=320)
    address = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=16, choices=Action)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    summary = models.TextField(blank=True)

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]
        indexes: ClassVar = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action}"
class ApiToken(models.Model):
    """A person's key to the REST API: ``fw_<prefix>_<secret>``.

    Only the prefix (to find the row) and the SHA-256 of the secret are stored;
    the whole token is shown once, when it is made (retrieval.services.tokens).
    A revoked token stays as a record and authenticates nobody.
    """

    user = models.ForeignKey(
        "accounts.User", on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What the token is for.")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} (fw_{self.prefix}_…)"

    @property
    def active(self) -> bool:
        return self.revoked_at is None
