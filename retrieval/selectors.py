"""Reads shared by views: every lookup scoped to the person asking."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Prefetch, Q, QuerySet

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
