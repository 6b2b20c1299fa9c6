"""Mail domains: the admin's writes (superusers only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from accounts.models import Domain


def domain_save(*, domain: Domain) -> Domain:
    """Store a validated domain (its administrators are the form's many-to-many,
    saved after it by the admin)."""
    domain.save()
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
