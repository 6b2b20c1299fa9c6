"""The worker process's connections kept open between polls.

With FETCH_KEEP_SESSIONS seconds set, a clean poll leaves its connection to the
local listener open for the next poll that delivers the same way
(retrieval/engine/deliver/kept_listeners.py), and, unless a
FETCH_MAX_SESSIONS_PER_HOST cap is set (which a session left open would
defeat), a clean poll of an IMAP mailbox leaves its session logged in: the next
poll of that mailbox in the same process starts with a NOOP instead of
connecting, TLS and a login (retrieval/engine/fetch/kept.py). The next poll
reaches the same process when the scheduled polls are sharded
(FETCH_POLL_SHARDS, retrieval.tasks).
"""

from __future__ import annotations

from django.conf import settings

from retrieval.engine.deliver.kept_listeners import KeptListeners
from retrieval.engine.fetch.kept import KeptSessions

_kept: KeptSessions | None = None
_listeners: KeptListeners | None = None


def kept_sessions() -> KeptSessions | None:
    """This process's kept IMAP sessions, or None when they are off."""
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


def kept_listeners() -> KeptListeners | None:
    """This process's kept listener connections, or None when they are off."""
    global _listeners
    seconds = settings.FETCH_KEEP_SESSIONS
    if seconds <= 0:
        return None
    limit = settings.FETCH_KEEP_SESSIONS_MAX
    if _listeners is None or (_listeners.idle_seconds, _listeners.max_connections) != (
        seconds,
        limit,
    ):
        if _listeners is not None:
            _listeners.close_all()
        _listeners = KeptListeners(seconds, limit)
    return _listeners


def kept_sessions_close() -> None:
    """Log out every kept session and close every kept listener connection:
    the worker process is ending."""
    global _kept, _listeners
    if _kept is not None:
        _kept.close_all()
        _kept = None
    if _listeners is not None:
        _listeners.close_all()
        _listeners = None
