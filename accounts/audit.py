"""The audit log: sign-ins and every change to mailboxes, rules, domains and people.

Changes are recorded from model signals (post_save, post_delete, m2m_changed), not
from the write path, so that every writer (pages, admin, API, importer, commands)
is covered whatever route it takes. Who acted comes from a context variable that
``AuditContextMiddleware`` sets for the length of a request; outside a request
(Celery tasks, management commands) the actor is "system".

Summaries name the fields that changed; values are shown only for fields on an
allow list of harmless ones, so a password, token, key or command line can never
end up in the log.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.auth.signals import (
    user_logged_in,
    user_logged_out,
    user_login_failed,
)
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

from accounts import throttle
from accounts.models import AuditEvent, DeliveryTarget, Domain, User

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.db.models import Model
    from django.http import HttpRequest, HttpResponse

SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    user: Any  # a User, or None
    label: str
    address: str | None


# The request being served, if any: the actor is read from it only when a change
# is recorded, because request.user is lazy and changes when the request signs
# someone in.
_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar(
    "fetchweb_audit_request", default=None
)


def current_actor() -> Actor:
    request = _request.get()
    if request is None:
        return Actor(None, SYSTEM, None)
    user = getattr(request, "user", None)
    address = throttle.client_address(request)
    if user is not None and user.is_authenticated:
        return Actor(user, user.email, address)
    return Actor(None, "anonymous", address)


class AuditContextMiddleware:
    """Makes the signed-in person (and their address) the actor of every change
    recorded during the request. Goes after AuthenticationMiddleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)


def record(
    action: str,
    *,
    obj: Model | None = None,
    summary: str = "",
    actor: Actor | None = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
) -> AuditEvent:
    who = actor or current_actor()
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
        object_repr = object_repr or str(obj)
    user = who.user
    return AuditEvent.objects.create(
        actor=user if user is not None and user.pk else None,
        actor_label=who.label[:320],
        address=who.address,
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr[:200],
        summary=summary[:2000],
    )


# --- what a change looks like ---------------------------------------------------

# Fields that only the system changes while it works (polls, leases, sign-ins):
# not a change anyone made, and far too frequent to log.
IGNORED_FIELDS = {
    "retrieval.mailbox": {"next_poll_at", "lease_owner", "lease_until", "updated_at"},
    "accounts.user": {"last_login"},
}
# Fields whose values may be shown. Everything else is named only ("password
# changed"), so a secret or a command line never reaches the log.
SHOWN_FIELDS = {
    "retrieval.mailbox": {
        "name",
        "protocol",
        "host",
        "port",
        "tls_mode",
        "verify_tls",
        "auth",
        "username",
        "keep",
        "fetchall",
        "timeout",
        "delivery_kind",
        "delivery_host",
        "delivery_port",
        "recipient",
        "poll_interval",
        "enabled",
        "owner",
        "domain",
    },
    "retrieval.multidroprule": {"mailbox", "position", "remote", "local"},
    "accounts.domain": {
        "name",
        "default_delivery",
        "default_postmaster",
        "default_poll_interval",
    },
    "accounts.deliverytarget": {"name", "kind", "host", "port"},
    "accounts.user": {
        "email",
        "full_name",
        "domain",
        "is_active",
        "is_staff",
        "is_superuser",
        "time_zone",
    },
}
SECRET_WORDS = ("password", "secret", "token", "key")


def _audited_models() -> list[type[Model]]:
    from retrieval.models import Mailbox, MultidropRule

    return [Mailbox, MultidropRule, Domain, DeliveryTarget, User]


def _values(instance: Model) -> dict[str, Any]:
    label = instance._meta.label_lower
    ignored = IGNORED_FIELDS.get(label, set())
    return {
        f.attname: getattr(instance, f.attname)
        for f in instance._meta.concrete_fields
        if f.name not in ignored and not f.primary_key
    }


def _shown(label: str, attname: str, value: Any) -> str:
    name = attname.removesuffix("_id")
    if name not in SHOWN_FIELDS.get(label, set()) or any(
        w in name for w in SECRET_WORDS
    ):
        return ""
    text = "" if value is None else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(label: str, before: dict[str, Any], after: dict[str, Any]) -> str:
    parts = []
    for attname, new in after.items():
        old = before.get(attname)
        if old == new:
            continue
        name = attname.removesuffix("_id").removesuffix("_encrypted")
        shown_old, shown_new = _shown(label, attname, old), _shown(label, attname, new)
        if shown_old or shown_new:
            parts.append(f"{name}: {shown_old or '-'} -> {shown_new or '-'}")
        else:
            parts.append(f"{name} changed")
    return "; ".join(parts)


