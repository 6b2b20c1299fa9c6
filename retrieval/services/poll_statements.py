"""A poll's own bookkeeping on PostgreSQL in three statements (issue 14: cost per poll).

services/polls.py runs a poll the same way on every database. On PostgreSQL,
where each statement is a round trip and most of a poll's own CPU went into
building and sending fourteen of them (bench/throughput.py measures it), what
it writes around the engine is folded into:

1. **claim**: the lease taken (or an expired one taken over), the row read with
   its owner and whether it has multidrop rules, and the advisory lock on the
   remote account tried: one ``UPDATE ... RETURNING``;
2. **start**: one of the host's session slots taken and, only with one, the run
   row inserted: one statement (a host's first poll makes its slots first,
   services/hostslots.py);
3. **finish**: the run recorded with its messages' results (one row each,
   from arrays: no model instance per message), the hour's and the day's
   counters added (upserts), the mailbox's last-run columns
   (services/latest_run.py), failure counts and next poll
   (services/failures.py) set, the lease and the slot given back and the
   advisory lock let go: one statement, hence one transaction, so a killed
   worker leaves all of it or none of it.

Each writes what the portable code (polls, hostslots, stats, latest_run,
failures) writes with several statements, which SQLite still runs. The
messages' ledger is not here: the engine writes it during the poll, each
record durable before its delete (services/ports.py DatabaseLedger).
tests/retrieval/test_scheduler.py (PollCostTests) bounds the count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection
from django.db.models import Field
from django.utils import timezone

from accounts.models import User
from retrieval.models import (
    DomainDayStat,
    HostSlot,
    Mailbox,
    MailboxDayStat,
    MailboxStat,
    MessageResult,
    MultidropRule,
    PollRun,
)
from retrieval.services.hostslots import (
    TAKE_POSTGRESQL,
    HeldSlot,
    host_key,
    host_slot_take,
)
from retrieval.services.stats import ERROR_OUTCOMES, day_of, hour_of

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from django.db.models import Model


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _table(model: type[Model]) -> str:
    return _q(model._meta.db_table)


# --- reading rows that a statement returns ---------------------------------------------


@cache
def _readers(model: type[Model]) -> tuple[tuple[Any, list[Callable[..., Any]]], ...]:
    """Per concrete field of ``model``: its column and what turns the value
    PostgreSQL returns into the one a queryset gives (JSON arrives as text)."""
    readers = []
    for field in model._meta.concrete_fields:
        col = field.get_col(model._meta.db_table)
        converters = [
            *connection.ops.get_db_converters(col),
            *col.get_db_converters(connection),
        ]
        readers.append((col, converters))
    return tuple(readers)


def _instance(model: type[Model], values: Sequence[Any]) -> Any:
    """A model instance from its concrete fields' values, as a queryset makes it."""
    converted = []
    for value, (col, converters) in zip(values, _readers(model), strict=True):
        for convert in converters:
            value = convert(value, col, connection)
        converted.append(value)
    return model.from_db(connection.alias, _attnames(model), converted)


@cache
def _attnames(model: type[Model]) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields]


def _field(model: type[Model], name: str) -> Field[Any, Any]:
    found = model._meta.get_field(name)
    assert isinstance(found, Field)  # a concrete column, named in this module
    return found


def _columns(model: type[Model], alias: str) -> str:
    return ", ".join(f"{alias}.{_q(f.column)}" for f in model._meta.concrete_fields)


# --- 1. claim ----------------------------------------------------------------------

# The row is locked first (FOR UPDATE in FROM, which waits for a concurrent
# claim and then reads the row as it committed it), so ``prior`` is the lease
# as it was, and whether it was taken over is known. The advisory key is a hash
# of (host, port, user) in SQL, so that the lock is tried in the same statement.
# It is never tried when the lease is not claimed (no row returned).
_REMOTE_KEY = (
    "hashtextextended(lower(m.host) || '|' || COALESCE(m.port, 0)::text || '|' "
    "|| m.username, 0)"
)


