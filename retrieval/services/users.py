"""People: the admin's writes (superusers only).

Deleting a person deletes their mailboxes, with their polls and ledgers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from accounts.models import User


def user_save(*, user: User) -> User:
    """Store a validated person (the admin's forms have set the password hash;
    groups and permissions are the form's many-to-many, saved after it)."""
    user.save()
    return user


def user_delete(*, user: User) -> None:
    user.delete()


@transaction.atomic
def users_delete(*, users: QuerySet[User]) -> int:
    """The admin's bulk delete: each one as ``user_delete``; returns how many."""
    count = 0
    for user in users:
        user_delete(user=user)
        count += 1
    return count
