"""The IDLE push process against scripted fake servers, and its database side."""

from __future__ import annotations

import json
import urllib.request

import pytest
from django.core.management import CommandError, call_command

from retrieval import observability, services
from retrieval.models import Mailbox, PollRun
from retrieval.push import supervisor as push
from tests.factories import make_mailbox, make_user
from tests.push.support import Running, fake_imap, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

IDLE_ON = {"user": {"idle": True}}


@pytest.fixture(autouse=True)
def _memory_cache(settings):
    # One cache for the test and the supervisor's threads (the process's own).
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "throttle": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }


@pytest.fixture
def root():
    return make_user("root@example.org", superuser=True)


def _fake_mailbox(owner, port, **fields):
    values = {
        "host": "127.0.0.1",
        "port": port,
        "tls_mode": "none",
        "auth": "plain",
        "username": "alice",
        "timeout": 10,
        "options": IDLE_ON,
    }
    values.update(fields)
    return make_mailbox(owner, password="secret", **values)


def _supervisor(queued, **kwargs):
    def queue(pk):
        queued.append(pk)
        return True

    kwargs.setdefault("interval", 0.2)
    kwargs.setdefault("backoff", (0.1, 1.0))
    return push.Supervisor(queue=queue, **kwargs)


class WantedTests:
    def test_it_wants_enabled_imap_mailboxes_with_idle_on_and_not_paused(self, root):
        held = _fake_mailbox(root, 993)
        _fake_mailbox(root, 993, options={})
        _fake_mailbox(root, 993, enabled=False)
        _fake_mailbox(root, 995, protocol="pop3")
        paused = _fake_mailbox(root, 993)
        Mailbox.objects.filter(pk=paused.pk).update(health=Mailbox.Health.PAUSED)
        assert set(push.wanted_mailboxes(0, 1)) == {held.pk}

    def test_shards_split_the_mailboxes_by_id(self, root):
        ids = {_fake_mailbox(root, 993).pk for _ in range(5)}
        parts = [set(push.wanted_mailboxes(k, 3)) for k in range(3)]
        assert set().union(*parts) == ids
        for k, part in enumerate(parts):
            assert all(pk % 3 == k for pk in part)

    def test_a_saved_row_gets_a_new_version(self, root):
        mailbox = _fake_mailbox(root, 993)
        before = push.wanted_mailboxes(0, 1)[mailbox.pk]
        mailbox.keep = True
        mailbox.save()
        assert push.wanted_mailboxes(0, 1)[mailbox.pk] != before


class CoalescingTests:
    def test_one_push_poll_is_pending_per_mailbox_until_a_poll_starts(
        self, root, monkeypatch
    ):
        from retrieval import tasks

        sent = []
        monkeypatch.setattr(tasks.poll_mailbox, "delay", lambda *a: sent.append(a))
        mailbox = _fake_mailbox(root, 993)
        assert services.mailbox_push_request(mailbox_id=mailbox.pk)
        assert not services.mailbox_push_request(mailbox_id=mailbox.pk)
        assert sent == [(mailbox.pk, "push")]
        # The poll starts (here: skipped, the mailbox is paused): new mail asks again.
        Mailbox.objects.filter(pk=mailbox.pk).update(health=Mailbox.Health.PAUSED)
        summary = services.mailbox_poll(mailbox_id=mailbox.pk, trigger="push")
        assert summary.outcome == PollRun.Outcome.SKIPPED
        assert services.mailbox_push_request(mailbox_id=mailbox.pk)
        assert sent == [(mailbox.pk, "push")] * 2

    def test_push_polls_go_to_the_push_queue(self):
        from retrieval.tasks import route_task

        assert route_task("retrieval.tasks.poll_mailbox", (1, "push")) == {
            "queue": "push"
        }


