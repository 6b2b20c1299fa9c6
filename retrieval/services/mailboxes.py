"""Mailboxes: add, change, delete; the checks the forms ask before a save.

The views decide who may ask (retrieval.permissions) and the forms what may be
asked (retrieval.forms); these functions carry it out, and hold the rules that
every writer shares whatever its form said: the quotas, owner and domain
consistent, commands on this server only in a superuser's mailbox. Mailbox.save
keeps the rule on a change of remote account as the last line of defence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from retrieval import crypto
from retrieval.models import (
    DESTINATION_ACCOUNT,
    REMOTE_IDENTITY,
    Mailbox,
    OAuthGrant,
    remote_identity,
)
from retrieval.services.domain_stats import domain_stats_forget, domain_stats_move
from retrieval.services.quotas import mailbox_quota_check

if TYPE_CHECKING:
    from collections.abc import Mapping

    from django.db.models import QuerySet

    from accounts.models import Domain, User


class MailboxBusy(Exception):
    """The mailbox is being polled; the text says until when at the latest."""


class OwnerDomainMismatch(ValueError):
    """The mailbox's domain is neither its owner's nor one they administer."""


class ServerCommandRefused(PermissionError):
    """A program to deliver to, asked for a mailbox that may not run one."""


def mailbox_new() -> Mailbox:
    """An unsaved mailbox delivering where the installation delivers by default
    (its domain's defaults are applied when it is saved: domain_defaults_apply)."""
    kind, host, port = _installation_delivery()
    return Mailbox(delivery_kind=kind, delivery_host=host, delivery_port=port)


def _installation_delivery() -> tuple[str, str, int]:
    return (
        settings.FETCH_DEFAULT_DELIVERY_KIND,
        settings.FETCH_DEFAULT_DELIVERY_HOST,
        settings.FETCH_DEFAULT_DELIVERY_PORT,
    )


def domain_defaults_apply(*, mailbox: Mailbox, domain: Domain | None) -> None:
    """Give a new mailbox its domain's defaults (accounts.models.Domain) where
    the form left the installation's: the delivery target, the poll interval,
    the postmaster. A value someone chose (a superuser's listener, another
    interval, an rcfile's postmaster) stays."""
    if domain is None:
        return
    target = domain.default_delivery
    current = (mailbox.delivery_kind, mailbox.delivery_host, mailbox.delivery_port)
    if target is not None and current == _installation_delivery():
        mailbox.delivery_kind = target.kind
        mailbox.delivery_host = target.host
        mailbox.delivery_port = target.port
    interval = domain.default_poll_interval
    if interval and mailbox.poll_interval == settings.FETCH_DEFAULT_INTERVAL:
        mailbox.poll_interval = interval
    postmaster = domain.default_postmaster
    if postmaster:
        options = dict(mailbox.options or {})
        globals_ = dict(options.get("globals") or {})
        globals_.setdefault("postmaster", postmaster)
        options["globals"] = globals_
        mailbox.options = options


def account_changes(*, mailbox: Mailbox, values: Mapping[str, Any]) -> bool:
    """Would saving ``values`` (a form's cleaned data) over the stored ``mailbox``
    name another remote account (Mailbox.save's rule)?"""
    if mailbox._state.adding:
        return False
    after = {name: values.get(name, getattr(mailbox, name)) for name in REMOTE_IDENTITY}
    stored = {name: getattr(mailbox, name) for name in REMOTE_IDENTITY}
    return remote_identity(after) != remote_identity(stored)


def password_needed(*, mailbox: Mailbox, values: Mapping[str, Any]) -> bool:
    """Would that save need the password typed again? The forms ask before the
    save refuses: yes when the account changes while a password is stored and
    neither a new one nor its removal is given."""
    if not mailbox.has_password:
        return False
    if values.get("new_password") or values.get("clear_password"):
        return False
    return account_changes(mailbox=mailbox, values=values)


def account_busy(*, mailbox: Mailbox, values: Mapping[str, Any]) -> bool:
    """Would that save change the account while a poll holds the lease?"""
    lease = mailbox.lease_until
    return (
        lease is not None
        and lease > timezone.now()
        and account_changes(mailbox=mailbox, values=values)
    )


def delete_after_days_refusal(*, keep: bool, days: int | None) -> str:
    """Why a mailbox may not have this ``delete_after_days``, or "".

    Only with keep: without it every message leaves the server once delivered,
    so a number of days there would promise what does not happen. The importer
    stores what an rcfile says all the same (a poll then notes that it has no
    effect); the pages and the API refuse it in these words.
    """
    if days is None:
        return ""
    if days < 1:
        return "Give a number of days of 1 or more, or leave it empty."
    if not keep:
        return (
            "Deleting after a number of days works only with 'keep': without it "
            "messages are deleted from the server as soon as they are delivered. "
            "Tick 'keep', or leave this empty."
        )
    return ""


def owner_domain_refusal(*, owner: User | None, domain: Domain | None) -> str:
    """Why a mailbox of ``owner`` may not be in ``domain``; "" if it may.

    A domain's administrators see and change its mailboxes, so a mailbox is in
    no domain, its owner's, or one its owner administers (a domain import).
    """
    if owner is None or domain is None or owner.is_superuser:
        return ""
    if owner.domain_id == domain.pk or domain.admins.filter(pk=owner.pk).exists():
        return ""
    return (
        f"{owner.email} is neither a member nor an administrator of {domain.name}: "
        "their mailbox cannot be in that domain."
    )


def _check_owner_domain(mailbox: Mailbox) -> tuple[int, int | None] | None:
    """On a new row, or one whose owner or domain changes (rows stored before the
    owner moved are left alone). Returns the stored (owner id, domain id), None
    for a new row."""
    stored = None
    if not mailbox._state.adding:
        stored = (
            Mailbox.objects.filter(pk=mailbox.pk)
            .values_list("owner_id", "domain_id")
            .first()
        )
        if stored == (mailbox.owner_id, mailbox.domain_id):
            return stored
    refusal = owner_domain_refusal(owner=mailbox.owner, domain=mailbox.domain)
    if refusal:
        raise OwnerDomainMismatch(refusal)
    return stored


def _set_mda(mailbox: Mailbox, mda: str, editor: User | None) -> None:
    if mda and (
        not mailbox.owner.is_superuser
        or (editor is not None and not editor.is_superuser)
    ):
        raise ServerCommandRefused(
            "Only a superuser may set a program to deliver to, and only for a "
            "mailbox owned by a superuser."
        )
    kept = mailbox.delivery_kind == Mailbox.DeliveryKind.MDA and mda
    _set_user_options(mailbox, {"mda": mda if kept else ""})


def _set_user_options(mailbox: Mailbox, values: Mapping[str, Any]) -> None:
    """Set the rcfile user options ``values`` in ``options``; a falsy one goes."""
    options = dict(mailbox.options) if isinstance(mailbox.options, dict) else {}
    user = dict(options.get("user") or {})
    for name, value in values.items():
        if value:
            user[name] = value
        else:
            user.pop(name, None)
    if user:
        options["user"] = user
    else:
        options.pop("user", None)
    mailbox.options = options


RUN_COLUMNS = frozenset({"latest_run", "latest_outcome", "latest_at"})
EDITABLE_COLUMNS = [
    field.name
    for field in Mailbox._meta.concrete_fields
    if not field.primary_key and field.name not in RUN_COLUMNS
]


@transaction.atomic
def mailbox_save(
    *,
    mailbox: Mailbox,
    owner: User | None = None,
    creator: User | None = None,
    editor: User | None = None,
    new_password: str = "",
    clear_password: bool = False,
    mda: str | None = None,
    destination_password: str = "",
    user_options: Mapping[str, Any] | None = None,
) -> Mailbox:
    """Store a validated mailbox: the one write path of the pages, the admin and
    the importer. ``creator`` (the person adding it) is held to the mailbox quotas
    (QuotaExceeded).

    ``owner``: for a new mailbox, who it belongs to (and so its domain); None keeps
    the owner already on the row (the admin's and importer's choice). The domain
    must be the owner's or one they administer (OwnerDomainMismatch). ``mda``: the
    program to deliver to, for a superuser's form (``editor``, when given, must be
    one, and the owner too: ServerCommandRefused); None leaves the stored command
    alone. ``destination_password``: a new password for the mailbox delivered
    into (delivery kind IMAP); empty keeps the stored one. ``user_options``:
    rcfile options of the user entry that a form edits (limit, fetchlimit,
    sslfingerprint), stored in ``options``; an empty or 0 value removes one.
    When the remote account changes (protocol, host, user name),
    Mailbox.save drops the ledger and raises PasswordRequired unless
    ``new_password`` or ``clear_password`` is given: see there.
    """
    if mailbox._state.adding:
        if owner is not None:
            mailbox.owner = owner
            mailbox.domain = owner.domain
            domain_defaults_apply(mailbox=mailbox, domain=mailbox.domain)
        elif mailbox.owner_id is None:
            raise ValueError("A new mailbox needs an owner.")
        if creator is not None:
            mailbox_quota_check(
                owner=mailbox.owner, creator=creator, domain=mailbox.domain
            )
    stored = _check_owner_domain(mailbox)
    if mailbox.delete_after_days is not None and mailbox.delete_after_days < 1:
        raise ValueError("delete_after_days must be 1 or more, or None.")
    if mda is not None:
        _set_mda(mailbox, mda, editor)
    if user_options is not None:
        _set_user_options(mailbox, user_options)
    if clear_password:
        mailbox.set_password("")
    elif new_password:
        mailbox.set_password(new_password)
    if destination_password:
        mailbox.set_destination_password(destination_password)
    if _destination_account_changed(mailbox):
        # A token was granted for the old destination: never sent to another.
        OAuthGrant.objects.filter(
            mailbox_id=mailbox.pk, purpose=OAuthGrant.Purpose.DESTINATION
        ).delete()
    if mailbox._state.adding:
        mailbox.save()
    else:
        if stored is not None and stored[1] != mailbox.domain_id:
            # Its counters go along to the new domain's (the dashboard's).
            domain_stats_move(
                mailboxes=Mailbox.objects.filter(pk=mailbox.pk), to=mailbox.domain_id
            )
        # Not the last run's columns: a run recorded since the form read the row
        # keeps its outcome (services/latest_run.py writes them).
        mailbox.save(update_fields=EDITABLE_COLUMNS)
    return mailbox


def _destination_account_changed(mailbox: Mailbox) -> bool:
    if mailbox._state.adding or mailbox.pk is None:
        return False
    before = Mailbox.objects.filter(pk=mailbox.pk).values(*DESTINATION_ACCOUNT).first()
    return before is not None and any(
        before[name] != getattr(mailbox, name) for name in DESTINATION_ACCOUNT
    )


def mailbox_delete(*, mailbox: Mailbox) -> None:
    """Delete the mailbox with its polls and ledger; not while a poll runs, whose
    record would then have nowhere to go."""
    now = timezone.now()
    if mailbox.lease_until is not None and mailbox.lease_until > now:
        until = timezone.localtime(mailbox.lease_until)
        raise MailboxBusy(
            "This mailbox is being polled right now; delete it when the poll has "
            f"ended (at {until:%H:%M} at the latest)."
        )
    with transaction.atomic():
        domain_stats_forget(mailboxes=Mailbox.objects.filter(pk=mailbox.pk))
        mailbox.delete()


def mailboxes_delete(*, mailboxes: QuerySet[Mailbox]) -> tuple[int, list[Mailbox]]:
    """Delete each mailbox that no poll holds (the admin's bulk delete); returns
    how many were deleted and those left because a poll runs."""
    deleted, busy = 0, []
    for mailbox in mailboxes:
        try:
            mailbox_delete(mailbox=mailbox)
        except MailboxBusy:
            busy.append(mailbox)
        else:
            deleted += 1
    return deleted, busy


def mailbox_passwords_rotate() -> int:
    """Re-encrypt every stored secret under the first key of FIELD_ENCRYPTION_KEYS
    (manage.py rotate_secrets): the remote password, the listener's SMTP AUTH
    password and the OAuth2 grants' tokens, or removing the old key makes the
    one left behind unreadable. Returns how many secrets were re-encrypted."""
    rotated = 0
    with transaction.atomic():
        rows = Mailbox.objects.select_for_update().filter(
            ~Q(password_encrypted="") | ~Q(esmtp_password_encrypted="")
        )
        for mailbox in rows:
            fields = []
            if crypto.needs_rotation(mailbox.password_encrypted):
                mailbox.set_password(mailbox.get_password())
                fields.append("password_encrypted")
            if crypto.needs_rotation(mailbox.esmtp_password_encrypted):
                mailbox.set_esmtp_password(mailbox.get_esmtp_password())
                fields.append("esmtp_password_encrypted")
            if fields:
                mailbox.save(update_fields=fields)
                rotated += len(fields)
        for grant in OAuthGrant.objects.select_for_update().select_related("mailbox"):
            fields = [
                name
                for name in ("access_token_encrypted", "refresh_token_encrypted")
                if crypto.needs_rotation(getattr(grant, name))
            ]
            if fields:
                refresh = grant.get_refresh_token()
                grant.set_tokens(access=grant.get_access_token(), refresh=refresh)
                grant.save(
                    update_fields=["access_token_encrypted", "refresh_token_encrypted"]
                )
                rotated += len(fields)
    return rotated
