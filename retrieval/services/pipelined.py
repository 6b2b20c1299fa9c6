"""Writes on a PostgreSQL connection of their own, each sent without waiting for
the server's answer, which is read before the next write is sent.

For the ledger's marks in a poll with many messages (issue 14, per message):
waiting for each mark's answer before fetching the next message was, with
PostgreSQL on the same two cores, a third of the service's wall time per
message. Sent and not waited for, a mark is still *written* before the next
message in the sense the crash contract needs: once ``send`` returns, the
statement has left this process (libpq in blocking mode flushes it), and the
server runs and commits a statement it has received even if the process that
sent it is killed right after. The next ``send`` reads the answer first, so a
failed write is reported one message later, and :meth:`wait` (the ledger's
sync, before the server may commit a deletion) reads it before any deletion.

Its own connection, not Django's: Django's may be used by anything during a
poll, and a connection with an unread answer refuses every other statement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import DatabaseError
from psycopg import pq

if TYPE_CHECKING:
    from collections.abc import Sequence

    from django.db.backends.base.base import BaseDatabaseWrapper

_DONE = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)
# The OIDs of the parameter types the ledger sends.
INT8, TEXT, TIMESTAMPTZ = 20, 25, 1184


class PipelinedWrites:
    def __init__(self, db: BaseDatabaseWrapper) -> None:
        self._db = db
        with db.wrap_database_errors:
            self._conn: Any = db.get_new_connection(db.get_connection_params())
            self._conn.autocommit = True  # each statement its own transaction
        self._pg: Any = self._conn.pgconn
        self._pg.nonblocking = 0  # send returns once the statement is flushed
        self._pending = False
        self._names: dict[bytes, bytes] = {}
        # A statement prepared on one server connection is unknown to the others
        # a transaction-mode pooler hands out (Django's flag for such a pooler).
        self._prepare = not db.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")

    def send(self, sql: bytes, params: Sequence[str], types: Sequence[int]) -> None:
        """Send one statement (``$1``-style parameters as text, of the types
        with these OIDs) after reading the answer to the previous one."""
        self.wait()
        values = [p.encode("utf-8", "replace") for p in params]
        with self._db.wrap_database_errors:
            if self._prepare:
                self._pg.send_query_prepared(self._prepared(sql, types), values)
            else:
                self._pg.send_query_params(sql, values, param_types=types)
        self._pending = True

    def _prepared(self, sql: bytes, types: Sequence[int]) -> bytes:
        """The name of the statement prepared once on this connection: the
        server then parses and plans it once, not once a message (5-8 % of the
        service path's time on the bench's 2,000 messages)."""
        name = self._names.get(sql)
        if name is None:
            name = f"fetchweb_{len(self._names)}".encode()
            result = self._pg.prepare(name, sql, types)
            if result.status not in _DONE:
                message = result.error_message.decode("utf-8", "replace").strip()
                raise DatabaseError(message)
            self._names[sql] = name
        return name

    def wait(self) -> None:
        """Read the answer to the last statement sent; raise its error."""
        if not self._pending:
            return
        self._pending = False
        with self._db.wrap_database_errors:
            result = self._pg.get_result()
            while self._pg.get_result() is not None:
                pass  # the end of this statement's results
        if result is None or result.status not in _DONE:
            source = result if result is not None else self._pg
            message = source.error_message.decode("utf-8", "replace").strip()
            raise DatabaseError(message or "the ledger's write got no answer")

    def close(self) -> None:
        """Close without waiting: the server still runs what it has received."""
        self._pending = False
        self._conn.close()


def numbered(sql: str) -> bytes:
    """``%s`` placeholders (Django's) as ``$1``, ``$2``... (libpq's)."""
    parts = sql.split("%s")
    out = parts[0]
    for n, part in enumerate(parts[1:], start=1):
        out += f"${n}{part}"
    return out.encode()
