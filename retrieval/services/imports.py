"""The rcfile importer's writes (manage.py import_fetchmailrc).

The command parses and checks everything first, then calls ``mailbox_import``
once per user entry inside one transaction: a refusal here (a quota) undoes the
whole import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrieval.services.mailboxes import mailbox_save
from retrieval.services.rules import mailbox_rules_replace

if TYPE_CHECKING:
    from collections.abc import Sequence

    from accounts.models import User
    from retrieval.models import Mailbox


def mailbox_import(
    *,
    mailbox: Mailbox,
    creator: User,
    rules: Sequence[tuple[str, str]],
    password: str = "",
    esmtp_password: str = "",
) -> Mailbox:
    """Store one imported mailbox (new, or matched by remote account) and its
    multidrop rules. ``creator`` (the person importing) is held to the quotas
    when the mailbox is new (QuotaExceeded); an empty ``password`` keeps the
    stored one. Rows are matched by remote account, so the account should never
    change here, but if it does the rule of Mailbox.save holds.
    """
    if esmtp_password:
        mailbox.set_esmtp_password(esmtp_password)
    mailbox_save(mailbox=mailbox, creator=creator, new_password=password)
    mailbox_rules_replace(mailbox=mailbox, rules=rules)
    return mailbox
