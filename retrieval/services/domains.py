"""Mail domains: the admin's writes (superusers only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction

if TYPE_CHECKING:
    from collections.abc import Iterable

    from django.db.models import QuerySet

    from accounts.models import Domain, User


@transaction.atomic
def domain_save(*, domain: Domain, admins: Iterable[User] | None = None) -> Domain:
    """Store a validated domain and, when given, who administers it."""
    domain.save()
    if admins is not None:
        domain.admins.set(admins)
    return domain


def domain_delete(*, domain: Domain) -> None:
    """Delete a domain; refused by the database (ProtectedError) while people or
    mailboxes are in it, which the admin's confirmation page lists."""
    domain.delete()


@transaction.atomic
def domains_delete(*, domains: QuerySet[Domain]) -> int:
    """The admin's bulk delete: each one as ``domain_delete``; returns how many."""
    count = 0
    for domain in domains:
        domain_delete(domain=domain)
        count += 1
    return count