@cache
def _claim_sql() -> str:
    mailboxes = _table(Mailbox)
    return f"""
UPDATE {mailboxes} AS m SET lease_owner = %s, lease_until = %s
FROM (SELECT id, lease_until FROM {mailboxes} WHERE id = %s FOR UPDATE) AS prior,
    {_table(User)} AS u
WHERE m.id = prior.id AND u.id = m.owner_id
  AND (prior.lease_until IS NULL OR prior.lease_until < %s)
RETURNING prior.lease_until IS NOT NULL,
    EXISTS (SELECT 1 FROM {_table(MultidropRule)} AS r WHERE r.mailbox_id = m.id),
    {_REMOTE_KEY}, pg_try_advisory_lock({_REMOTE_KEY}),
    {_columns(Mailbox, "m")}, {_columns(User, "u")}"""


@dataclass(frozen=True)
class Claim:
    mailbox: Mailbox  # with its owner, and its rules when it has none
    stolen: bool  # taken over from a holder whose lease had expired
    advisory_key: int
    locked: bool  # False: the remote account is being polled through another row


def claim(
    *, mailbox_id: int, owner: str, now: datetime, until: datetime
) -> Claim | None:
    """Take the lease; None when someone else holds it (or there is no row)."""
    with connection.cursor() as cursor:
        cursor.execute(_claim_sql(), [owner, until, mailbox_id, now])
        row = cursor.fetchone()
    if row is None:
        return None
    stolen, has_rules, key, locked = row[:4]
    split = 4 + len(Mailbox._meta.concrete_fields)
    mailbox: Mailbox = _instance(Mailbox, row[4:split])
    Mailbox._meta.get_field("owner").set_cached_value(
        mailbox, _instance(User, row[split:])
    )
    if not has_rules:
        rules_none(mailbox)
    return Claim(mailbox, bool(stolen), int(key), bool(locked))


def rules_none(mailbox: Mailbox) -> None:
    """A mailbox known to have no multidrop rules gets an empty list where
    prefetch_related("rules") would put it: building its spec (rcmap reads
    ``mailbox.rules``) then costs no query."""
    rules = MultidropRule.objects.none()
    # Already evaluated, as prefetch_related leaves it: iterating an unevaluated
    # none() still compiles its query (a millisecond a poll, in the profile).
    rules._result_cache = []
    mailbox._prefetched_objects_cache = {"rules": rules}  # type: ignore[attr-defined]


# --- 2. start ----------------------------------------------------------------------


def _prepared(obj: Model, fields: Sequence[Field[Any, Any]]) -> list[Any]:
    return [f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields]


@cache
def _run_fields() -> tuple[Field[Any, Any], ...]:
    return tuple(f for f in PollRun._meta.concrete_fields if not f.primary_key)


@cache
def _start_sql(*, with_slot: bool) -> str:
    """The run inserted, after a slot is taken when ``with_slot``. Typed
    placeholders: in INSERT ... SELECT a bare NULL or string would be text."""
    fields = _run_fields()
    columns = ", ".join(_q(f.column) for f in fields)
    values = ", ".join(f"%s::{f.db_type(connection)}" for f in fields)
    insert = f"INSERT INTO {_table(PollRun)} ({columns}) SELECT {values}"
    if not with_slot:
        return f"WITH run AS ({insert} RETURNING id) SELECT NULL, (SELECT id FROM run)"
    take = TAKE_POSTGRESQL.format(table=_table(HostSlot)).strip()
    return (
        f"WITH slot AS ({take}), "
        f"run AS ({insert} WHERE EXISTS (SELECT 1 FROM slot) RETURNING id) "
        "SELECT (SELECT id FROM slot), (SELECT id FROM run)"
    )


def _run_insert(run: PollRun, slot: tuple[Any, ...] | None) -> int | None:
    """Insert ``run`` (after taking a slot, when ``slot`` gives the take's
    parameters); returns the slot's id (None without a cap) and sets run.pk."""
    params = [*(slot or ()), *_prepared(run, _run_fields())]
    with connection.cursor() as cursor:
        cursor.execute(_start_sql(with_slot=slot is not None), params)
        slot_id, run_id = cursor.fetchone()
    if run_id is not None:
        run.pk = run_id
        run._state.adding = False
        run._state.db = connection.alias
    return slot_id


