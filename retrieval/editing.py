"""What the mailbox pages change: the writes behind the forms and buttons.

The views decide who may ask (retrieval.permissions) and the forms what may be
asked (retrieval.forms); these functions only carry it out.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from retrieval import services
from retrieval.engine.probe import LoginCheck, check_login
from retrieval.models import (
    REMOTE_IDENTITY,
    Mailbox,
    MultidropRule,
    remote_identity,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from accounts.models import User

# Seconds one person waits between two "Poll now" (or two tests) of one mailbox.
ACTION_INTERVAL = 10
# Seconds for each network wait of a connection test: someone watches the page.
PROBE_TIMEOUT = 15.0
PROBE_TRANSCRIPT_CHARS = 20_000


class MailboxBusy(Exception):
    """The mailbox is being polled; the text says until when at the latest."""


def mailbox_new() -> Mailbox:
    """An unsaved mailbox delivering where the installation delivers by default."""
    return Mailbox(
        delivery_kind=settings.FETCH_DEFAULT_DELIVERY_KIND,
        delivery_host=settings.FETCH_DEFAULT_DELIVERY_HOST,
        delivery_port=settings.FETCH_DEFAULT_DELIVERY_PORT,
    )


def account_changes(mailbox: Mailbox, values: Mapping[str, Any]) -> bool:
    """Would saving ``values`` (a form's cleaned data) over the stored ``mailbox``
    name another remote account (Mailbox.save's rule)?"""
    if mailbox._state.adding:
        return False
    after = {name: values.get(name, getattr(mailbox, name)) for name in REMOTE_IDENTITY}
    stored = {name: getattr(mailbox, name) for name in REMOTE_IDENTITY}
    return remote_identity(after) != remote_identity(stored)


def password_needed(mailbox: Mailbox, values: Mapping[str, Any]) -> bool:
    """Would that save need the password typed again? The forms ask before the
    save refuses: yes when the account changes while a password is stored and
    neither a new one nor its removal is given."""
    if not mailbox.has_password:
        return False
    if values.get("new_password") or values.get("clear_password"):
        return False
    return account_changes(mailbox, values)


def account_busy(mailbox: Mailbox, values: Mapping[str, Any]) -> bool:
    """Would that save change the account while a poll holds the lease?"""
    lease = mailbox.lease_until
    return (
        lease is not None
        and lease > timezone.now()
        and account_changes(mailbox, values)
    )


@transaction.atomic
def mailbox_save(
    *,
    mailbox: Mailbox,
    owner: User | None = None,
    creator: User | None = None,
    new_password: str = "",
    clear_password: bool = False,
    mda: str | None = None,
) -> Mailbox:
    """Store a validated mailbox: the one write path of the pages, the admin and
    the importer. ``creator`` (the person adding it) is held to the mailbox quotas
    (services.QuotaExceeded).

    ``owner``: for a new mailbox, who it belongs to (and so its domain); None keeps
    the owner already on the row (the admin's and importer's choice). ``mda``: the
    program to deliver to, for a superuser's form; None leaves the stored command
    alone. When the remote account changes (protocol, host, user name), Mailbox.save
    drops the ledger and raises PasswordRequired unless ``new_password`` or
    ``clear_password`` is given: see there.
    """
    if mailbox._state.adding:
        if owner is not None:
            mailbox.owner = owner
            mailbox.domain = owner.domain
        elif mailbox.owner_id is None:
            raise ValueError("A new mailbox needs an owner.")
        if creator is not None:
            services.mailbox_quota_check(owner=mailbox.owner, creator=creator)
    if mda is not None:
        options = dict(mailbox.options) if isinstance(mailbox.options, dict) else {}
        user = dict(options.get("user") or {})
        if mailbox.delivery_kind == Mailbox.DeliveryKind.MDA and mda:
            user["mda"] = mda
        else:
            user.pop("mda", None)
        options["user"] = user
        mailbox.options = options
    if clear_password:
        mailbox.set_password("")
    elif new_password:
        mailbox.set_password(new_password)
    mailbox.save()
    return mailbox


@transaction.atomic
def mailbox_rules_replace(
    *, mailbox: Mailbox, rules: Sequence[tuple[str, str]]
) -> None:
    """The mailbox's multidrop rules become ``rules`` (remote, local), in order."""
    MultidropRule.objects.filter(mailbox=mailbox).delete()
    MultidropRule.objects.bulk_create(
        MultidropRule(mailbox=mailbox, position=n, remote=remote, local=local)
        for n, (remote, local) in enumerate(rules)
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
    mailbox.delete()


def action_allowed(*, user: User, mailbox: Mailbox, action: str) -> bool:
    """True at most once per ACTION_INTERVAL for one person, mailbox and action."""
    key = f"fetchweb:{action}:{user.pk}:{mailbox.pk}"
    return bool(cache.add(key, 1, timeout=ACTION_INTERVAL))


def mailbox_poll_request(*, mailbox: Mailbox) -> None:
    """Queue a poll now, once the surrounding transaction (if any) has committed."""
    from retrieval.tasks import poll_mailbox as poll_mailbox_task

    transaction.on_commit(partial(poll_mailbox_task.delay, mailbox.pk, "manual"))


def mailbox_login_check(*, mailbox: Mailbox) -> tuple[LoginCheck, str]:
    """Log in to the remote server and out again, as a poll would; nothing is
    fetched or recorded. Returns the answer and the masked transcript."""
    try:
        spec = services.mailbox_spec(mailbox)
    except services.SpecError as exc:
        return LoginCheck(ok=False, greeting="", error=str(exc)), ""
    timeout = min(spec.server.timeout, PROBE_TIMEOUT)
    spec = replace(spec, server=replace(spec.server, timeout=timeout))
    transcript = services.RecordingTranscript(
        secrets=(spec.password.reveal(),) if spec.password else (),
        limit=PROBE_TRANSCRIPT_CHARS,
    )
    return check_login(spec, transcript), transcript.text()
