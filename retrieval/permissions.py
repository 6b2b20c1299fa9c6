"""Who may see and change which mailbox: the one place the pages ask.

Seeing follows :func:`retrieval.selectors.mailboxes_visible_to` (a superuser every
mailbox, a domain administrator their domains', a user their own). A mailbox
someone cannot see does not exist for them: 404, whatever the page or method, so
that ids reveal nothing.

Changing is seeing, with one exception: a mailbox owned by a superuser is
read-only to everyone else. Its owner's rights travel with the row (it may reach
private addresses and run commands on this server), so a domain administrator
who could edit its host would borrow them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404

from accounts.models import User
from retrieval.selectors import mailboxes_visible_to

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from retrieval.models import Mailbox


def get_mailbox_for_user(user: User, pk: int) -> tuple[Mailbox, bool]:
    """The mailbox ``pk`` if ``user`` may see it, and whether they may change it."""
    mailbox = (
        mailboxes_visible_to(user=user)
        .prefetch_related(None)
        .select_related("owner", "domain")
        .filter(pk=pk)
        .first()
    )
    if mailbox is None:
        raise Http404("No such mailbox.")
    return mailbox, user.is_superuser or not mailbox.owner.is_superuser


def get_rw_mailbox_for_user(user: User, pk: int) -> Mailbox:
    """The same, for pages that change it: 403 when it may only be looked at."""
    mailbox, can_write = get_mailbox_for_user(user, pk)
    if not can_write:
        raise PermissionDenied("Only a superuser may change this mailbox.")
    return mailbox


def can_edit_rules(user: User, mailbox: Mailbox) -> bool:
    """Multidrop rules say which local people get a mailbox's mail, so they are
    for a superuser or an administrator of the mailbox's domain, not its owner."""
    if user.is_superuser:
        return True
    if mailbox.owner.is_superuser or mailbox.domain_id is None:
        return False
    return user.administered_domains.filter(pk=mailbox.domain_id).exists()


def owners_for(user: User) -> QuerySet[User] | None:
    """Whom ``user`` may add a mailbox for; None: only themselves.

    A domain administrator chooses among the members of their domains (and
    themselves), never a superuser: the new row would carry a superuser's rights.
    """
    active = User.objects.filter(is_active=True)
    if user.is_superuser:
        return active
    domains = user.administered_domains.all()
    if not domains.exists():
        return None
    return active.filter(Q(domain__in=domains) | Q(pk=user.pk), is_superuser=False)
