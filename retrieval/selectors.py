"""Reads shared by views: every lookup scoped to the person asking."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Prefetch, Q, QuerySet

from accounts.models import Domain, User
from retrieval.models import Mailbox, PollRun

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser


def mailboxes_visible_to(
    *, user: AbstractBaseUser | AnonymousUser
) -> QuerySet[Mailbox]:
    """A superuser sees every mailbox, a domain administrator their domains', a user
    their own."""
    if not user.is_authenticated:
        return Mailbox.objects.none()
    queryset = Mailbox.objects.prefetch_related(
        Prefetch(
            "runs",
            queryset=PollRun.objects.order_by("-started_at")[:1],
            to_attr="recent_runs",
        )
    )
    if getattr(user, "is_superuser", False):
        return queryset
    return queryset.filter(Q(owner=user) | Q(domain__admins=user)).distinct()


def domains_administered_by(*, user: User) -> QuerySet[Domain]:
    """Every domain for a superuser, else the ones ``user`` administers."""
    if user.is_superuser:
        return Domain.objects.all()
    return user.administered_domains.all()


def people_visible_to(*, user: User) -> QuerySet[User]:
    """Everyone for a superuser; for a domain administrator the members of their
    domains and themselves, never a superuser; for a user themselves."""
    if user.is_superuser:
        return User.objects.select_related("domain")
    return (
        User.objects.select_related("domain")
        .filter(
            Q(domain__in=user.administered_domains.all()) | Q(pk=user.pk),
            is_superuser=False,
        )
        .distinct()
    )
