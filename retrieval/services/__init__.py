"""The one write path: every change of state goes through these functions.

Views, forms, the admin, the rcfile importer, management commands and Celery
tasks call them (keyword arguments only); they carry the rules that hold for
every writer (retrieval/services/mailboxes.py says which). Selectors
(retrieval.selectors, retrieval.permissions) only read. tests/retrieval/
test_write_path.py checks that the pages, the admin and the commands write
nothing by themselves.

By subject:

* mailboxes: add, change, delete, re-encrypt passwords; the forms' pre-checks
* rules: multidrop rules
* multidrop: a whole-domain mailbox's settings: their one check, their save
* polls: the poll (lease, lock, record), the schedule, asking for a poll
* poll_statements: the poll's own writes on PostgreSQL, in three statements
* failures: backoff, permanent failures, the mailbox's state, resume
* hostslots: the cap on sessions per remote host
* alerts: mail and signed webhook when a mailbox's state changes
* retention: deleting old poll runs
* latest_run: each mailbox's last finished run, kept on its row
* stats_rollup: old hourly counters dropped, daily ones kept a year
* domain_stats: the per-domain day counters follow mailboxes deleted or moved
* specs: the engine's spec of a row, with the run-time guards
* ports: the engine's ledger and transcript on the ORM
* probes: connection tests
* progress: how far a running poll or test has come (the cache), for its page
* quotas: mailboxes per person and per domain
* imports: the rcfile importer's rows
* records: poll runs and ledger rows, for the admin
* domains, users: the admin's writes for accounts
* people: the pages' people and domains (add, invite, disable, remove,
  domain defaults, delivery targets, time zones)
* tokens: the REST API's tokens (made, checked, revoked)

The names below are re-exported so that callers write ``services.mailbox_save``;
a test that replaces a function replaces it in its module (``services.polls``).

They are loaded when first asked for (PEP 562), not when the package is: every
Django process imports this package at start-up (the admin's modules name it),
and a process that polls (``manage.py poll``, a worker) needs the poll's few
modules, not the importer's, the console's or the alerts' (issue 14: the
service's start-up). ``from retrieval.services import name`` and
``services.name`` work as before; tests/retrieval/test_services_exports.py
checks each name against its module.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retrieval.services.alerts import AlertMailFailed, alert_send, webhook_post
    from retrieval.services.console import mailbox_set_enabled
    from retrieval.services.domain_stats import domain_stats_forget, domain_stats_move
    from retrieval.services.domains import domain_delete, domain_save, domains_delete
    from retrieval.services.failures import mailbox_resume
    from retrieval.services.hostslots import host_slot
    from retrieval.services.imports import (
        ImportRefused,
        PreviewOutdated,
        mailbox_import,
        rcfile_import,
    )
    from retrieval.services.latest_run import latest_run_refresh
    from retrieval.services.mailboxes import (
        MailboxBusy,
        OwnerDomainMismatch,
        ServerCommandRefused,
        account_busy,
        account_changes,
        delete_after_days_refusal,
        domain_defaults_apply,
        mailbox_delete,
        mailbox_new,
        mailbox_passwords_rotate,
        mailbox_save,
        mailboxes_delete,
        owner_domain_refusal,
        password_needed,
    )
    from retrieval.services.multidrop import (
        Multidrop,
        MultidropInvalid,
        mailbox_multidrop_save,
        multidrop_from_rc,
        multidrop_in_options,
        multidrop_of,
    )
    from retrieval.services.multidrop import problems as multidrop_problems
    from retrieval.services.people import (
        InvitationRefused,
        SelfRefused,
        delivery_target_delete,
        delivery_target_save,
        delivery_targets_delete,
        domain_defaults_set,
        invite_link,
        person_add,
        person_invite,
        person_invite_resend,
        person_remove,
        person_set_active,
        user_time_zone_set,
    )
    from retrieval.services.polls import (
        ACTION_INTERVAL,
        InsideTransaction,
        PollSummary,
        action_allowed,
        mailbox_lease,
        mailbox_poll,
        mailbox_poll_request,
        mailbox_push_request,
        mailboxes_claim_due,
        mailboxes_dispatch,
        mailboxes_poll_request,
        mailboxes_spread_new,
        runs_close_lost,
    )
    from retrieval.services.ports import DatabaseLedger, RecordingTranscript
    from retrieval.services.probes import (
        PROBE_STALE_SECONDS,
        PROBES_KEPT,
        ProbeLimit,
        connection_test_request,
        connection_test_run,
        mailbox_login_check,
    )
    from retrieval.services.progress import CachedProgress, progress_text
    from retrieval.services.quotas import (
        QuotaExceeded,
        mailbox_quota_check,
        mailbox_quota_refusal,
    )
    from retrieval.services.records import (
        ledger_entries_delete,
        ledger_entry_delete,
        ledger_entry_save,
        run_delete,
        runs_delete,
    )
    from retrieval.services.retention import runs_delete_old
    from retrieval.services.rules import mailbox_rules_replace
    from retrieval.services.specs import BSMTP_STDOUT, SpecError, mailbox_spec
    from retrieval.services.stats_rollup import RollUp, stats_roll_up
    from retrieval.services.tokens import (
        TokenLimit,
        token_authenticate,
        token_create,
        token_revoke,
    )
    from retrieval.services.users import (
        user_delete,
        user_password_set,
        user_save,
        users_delete,
    )

# name -> the submodule that defines it (under the same name, but for the aliases).
_EXPORTS: dict[str, tuple[str, ...]] = {
    "alerts": (
        "AlertMailFailed",
        "alert_send",
        "webhook_post",
    ),
    "console": ("mailbox_set_enabled",),
    "domain_stats": (
        "domain_stats_forget",
        "domain_stats_move",
    ),
    "domains": (
        "domain_delete",
        "domain_save",
        "domains_delete",
    ),
    "failures": ("mailbox_resume",),
    "hostslots": ("host_slot",),
    "imports": (
        "ImportRefused",
        "PreviewOutdated",
        "mailbox_import",
        "rcfile_import",
    ),
    "latest_run": ("latest_run_refresh",),
    "mailboxes": (
        "MailboxBusy",
        "OwnerDomainMismatch",
        "ServerCommandRefused",
        "account_busy",
        "account_changes",
        "delete_after_days_refusal",
        "domain_defaults_apply",
        "mailbox_delete",
        "mailbox_new",
        "mailbox_passwords_rotate",
        "mailbox_save",
        "mailboxes_delete",
        "owner_domain_refusal",
        "password_needed",
    ),
    "multidrop": (
        "Multidrop",
        "MultidropInvalid",
        "mailbox_multidrop_save",
        "multidrop_from_rc",
        "multidrop_in_options",
        "multidrop_of",
    ),
    "people": (
        "InvitationRefused",
        "SelfRefused",
        "delivery_target_delete",
        "delivery_target_save",
        "delivery_targets_delete",
        "domain_defaults_set",
        "invite_link",
        "person_add",
        "person_invite",
        "person_invite_resend",
        "person_remove",
        "person_set_active",
        "user_time_zone_set",
    ),
    "polls": (
        "ACTION_INTERVAL",
        "InsideTransaction",
        "PollSummary",
        "action_allowed",
        "mailbox_lease",
        "mailbox_poll",
        "mailbox_poll_request",
        "mailbox_push_request",
        "mailboxes_claim_due",
        "mailboxes_dispatch",
        "mailboxes_poll_request",
        "mailboxes_spread_new",
        "runs_close_lost",
    ),
    "ports": (
        "DatabaseLedger",
        "RecordingTranscript",
    ),
    "probes": (
        "PROBE_STALE_SECONDS",
        "PROBES_KEPT",
        "ProbeLimit",
        "connection_test_request",
        "connection_test_run",
        "mailbox_login_check",
    ),
    "progress": (
        "CachedProgress",
        "progress_text",
    ),
    "quotas": (
        "QuotaExceeded",
        "mailbox_quota_check",
        "mailbox_quota_refusal",
    ),
    "records": (
        "ledger_entries_delete",
        "ledger_entry_delete",
        "ledger_entry_save",
        "run_delete",
        "runs_delete",
    ),
    "retention": ("runs_delete_old",),
    "rules": ("mailbox_rules_replace",),
    "specs": (
        "BSMTP_STDOUT",
        "SpecError",
        "mailbox_spec",
    ),
    "stats_rollup": (
        "RollUp",
        "stats_roll_up",
    ),
    "tokens": (
        "TokenLimit",
        "token_authenticate",
        "token_create",
        "token_revoke",
    ),
    "users": (
        "user_delete",
        "user_password_set",
        "user_save",
        "users_delete",
    ),
}
_ALIASES = {"multidrop_problems": ("multidrop", "problems")}
_WHERE = {
    **{name: (module, name) for module, names in _EXPORTS.items() for name in names},
    **_ALIASES,
}

if not TYPE_CHECKING:  # mypy reads the imports above, and no catch-all

    def __getattr__(name: str) -> object:
        if name in _WHERE:
            module, attr = _WHERE[name]
            value = getattr(import_module(f"{__name__}.{module}"), attr)
        else:
            try:  # a submodule not imported yet: services.polls
                value = import_module(f"{__name__}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{__name__}.{name}":
                    raise
                raise AttributeError(
                    f"module {__name__!r} has no attribute {name!r}"
                ) from None
        globals()[name] = value  # asked once
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_WHERE})


__all__ = [
    "ACTION_INTERVAL",
    "BSMTP_STDOUT",
    "PROBES_KEPT",
    "PROBE_STALE_SECONDS",
    "AlertMailFailed",
    "CachedProgress",
    "DatabaseLedger",
    "ImportRefused",
    "InsideTransaction",
    "InvitationRefused",
    "MailboxBusy",
    "Multidrop",
    "MultidropInvalid",
    "OwnerDomainMismatch",
    "PollSummary",
    "PreviewOutdated",
    "ProbeLimit",
    "QuotaExceeded",
    "RecordingTranscript",
    "RollUp",
    "SelfRefused",
    "ServerCommandRefused",
    "SpecError",
    "TokenLimit",
    "account_busy",
    "account_changes",
    "action_allowed",
    "alert_send",
    "connection_test_request",
    "connection_test_run",
    "delete_after_days_refusal",
    "delivery_target_delete",
    "delivery_target_save",
    "delivery_targets_delete",
    "domain_defaults_apply",
    "domain_defaults_set",
    "domain_delete",
    "domain_save",
    "domain_stats_forget",
    "domain_stats_move",
    "domains_delete",
    "host_slot",
    "invite_link",
    "latest_run_refresh",
    "ledger_entries_delete",
    "ledger_entry_delete",
    "ledger_entry_save",
    "mailbox_delete",
    "mailbox_import",
    "mailbox_lease",
    "mailbox_login_check",
    "mailbox_multidrop_save",
    "mailbox_new",
    "mailbox_passwords_rotate",
    "mailbox_poll",
    "mailbox_poll_request",
    "mailbox_push_request",
    "mailbox_quota_check",
    "mailbox_quota_refusal",
    "mailbox_resume",
    "mailbox_rules_replace",
    "mailbox_save",
    "mailbox_set_enabled",
    "mailbox_spec",
    "mailboxes_claim_due",
    "mailboxes_delete",
    "mailboxes_dispatch",
    "mailboxes_poll_request",
    "mailboxes_spread_new",
    "multidrop_from_rc",
    "multidrop_in_options",
    "multidrop_of",
    "multidrop_problems",
    "owner_domain_refusal",
    "password_needed",
    "person_add",
    "person_invite",
    "person_invite_resend",
    "person_remove",
    "person_set_active",
    "progress_text",
    "rcfile_import",
    "run_delete",
    "runs_close_lost",
    "runs_delete",
    "runs_delete_old",
    "stats_roll_up",
    "token_authenticate",
    "token_create",
    "token_revoke",
    "user_delete",
    "user_password_set",
    "user_save",
    "user_time_zone_set",
    "users_delete",
    "webhook_post",
]