def run_start(*, run: PollRun, host: str) -> HeldSlot | None:
    """Take one of ``host``'s session slots and insert ``run``; None (and no
    run) when every slot is held. FETCH_MAX_SESSIONS_PER_HOST = 0: no cap."""
    cap = settings.FETCH_MAX_SESSIONS_PER_HOST
    if cap <= 0:
        _run_insert(run, None)
        return HeldSlot(None, "")
    holder = HeldSlot.new_holder()
    now = timezone.now()
    until = now + timedelta(seconds=settings.FETCH_LEASE_SECONDS)
    slot_id = _run_insert(run, (holder, until, host_key(host), cap, now, now))
    if slot_id is not None:
        return HeldSlot(slot_id, holder)
    # No free slot, or the host's slots not made yet (its first poll).
    taken = host_slot_take(host=host, cap=cap)
    if taken is None:
        return None
    _run_insert(run, None)
    return HeldSlot(*taken)


# --- 3. finish ---------------------------------------------------------------------

# What the finish writes on the run (services/polls.py fills them in first).
RECORDED_FIELDS = (
    "finished_at",
    "exit_code",
    "outcome",
    "fetched",
    "delivered",
    "deleted",
    "bytes_fetched",
    "greeting",
    "error",
    "transcript",
)


def _assignments(model: type[Model], names: Sequence[str]) -> str:
    return ", ".join(f"{_q(_field(model, n).column)} = %s" for n in names)


@cache
def _counter_sql(model: type[Model], moment: str) -> str:
    table = _table(model)
    names = [_q(n) for n in ("polls", "errors", "messages", "bytes")]
    add = ", ".join(f"{n} = {table}.{n} + EXCLUDED.{n}" for n in names)
    key = f"mailbox_id, {_q(moment)}"
    return (
        f"INSERT INTO {table} ({key}, {', '.join(names)}) "
        f"VALUES (%s, %s, 1, %s, %s, %s) ON CONFLICT ({key}) DO UPDATE SET {add}"
    )


def _domain_counter_sql(*, in_domain: bool) -> str:
    """The day of the mailbox's domain (or of no domain): two partial unique
    indexes, so one INSERT each, of which the mailbox's row feeds exactly one.
    The domain is the one the mailbox is in when the run is recorded."""
    table, mailboxes = _table(DomainDayStat), _table(Mailbox)
    names = [_q(n) for n in ("polls", "errors", "messages", "bytes")]
    add = ", ".join(f"{n} = {table}.{n} + EXCLUDED.{n}" for n in names)
    target = (
        "(domain_id, day) WHERE domain_id IS NOT NULL"
        if in_domain
        else "(day) WHERE domain_id IS NULL"
    )
    which = "IS NOT NULL" if in_domain else "IS NULL"
    return (
        f"INSERT INTO {table} (domain_id, day, {', '.join(names)}) "
        f"SELECT domain_id, %s, 1, %s, %s, %s FROM {mailboxes} "
        f"WHERE id = %s AND domain_id {which} "
        f"ON CONFLICT {target} DO UPDATE SET {add}"
    )


# A message's result as the finish writes it: these MessageResult fields, in
# this order (services/polls.py builds them from the report).
RESULT_FIELDS = (
    "folder",
    "uid",
    "message_id",
    "size",
    "recipients",
    "status",
    "listener_reply",
    "deleted",
)
ResultRow = tuple[str, str, str, int, list[str], str, str, bool]


@cache
def _result_fields() -> tuple[Field[Any, Any], ...]:
    return tuple(_field(MessageResult, n) for n in RESULT_FIELDS)


def _results_sql() -> str:
    """The run's results from one array per column, in the report's order (ids
    ascending, as MessageResult is read). JSON goes as text, one per row."""
    fields = _result_fields()
    columns = ", ".join(_q(f.column) for f in fields)
    arrays = ", ".join(
        f"%s::{'text' if f.get_internal_type() == 'JSONField' else f.db_type(connection)}[]"
        for f in fields
    )
    names = ", ".join(f"c{i}" for i in range(len(fields)))
    values = ", ".join(
        f"m.c{i}::jsonb" if f.get_internal_type() == "JSONField" else f"m.c{i}"
        for i, f in enumerate(fields)
    )
    return (
        f"INSERT INTO {_table(MessageResult)} ({_q('run_id')}, {columns}) "
        f"SELECT %s, {values} FROM unnest({arrays}) WITH ORDINALITY AS m({names}, n) "
        "ORDER BY m.n"
    )