def _on_pre_save(
    sender: type[Model], *, instance: Model, raw: bool, **kwargs: Any
) -> None:
    if instance.pk is None or (
        kwargs.get("update_fields") is not None
        and set(kwargs["update_fields"])
        <= IGNORED_FIELDS.get(sender._meta.label_lower, set())
    ):
        instance._audit_before = None  # type: ignore[attr-defined]
        return
    old = sender._default_manager.filter(pk=instance.pk).first()
    instance._audit_before = _values(old) if old is not None else None  # type: ignore[attr-defined]


def _on_post_save(
    sender: type[Model], *, instance: Model, created: bool, **kwargs: Any
) -> None:
    label = sender._meta.label_lower
    before = getattr(instance, "_audit_before", None)
    instance.__dict__.pop("_audit_before", None)
    after = _values(instance)
    if created:
        shown = [
            f"{attname.removesuffix('_id')}: {text}"
            for attname, value in after.items()
            if (text := _shown(label, attname, value))
        ]
        record(AuditEvent.Action.CREATE, obj=instance, summary="; ".join(shown))
        return
    if before is None:
        return  # only system fields were saved (update_fields), or no old row
    summary = _describe(label, before, after)
    if summary:
        record(AuditEvent.Action.UPDATE, obj=instance, summary=summary)


def _on_post_delete(sender: type[Model], instance: Model, **kwargs: Any) -> None:
    record(AuditEvent.Action.DELETE, obj=instance)


def _on_domain_admins(
    sender: Any, instance: Model, action: str, pk_set: set[Any] | None, **kwargs: Any
) -> None:
    if action not in {"post_add", "post_remove", "post_clear"}:
        return
    if isinstance(instance, Domain):
        domains, people = [instance], pk_set or set()
        emails = sorted(
            User.objects.filter(pk__in=people).values_list("email", flat=True)
        )
    else:  # changed from the User side: user.administered_domains.add(...)
        domains = list(Domain.objects.filter(pk__in=pk_set or set()))
        emails = [getattr(instance, "email", str(instance))]
    verb = {"post_add": "added", "post_remove": "removed", "post_clear": "cleared"}
    for domain in domains:
        who = ", ".join(emails)
        record(
            AuditEvent.Action.UPDATE,
            obj=domain,
            summary=f"admins {verb[action]}" + (f": {who}" if who else ""),
        )


# --- sign-ins ---------------------------------------------------------------------


def _on_logged_in(
    sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any
) -> None:
    throttle.clear_account(user.get_username())
    _session_event(AuditEvent.Action.LOGIN, user, request)


def _on_logged_out(
    sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any
) -> None:
    if user is not None:
        _session_event(AuditEvent.Action.LOGOUT, user, request)


def _session_event(action: str, user: Any, request: HttpRequest | None) -> None:
    """A sign-in or sign-out, by the account itself, from the request's address."""
    record(
        action,
        obj=user,
        actor=Actor(user, user.email, throttle.client_address(request)),
        summary=_where(request),
    )


def _on_login_failed(
    sender: Any,
    credentials: dict[str, Any],
    request: HttpRequest | None = None,
    **kwargs: Any,
) -> None:
    # Django has already masked the password in ``credentials``; only the name
    # that was typed is kept.
    username = str(credentials.get("username") or credentials.get("email") or "")
    address = throttle.client_address(request)
    locked = throttle.refusal(username, address)
    if locked is None:  # failures while locked do not extend the lock
        throttle.record_failure(username, address)
    record(
        AuditEvent.Action.LOGIN_THROTTLED if locked else AuditEvent.Action.LOGIN_FAILED,
        actor=Actor(None, username[:320] or "anonymous", address),
        object_type="accounts.user",
        object_repr=username[:200],
        summary=_where(request),
    )


def record_throttled(username: str, request: HttpRequest | None, reason: str) -> None:
    record(
        AuditEvent.Action.LOGIN_THROTTLED,
        actor=Actor(
            None, username[:320] or "anonymous", throttle.client_address(request)
        ),
        object_type="accounts.user",
        object_repr=username[:200],
        summary=f"{_where(request)}; {reason}".strip("; "),
    )


def _where(request: HttpRequest | None) -> str:
    if request is None:
        return ""
    return f"via {request.path}"[:200]


def connect() -> None:
    """Called once from AccountsConfig.ready()."""
    for model in _audited_models():
        uid = f"fetchweb-audit-{model._meta.label_lower}"
        pre_save.connect(_on_pre_save, sender=model, dispatch_uid=uid)
        post_save.connect(_on_post_save, sender=model, dispatch_uid=uid)
        post_delete.connect(_on_post_delete, sender=model, dispatch_uid=uid)
    m2m_changed.connect(
        _on_domain_admins,
        sender=Domain.admins.through,
        dispatch_uid="fetchweb-audit-admins",
    )
    user_logged_in.connect(_on_logged_in, dispatch_uid="fetchweb-audit-login")
    user_logged_out.connect(_on_logged_out, dispatch_uid="fetchweb-audit-logout")
    user_login_failed.connect(_on_login_failed, dispatch_uid="fetchweb-audit-failed")
