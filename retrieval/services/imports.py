"""The rcfile importer's writes (manage.py import_fetchmailrc, the import pages).

``rcfile_import`` checks the file (retrieval.rcimport.plan_import) and writes
every entry inside one transaction; an entry whose save is refused (a quota) is
a refusal like the checks' own, with its FILE:LINE, listed in file order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction

from retrieval.rcimport import plan_import
from retrieval.services.mailboxes import mailbox_save
from retrieval.services.quotas import QuotaExceeded
from retrieval.services.rules import mailbox_rules_replace

if TYPE_CHECKING:
    from collections.abc import Sequence

    from accounts.models import User
    from retrieval.models import Mailbox
    from retrieval.rcfile.env import Environment
    from retrieval.rcfile.model import RcConfig
    from retrieval.rcimport import ImportPlan, Scope


class ImportRefused(Exception):
    """Nothing was imported; ``plan`` says why (its problems, FILE:LINE first)."""

    def __init__(self, plan: ImportPlan, message: str = "") -> None:
        self.plan = plan
        super().__init__(message or "\n".join(plan.problems))


class PreviewOutdated(ImportRefused):
    """The file would now do something else than the preview showed."""


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


def rcfile_import(
    *,
    config: RcConfig,
    scope: Scope,
    env: Environment,
    skip_refused: bool = False,
    expected: str | None = None,
    dry_run: bool = False,
) -> ImportPlan:
    """Check ``config`` and store every entry, in one transaction: the one path of
    the command (and the API), the pages' preview (``dry_run``) and their confirm.

    An entry is refused by the checks (retrieval.rcimport.plan_import) or when
    its save is (a quota): either way it is listed in ``plan.problems`` as
    FILE:LINE: why, in file order, and its own writes are undone. Then, unless
    ``skip_refused`` (the pages, whose preview listed them), a refusal refuses
    the whole file: ImportRefused, nothing stored (the command's contract).
    ``expected``: the fingerprint of the plan a preview showed; another plan now
    (the mailboxes changed meanwhile) raises PreviewOutdated and stores nothing.
    Any other error rolls everything back. ``dry_run`` rolls back at the end. Returns the
    plan, its accepted entries' mailboxes saved.
    """
    with transaction.atomic():
        plan = plan_import(config, scope, env)
        for entry in plan.accepted:
            assert entry.mailbox is not None
            try:
                with transaction.atomic():  # a refused save leaves nothing behind
                    mailbox_import(
                        mailbox=entry.mailbox,
                        creator=scope.actor,
                        rules=entry.row.rules,
                        password=entry.row.password or "",
                        esmtp_password=entry.row.esmtp_password or "",
                    )
            except QuotaExceeded as exc:
                plan.refuse(entry, f"{entry.where}: {exc}")
        if plan.problems and not skip_refused:
            raise ImportRefused(plan)
        if expected is not None and plan.fingerprint() != expected:
            raise PreviewOutdated(
                plan, "The file would now do something else than its preview showed."
            )
        if dry_run:
            transaction.set_rollback(True)
    return plan
