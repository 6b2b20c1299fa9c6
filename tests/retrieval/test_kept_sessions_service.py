"""Sessions kept between polls, in the service: the setting, the shard queues
and the worker's goodbye (retrieval/services/kept.py, retrieval.tasks)."""

from __future__ import annotations

import pytest

from fetchweb import celery as celery_app
from retrieval.engine.deliver.kept_listeners import KeptListeners
from retrieval.engine.fetch.kept import KeptSessions
from retrieval.services import kept as kept_module
from retrieval.services.kept import kept_listeners, kept_sessions, kept_sessions_close
from retrieval.tasks import route_task

POLL = "retrieval.tasks.poll_mailbox"


@pytest.fixture(autouse=True)
def _no_sessions_left():
    yield
    kept_sessions_close()


class SettingTests:
    def test_off_by_default(self, settings):
        settings.FETCH_KEEP_SESSIONS = 0
        assert kept_sessions() is None

    def test_off_while_a_host_may_have_only_so_many_sessions(self, settings):
        settings.FETCH_KEEP_SESSIONS = 300
        settings.FETCH_MAX_SESSIONS_PER_HOST = 10
        assert kept_sessions() is None

    def test_on_without_the_host_cap(self, settings):
        settings.FETCH_KEEP_SESSIONS = 300
        settings.FETCH_MAX_SESSIONS_PER_HOST = 0
        settings.FETCH_KEEP_SESSIONS_MAX = 7
        kept = kept_sessions()
        assert isinstance(kept, KeptSessions)
        assert (kept.idle_seconds, kept.max_sessions) == (300, 7)
        assert kept_sessions() is kept  # one per process

    def test_changed_settings_replace_the_pool(self, settings, monkeypatch):
        settings.FETCH_KEEP_SESSIONS = 300
        settings.FETCH_MAX_SESSIONS_PER_HOST = 0
        first = kept_sessions()
        closed = []
        monkeypatch.setattr(first, "close_all", lambda: closed.append(True))
        settings.FETCH_KEEP_SESSIONS = 60
        second = kept_sessions()
        assert second is not first and second.idle_seconds == 60
        assert closed == [True]

    def test_a_pool_process_that_ends_logs_its_sessions_out(
        self, settings, monkeypatch
    ):
        settings.FETCH_KEEP_SESSIONS = 300
        settings.FETCH_MAX_SESSIONS_PER_HOST = 0
        kept = kept_sessions()
        closed = []
        monkeypatch.setattr(kept, "close_all", lambda: closed.append(True))
        celery_app._kept_sessions_logged_out(pid=123, exitcode=0)
        assert closed == [True]
        assert kept_module._kept is None


class ListenerSettingTests:
    def test_off_by_default(self, settings):
        settings.FETCH_KEEP_SESSIONS = 0
        assert kept_listeners() is None

    def test_on_with_the_host_cap_too(self, settings):
        """The cap counts sessions at remote servers; the listener is ours."""
        settings.FETCH_KEEP_SESSIONS = 300
        settings.FETCH_MAX_SESSIONS_PER_HOST = 10
        settings.FETCH_KEEP_SESSIONS_MAX = 7
        listeners = kept_listeners()
        assert isinstance(listeners, KeptListeners)
        assert (listeners.idle_seconds, listeners.max_connections) == (300, 7)
        assert kept_listeners() is listeners  # one per process
        assert kept_sessions() is None

    def test_changed_settings_replace_the_pool(self, settings, monkeypatch):
        settings.FETCH_KEEP_SESSIONS = 300
        first = kept_listeners()
        closed = []
        monkeypatch.setattr(first, "close_all", lambda: closed.append(True))
        settings.FETCH_KEEP_SESSIONS = 60
        second = kept_listeners()
        assert second is not first and second.idle_seconds == 60
        assert closed == [True]

    def test_a_pool_process_that_ends_closes_its_connections(
        self, settings, monkeypatch
    ):
        settings.FETCH_KEEP_SESSIONS = 300
        listeners = kept_listeners()
        closed = []
        monkeypatch.setattr(listeners, "close_all", lambda: closed.append(True))
        celery_app._kept_sessions_logged_out(pid=123, exitcode=0)
        assert closed == [True]
        assert kept_module._listeners is None


class ShardQueueTests:
    def test_scheduled_polls_go_to_the_mailbox_s_shard(self, settings):
        settings.FETCH_POLL_SHARDS = 4
        assert route_task(POLL, (6,)) == {"queue": "polls.2"}
        assert route_task(POLL, (6, "schedule")) == {"queue": "polls.2"}
        assert route_task(POLL, (), {"mailbox_id": 9}) == {"queue": "polls.1"}
        assert route_task(POLL, (8,)) == {"queue": "polls.0"}

    def test_push_and_poll_now_keep_their_own_queues(self, settings):
        settings.FETCH_POLL_SHARDS = 4
        assert route_task(POLL, (6, "push")) == {"queue": "push"}
        assert route_task(POLL, (6,), {"trigger": "manual"}) == {"queue": "interactive"}

    def test_without_shards_one_queue(self, settings):
        settings.FETCH_POLL_SHARDS = 0
        assert route_task(POLL, (6,)) == {"queue": "polls"}


class CheckTests:
    def _ids(self):
        from fetchweb.checks import kept_sessions_unused

        return [w.id for w in kept_sessions_unused()]

    def test_silent_when_off(self, settings):
        settings.FETCH_KEEP_SESSIONS = 0
        assert self._ids() == []

    def test_warns_that_the_host_cap_turns_it_off(self, settings):
        settings.FETCH_KEEP_SESSIONS = 300
        settings.FETCH_MAX_SESSIONS_PER_HOST = 10
        assert self._ids() == ["fetchweb.W002"]

    def test_warns_without_shards(self, settings):
        settings.FETCH_KEEP_SESSIONS = 300
        settings.FETCH_MAX_SESSIONS_PER_HOST = 0
        settings.FETCH_POLL_SHARDS = 0
        assert self._ids() == ["fetchweb.W003"]

    def test_silent_when_it_can_work(self, settings):
        settings.FETCH_KEEP_SESSIONS = 300
        settings.FETCH_MAX_SESSIONS_PER_HOST = 0
        settings.FETCH_POLL_SHARDS = 4
        assert self._ids() == []
