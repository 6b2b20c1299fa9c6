"""People: the admin's writes (superusers only).

Deleting a person deletes their mailboxes, with their polls and ledgers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction

from accounts.models import User
from retrieval.models import Mailbox
from retrieval.services.domain_stats import domain_stats_forget, domain_stats_move

if TYPE_CHECKING:
    from django.db.models import QuerySet


@transaction.atomic
def user_save(*, user: User) -> User:
    """Store a validated person (the admin's forms have set the password hash;
    groups and permissions are the form's many-to-many, saved after it).

    A person who moves to another domain takes their mailboxes along: those in
    the domain they leave go to the new one (or to none), so that the old
    domain's administrators no longer see them. Mailboxes in a domain the person
    administers (a domain import) stay where they are.
    """
    before = (
        None
        if user._state.adding
        else User.objects.filter(pk=user.pk).values_list("domain_id", flat=True).first()
    )
    user.save()
    if before is not None and before != user.domain_id:
        administers = user.administered_domains.filter(pk=before).exists()
        if not administers:
            moving = Mailbox.objects.filter(owner=user, domain_id=before)
            domain_stats_move(mailboxes=moving, to=user.domain_id)
            moving.update(domain_id=user.domain_id)
    return user


@transaction.atomic
def user_delete(*, user: User) -> None:
    """Delete ``user`` and their mailboxes (their domains' counters lose them)."""
    domain_stats_forget(mailboxes=Mailbox.objects.filter(owner=user))
    user.delete()


@transaction.atomic
def users_delete(*, users: QuerySet[User]) -> int:
    """The admin's bulk delete: each one as ``user_delete``; returns how many."""
    count = 0
    for user in users:
        user_delete(user=user)
        count += 1
    return count


def user_password_set(*, user: User, password: str) -> User:
    """Give ``user`` a new password (already validated against
    AUTH_PASSWORD_VALIDATORS by the form). Only the hash is stored; the audit log
    says "password changed", never the password."""
    user.set_password(password)
    user.save(update_fields=["password"])
    return user