@cache
def _finish_sql(
    mailbox_fields: tuple[str, ...], *, with_slot: bool, with_results: bool = False
) -> str:
    runs, mailboxes = _table(PollRun), _table(Mailbox)
    # The mailbox's last finished run, as services/latest_run.py reads it
    # (newest started first, on the pollrun_last_finished index): this statement
    # sees the runs as they were when it began, so this run comes from what it
    # records, the newest other one from the table.
    latest = f"""
    SELECT id, outcome, finished_at FROM (
        (SELECT id, started_at, outcome, finished_at FROM {runs}
        WHERE mailbox_id = %s AND NOT (outcome = %s) AND id <> %s
        ORDER BY started_at DESC, id DESC LIMIT 1)
        UNION ALL SELECT id, started_at, outcome, finished_at FROM run) AS finished
    ORDER BY started_at DESC, id DESC LIMIT 1"""
    slot = (
        f", slot AS (UPDATE {_table(HostSlot)} SET holder = '', until = NULL "
        "WHERE id = %s AND holder = %s)"
        if with_slot
        else ""
    )
    results = f", results AS ({_results_sql()})" if with_results else ""
    return f"""
WITH run AS (
    UPDATE {runs} SET {_assignments(PollRun, RECORDED_FIELDS)}
    WHERE id = %s RETURNING id, started_at, outcome, finished_at),
hour_count AS ({_counter_sql(MailboxStat, "hour")}),
day_count AS ({_counter_sql(MailboxDayStat, "day")}),
domain_count AS ({_domain_counter_sql(in_domain=True)}),
nodomain_count AS ({_domain_counter_sql(in_domain=False)}),
latest AS ({latest}),
mailbox AS (
    UPDATE {mailboxes} SET {_assignments(Mailbox, mailbox_fields)},
        latest_run_id = (SELECT id FROM latest),
        latest_outcome = COALESCE((SELECT outcome FROM latest), ''),
        latest_at = (SELECT finished_at FROM latest),
        lease_owner = CASE WHEN lease_owner = %s THEN '' ELSE lease_owner END,
        lease_until = CASE WHEN lease_owner = %s THEN NULL ELSE lease_until END
    WHERE id = %s){slot}{results}
SELECT pg_advisory_unlock(%s)"""


def finish(
    *,
    run: PollRun,
    mailbox_values: dict[str, Any],
    lease_owner: str,
    advisory_key: int,
    slot: HeldSlot,
    results: Sequence[ResultRow] = (),
) -> None:
    """Record ``run`` (its fields filled in) and its messages' ``results``,
    count it, set the mailbox's ``mailbox_values`` and last run, give back the
    lease (only ``lease_owner``'s, never another holder's), the slot and the
    advisory lock."""
    mailbox_id = run.mailbox_id
    moment = run.finished_at or run.started_at
    counts = [
        1 if run.outcome in ERROR_OUTCOMES else 0,
        run.delivered,
        run.bytes_fetched,
    ]
    fields = tuple(mailbox_values)
    mailbox_prepared = [
        _field(Mailbox, n).get_db_prep_save(v, connection)
        for n, v in mailbox_values.items()
    ]
    params = [
        *_prepared(run, [_field(PollRun, n) for n in RECORDED_FIELDS]),
        run.pk,
        mailbox_id,
        hour_of(moment),
        *counts,
        mailbox_id,
        day_of(moment),
        *counts,
        *(day_of(moment), *counts, mailbox_id) * 2,  # the domain's day
        mailbox_id,
        PollRun.Outcome.RUNNING.value,
        run.pk,
        *mailbox_prepared,
        lease_owner,
        lease_owner,
        mailbox_id,
    ]
    with_slot = slot.slot_id is not None
    if with_slot:
        params += [slot.slot_id, slot.holder]
    if results:
        columns = [list(column) for column in zip(*results, strict=True)]
        for at, f in enumerate(_result_fields()):
            if f.get_internal_type() == "JSONField":
                columns[at] = [json.dumps(value) for value in columns[at]]
        params += [run.pk, *columns]
    params.append(advisory_key)
    sql = _finish_sql(fields, with_slot=with_slot, with_results=bool(results))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    slot.released = True
