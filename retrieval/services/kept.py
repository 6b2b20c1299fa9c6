"""The worker process's IMAP sessions kept open between polls.

With FETCH_KEEP_SESSIONS seconds set (and no FETCH_MAX_SESSIONS_PER_HOST cap,
which a session left open would defeat), a clean poll of an IMAP mailbox
leaves its session logged in, and the next poll of that mailbox in the same
process starts with a NOOP instead of connecting, TLS and a login
(retrieval/engine/fetch/kept.py). The next poll reaches the same process when
the scheduled polls are sharded (FETCH_POLL_SHARDS, retrieval.tasks).
"""

from __future__ import annotations

from django.conf import settings

from retrieval.engine.fetch.kept import KeptSessions

_kept: KeptSessions | None = None


def kept_sessions() -> KeptSessions | None:
    """This process's kept sessions, or None when they are off."""
    global _kept
    seconds = settings.FETCH_KEEP_SESSIONS
    if seconds <= 0 or settings.FETCH_MAX_SESSIONS_PER_HOST:
        return None
    limit = settings.FETCH_KEEP_SESSIONS_MAX
    if _kept is None or (_kept.idle_seconds, _kept.max_sessions) != (seconds, limit):
        if _kept is not None:
            _kept.close_all()
        _kept = KeptSessions(seconds, limit)
    return _kept


def kept_sessions_close() -> None:
    """Log out every kept session: the worker process is ending."""
    global _kept
    if _kept is not None:
        _kept.close_all()
        _kept = None
