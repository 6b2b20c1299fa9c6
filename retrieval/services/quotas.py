"""Mailbox quotas (issue 11): FETCH_MAX_MAILBOXES_PER_USER and _PER_DOMAIN.

The forms ask ``mailbox_quota_refusal`` to say it in words before a save;
``mailbox_quota_check`` holds the line inside the creating transaction
(mailboxes.mailbox_save, imports.mailbox_import).
"""

from __future__ import annotations

from django.conf import settings

from accounts.models import Domain, User
from retrieval.models import Mailbox


class QuotaExceeded(Exception):
    """A new mailbox would pass a quota; the text says which, in plain words."""


def _mailboxes(count: int) -> str:
    return f"{count} mailbox" if count == 1 else f"{count} mailboxes"


def mailbox_quota_refusal(
    *, owner: User, creator: User, domain: Domain | None = None
) -> str:
    """Why ``creator`` may not add one more mailbox for ``owner`` (in ``domain``,
    by default the owner's); "" if they may.

    FETCH_MAX_MAILBOXES_PER_USER counts the owner's mailboxes,
    FETCH_MAX_MAILBOXES_PER_DOMAIN those of the domain (0: no limit). A
    superuser's additions are not limited: they set the limits.
    """
    domain = domain if domain is not None else owner.domain
    if creator.is_superuser:
        return ""
    per_user = settings.FETCH_MAX_MAILBOXES_PER_USER
    if per_user and Mailbox.objects.filter(owner=owner).count() >= per_user:
        whose = "You have" if owner.pk == creator.pk else f"{owner.email} has"
        return (
            f"{whose} {_mailboxes(per_user)}, the most one person may have here. "
            "Delete one first, or ask an administrator to raise the limit."
        )
    per_domain = settings.FETCH_MAX_MAILBOXES_PER_DOMAIN
    if (
        per_domain
        and domain is not None
        and Mailbox.objects.filter(domain=domain).count() >= per_domain
    ):
        return (
            f"The domain {domain.name} has {_mailboxes(per_domain)}, the most one "
            "domain may have here. Delete one first, or ask an administrator to "
            "raise the limit."
        )
    return ""


def mailbox_quota_check(
    *, owner: User, creator: User, domain: Domain | None = None
) -> None:
    """The same, inside the creating transaction: the owner's row (and the
    domain's) is locked first, so two requests at once cannot both take the
    last place."""
    domain = domain if domain is not None else owner.domain
    User.objects.select_for_update().filter(pk=owner.pk).first()
    if domain is not None:
        Domain.objects.select_for_update().filter(pk=domain.pk).first()
    refusal = mailbox_quota_refusal(owner=owner, creator=creator, domain=domain)
    if refusal:
        raise QuotaExceeded(refusal)