class FakeServerTests:
    def test_new_mail_during_idle_queues_a_poll_and_a_drop_reconnects(self, root):
        # First connection: dropped in IDLE; second: "* 4 EXISTS" (was 3).
        script = {1: "drop", 2: "exists"}
        with fake_imap(idle=True, script=lambda n: script.get(n, "")) as server:
            mailbox = _fake_mailbox(root, server.port)
            queued: list[int] = []
            with Running(_supervisor(queued)) as running:
                wait_until(lambda: queued)
                assert queued == [mailbox.pk]
                assert server.connections == 2
                wait_until(lambda: running.idling() == {mailbox.pk})
        # Logged in with AUTHENTICATE PLAIN, read-only.
        assert server.seen(b"AUTHENTICATE PLAIN") == 2
        assert server.seen(b'EXAMINE "INBOX"') == 2
        assert not server.seen(b"SELECT")

    def test_an_overlong_line_ends_the_session_and_it_reconnects(self, root):
        script = {1: "flood", 2: "exists"}
        with fake_imap(idle=True, script=lambda n: script.get(n, "")) as server:
            mailbox = _fake_mailbox(root, server.port)
            queued: list[int] = []
            with Running(_supervisor(queued)) as running:
                wait_until(lambda: queued)
                reason = running.call(
                    lambda: running.supervisor.watches[mailbox.pk].reason
                )
                assert "longer than" in reason
            assert server.connections == 2

    def test_idle_is_reissued_on_the_same_connection(self, root):
        with fake_imap(idle=True) as server:
            _fake_mailbox(root, server.port)
            with Running(_supervisor([], reissue=0.3)):
                wait_until(lambda: server.seen(b" IDLE") >= 3)
                assert server.seen(b"DONE") >= 2
            assert server.connections == 1

    def test_a_server_without_idle_is_not_held(self, root):
        with fake_imap(idle=False) as server:
            mailbox = _fake_mailbox(root, server.port)
            with Running(_supervisor([])) as running:
                wait_until(lambda: running.state(mailbox.pk) == "unavailable")
                rounds = running.rounds()
                wait_until(lambda: running.rounds() >= rounds + 3)
                assert running.idling() == set()
            assert server.connections == 1  # not tried again: left to the schedule
            assert server.seen(b"LOGOUT") == 1
            assert not server.seen(b" IDLE")

    def test_a_mailbox_of_a_user_is_never_connected_to_a_private_address(self):
        owner = make_user("bob@example.org")
        with fake_imap(idle=True) as server:
            mailbox = _fake_mailbox(owner, server.port)
            with Running(_supervisor([])) as running:
                wait_until(lambda: running.state(mailbox.pk) == "unavailable")
            assert server.connections == 0

    def test_a_disabled_or_removed_mailbox_is_dropped(self, root):
        with fake_imap(idle=True) as server:
            first = _fake_mailbox(root, server.port)
            second = _fake_mailbox(root, server.port)
            # One session set up at a time: a held one frees the slot.
            with Running(_supervisor([], max_starting=1)) as running:
                wait_until(lambda: running.idling() == {first.pk, second.pk})
                Mailbox.objects.filter(pk=first.pk).update(enabled=False)
                wait_until(lambda: running.idling() == {second.pk})
                assert running.state(first.pk) is None
                services.mailbox_delete(mailbox=Mailbox.objects.get(pk=second.pk))
                wait_until(lambda: running.idling() == set())
                assert observability.IDLE_CONNECTIONS._value.get() == 0
            assert server.connections == 2

    def test_an_added_mailbox_is_picked_up_and_a_changed_one_reconnects(self, root):
        with fake_imap(idle=True) as server, Running(_supervisor([])) as running:
            wait_until(lambda: running.rounds() >= 1)
            mailbox = _fake_mailbox(root, server.port)
            wait_until(lambda: running.idling() == {mailbox.pk})
            assert server.connections == 1
            mailbox.refresh_from_db()
            mailbox.keep = True
            services.mailbox_save(mailbox=mailbox)
            wait_until(lambda: server.connections == 2)
            wait_until(lambda: running.idling() == {mailbox.pk})

    def test_the_health_endpoint_answers_while_rounds_succeed(self, root):
        supervisor = _supervisor([])
        with Running(supervisor) as running:
            wait_until(lambda: running.rounds() >= 1)
            server = running.call(lambda: push.serve_health(supervisor, "127.0.0.1", 0))
            port = server.sockets[0].getsockname()[1]
            url = f"http://127.0.0.1:{port}/healthz"
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200
                assert json.loads(response.read())["status"] == "ok"
            running.call(server.close)


class CommandTests:
    @pytest.mark.parametrize("shard", ["2/2", "x", "1/0", "-1/2"])
    def test_it_refuses_a_bad_shard(self, shard):
        with pytest.raises(CommandError):
            call_command("idle", "--shard", shard)
