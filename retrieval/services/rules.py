"""Multidrop rules: which local people get a mailbox's mail, in order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction

from retrieval.models import MultidropRule

if TYPE_CHECKING:
    from collections.abc import Sequence

    from retrieval.models import Mailbox


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
