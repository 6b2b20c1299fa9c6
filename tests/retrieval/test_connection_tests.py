"""Test connection does not hold a web worker (issue 11 item 4).

The button records a ConnectionTest and queues retrieval.tasks.probe_connection
(on the "interactive" queue) after commit; the page then follows the test's
status. At most FETCH_MAX_PROBES_PER_USER tests per person are queued or
running. Mailbox quotas per owner and per domain are enforced where mailboxes
are created. Tests belong to their mailbox's tenancy: 404 for anyone else.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from retrieval import services
from retrieval.models import ConnectionTest, Mailbox
from retrieval.services import probes
from retrieval.tasks import probe_connection
from tests.factories import make_mailbox
from tests.retrieval.test_views import (
    PUBLIC,
    _as,
    _errors,
    _form,
    _quick_settings,
    trio,
)

__all__ = ["_quick_settings", "trio"]

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_network(monkeypatch):
    """The login check, replaced: records who was tested and answers at once. Every
    connection of these tests would otherwise go to a public address."""
    calls = []

    def fake(*, mailbox, progress=None):
        calls.append(mailbox.pk)
        return (
            probes.LoginCheck(ok=True, greeting="* OK fake IMAP ready", error=""),
            "S: * OK fake IMAP ready\nC: A1 LOGIN alice.remote ********\nS: A1 OK",
        )

    monkeypatch.setattr(probes, "mailbox_login_check", fake)
    return calls


@pytest.fixture
def queued(monkeypatch):
    """What the view hands to Celery: the ids given to probe_connection.delay."""
    ids = []
    monkeypatch.setattr(probe_connection, "delay", ids.append)
    return ids


def _test_url(mailbox, pk):
    return reverse("retrieval:mailbox-test", args=[mailbox.pk])


def _page(mailbox_pk, test_pk, *, status=False):
    name = "connection-test-status" if status else "connection-test"
    return reverse(f"retrieval:{name}", args=[mailbox_pk, test_pk])


class RequestTests:
    def test_the_button_queues_a_task_and_answers_at_once(
        self, client, trio, no_network, queued, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            response = _as(client, trio.alice).post(_test_url(trio.mailbox, 0))
        probe = ConnectionTest.objects.get()
        assert response.status_code == 302
        assert response["Location"] == _page(trio.mailbox.pk, probe.pk)
        assert no_network == []  # nothing connected inside the request
        assert queued == [probe.pk]
        assert probe.status == ConnectionTest.Status.QUEUED
        assert probe.mailbox == trio.mailbox and probe.requested_by == trio.alice

    def test_a_tarpit_is_not_contacted_by_the_web_request(
        self, client, trio, settings, queued, django_capture_on_commit_callbacks
    ):
        # A server that accepts and never speaks: before, the request itself
        # connected and waited for its greeting, holding a web worker.
        import select
        import socket

        settings.FETCH_ALLOW_PRIVATE_HOSTS = True
        with socket.create_server(("127.0.0.1", 0)) as tarpit:
            Mailbox.objects.filter(pk=trio.mailbox.pk).update(
                host="127.0.0.1", port=tarpit.getsockname()[1], tls_mode="none"
            )
            with django_capture_on_commit_callbacks(execute=True):
                response = _as(client, trio.alice).post(_test_url(trio.mailbox, 0))
            assert response.status_code == 302
            knocked, _, _ = select.select([tarpit], [], [], 0)
            assert knocked == []  # no connection is waiting to be accepted
        assert len(queued) == 1

    def test_the_task_runs_the_check_and_the_page_shows_the_result(
        self, client, trio, no_network
    ):
        probe = ConnectionTest.objects.create(
            mailbox=trio.mailbox, requested_by=trio.alice
        )
        _as(client, trio.alice)
        waiting = client.get(_page(trio.mailbox.pk, probe.pk)).content.decode()
        assert "waiting for a worker" in waiting
        status_url = _page(trio.mailbox.pk, probe.pk, status=True)
        assert f'data-status-url="{status_url}"' in waiting
        assert "js/poll-status.js" in waiting and "<script>" not in waiting
        assert 'data-done="false"' in client.get(status_url).content.decode()

        assert "ok" in probe_connection(probe.pk)
        probe.refresh_from_db()
        assert probe.status == ConnectionTest.Status.DONE and probe.ok is True
        assert no_network == [trio.mailbox.pk]

        part = client.get(status_url)
        assert part["Cache-Control"] == "no-store"
        text = part.content.decode()
        assert 'data-done="true"' in text
        assert "Connected and logged in" in text and "fake IMAP ready" in text
        done = client.get(_page(trio.mailbox.pk, probe.pk)).content.decode()
        assert "data-status-url" not in done  # nothing left to follow
        assert "C: A1 LOGIN alice.remote ********" in done

    def test_a_test_run_twice_connects_once(self, trio, no_network):
        probe = ConnectionTest.objects.create(mailbox=trio.mailbox)
        probe_connection(probe.pk)
        assert "not queued" in probe_connection(probe.pk)
        assert no_network == [trio.mailbox.pk]

    def test_a_failed_login_is_shown_in_words(self, client, trio, monkeypatch):
        monkeypatch.setattr(
            probes,
            "mailbox_login_check",
            lambda *, mailbox, progress=None: (
                probes.LoginCheck(ok=False, greeting="", error="Wrong password."),
                "",
            ),
        )
        probe = ConnectionTest.objects.create(mailbox=trio.mailbox)
        probe_connection(probe.pk)
        text = _as(client, trio.bob).get(_page(trio.mailbox.pk, probe.pk)).content
        assert "The test failed: Wrong password." in text.decode()


class BoundTests:
    def test_at_most_n_tests_per_person_are_queued_or_running(
        self,
        client,
        trio,
        settings,
        no_network,
        queued,
        django_capture_on_commit_callbacks,
    ):
        settings.FETCH_MAX_PROBES_PER_USER = 2
        boxes = [make_mailbox(trio.alice, host=PUBLIC) for _ in range(4)]
        _as(client, trio.alice)
        with django_capture_on_commit_callbacks(execute=True):
            answers = [client.post(_test_url(b, 0), follow=True) for b in boxes[:3]]
        assert ConnectionTest.objects.filter(requested_by=trio.alice).count() == 2
        assert len(queued) == 2
        assert "the most at once" in answers[2].content.decode()
        # Another person is not held back by alice's tests.
        with django_capture_on_commit_callbacks(execute=True):
            _as(client, trio.bob).post(_test_url(trio.mailbox, 0))
        assert len(queued) == 3
        # A finished test frees its place.
        probe_connection(queued[0])
        _as(client, trio.alice)
        with django_capture_on_commit_callbacks(execute=True):
            client.post(_test_url(boxes[3], 0))
        assert len(queued) == 4

    def test_a_lost_test_stops_counting(self, client, trio, settings, queued):
        settings.FETCH_MAX_PROBES_PER_USER = 1
        lost = ConnectionTest.objects.create(
            mailbox=trio.mailbox, requested_by=trio.alice
        )
        ConnectionTest.objects.filter(pk=lost.pk).update(
            created_at=timezone.now()
            - timedelta(seconds=services.PROBE_STALE_SECONDS + 1)
        )
        with pytest.raises(services.ProbeLimit):
            fresh = ConnectionTest.objects.create(
                mailbox=trio.mailbox, requested_by=trio.alice
            )
            services.connection_test_request(mailbox=trio.mailbox, user=trio.alice)
        fresh.delete()
        assert services.connection_test_request(mailbox=trio.mailbox, user=trio.alice)


class TenancyTests:
    @pytest.fixture
    def probe(self, trio):
        return ConnectionTest.objects.create(
            mailbox=trio.mailbox,
            requested_by=trio.alice,
            status=ConnectionTest.Status.DONE,
            ok=False,
            error="Wrong password for alice.remote",
        )

    @pytest.mark.parametrize("status", [False, True])
    def test_an_outsider_gets_404(self, client, trio, probe, status):
        response = _as(client, trio.charlie).get(
            _page(trio.mailbox.pk, probe.pk, status=status)
        )
        assert response.status_code == 404
        # Nor through a mailbox of their own.
        own = make_mailbox(trio.charlie, host=PUBLIC)
        response = client.get(_page(own.pk, probe.pk, status=status))
        assert response.status_code == 404
        assert b"alice.remote" not in response.content

    def test_anonymous_is_sent_to_log_in(self, client, trio, probe):
        response = client.get(_page(trio.mailbox.pk, probe.pk, status=True))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))

    def test_owner_domain_administrator_and_superuser_see_it(self, client, trio, probe):
        for user in (trio.alice, trio.bob, trio.root):
            response = _as(client, user).get(_page(trio.mailbox.pk, probe.pk))
            assert "alice.remote" in response.content.decode(), user

    def test_a_domain_administrator_cannot_test_a_superusers_mailbox(
        self, client, trio, no_network, queued
    ):
        mailbox = make_mailbox(trio.root, domain=trio.domain, host=PUBLIC)
        assert _as(client, trio.bob).post(_test_url(mailbox, 0)).status_code == 403
        assert not ConnectionTest.objects.exists() and queued == []


class QuotaTests:
    def test_a_user_at_the_quota_is_told_and_nothing_is_added(
        self, client, trio, settings
    ):
        settings.FETCH_MAX_MAILBOXES_PER_USER = 1  # alice has one already
        response = _as(client, trio.alice).post(
            reverse("retrieval:mailbox-add"), _form(name="second")
        )
        assert "You have 1 mailbox, the most one person may have" in _errors(response)
        assert not Mailbox.objects.filter(name="second").exists()
        settings.FETCH_MAX_MAILBOXES_PER_USER = 0  # no limit
        response = client.post(reverse("retrieval:mailbox-add"), _form(name="second"))
        assert response.status_code == 302

    def test_a_domain_administrator_adding_for_a_member_at_the_quota(
        self, client, trio, settings
    ):
        settings.FETCH_MAX_MAILBOXES_PER_USER = 1
        response = _as(client, trio.bob).post(
            reverse("retrieval:mailbox-add"),
            _form(name="for-alice", owner=str(trio.alice.pk)),
        )
        assert "alice@example.org has 1 mailbox," in _errors(response)
        # bob himself has none yet: he may add his own.
        response = client.post(
            reverse("retrieval:mailbox-add"),
            _form(name="bobs", owner=str(trio.bob.pk)),
        )
        assert response.status_code == 302

    def test_the_domain_quota(self, client, trio, settings):
        settings.FETCH_MAX_MAILBOXES_PER_DOMAIN = 1  # example.org has alice's
        response = _as(client, trio.bob).post(
            reverse("retrieval:mailbox-add"),
            _form(name="bobs", owner=str(trio.bob.pk)),
        )
        assert "The domain example.org has 1 mailbox," in _errors(response)
        assert not Mailbox.objects.filter(name="bobs").exists()
        # A person outside any domain is held only by their own quota.
        assert (
            _as(client, trio.charlie)
            .post(reverse("retrieval:mailbox-add"), _form(name="charlies"))
            .status_code
            == 302
        )

    def test_a_superuser_is_not_limited(self, client, trio, settings):
        settings.FETCH_MAX_MAILBOXES_PER_USER = 1
        settings.FETCH_MAX_MAILBOXES_PER_DOMAIN = 1
        response = _as(client, trio.root).post(
            reverse("retrieval:mailbox-add"),
            _form(name="root-for-alice", owner=str(trio.alice.pk))
            | {
                "timeout": "300",
                "delivery_kind": "smtp",
                "delivery_host": "localhost",
                "delivery_port": "25",
            },
        )
        assert response.status_code == 302, _errors(response)

    def test_the_service_refuses_too(self, trio, settings):
        # The check under the lock, for a caller that skipped the form (or lost a
        # race to another request).
        settings.FETCH_MAX_MAILBOXES_PER_USER = 1
        with pytest.raises(services.QuotaExceeded, match="the most one person"):
            services.mailbox_save(
                mailbox=Mailbox(host=PUBLIC, username="x"),
                owner=trio.alice,
                creator=trio.alice,
            )
        assert Mailbox.objects.filter(owner=trio.alice).count() == 1

    def test_the_rcfile_importer_keeps_the_quota_too(self, trio, settings, tmp_path):
        import io

        from django.core.management import CommandError, call_command

        settings.FETCH_MAX_MAILBOXES_PER_USER = 2  # alice has one: room for one
        path = tmp_path / "fetchmailrc"
        path.write_text(
            'poll imap.example.net proto imap user "a1" there password "pw"\n'
            'poll imap.example.com proto imap user "a2" there password "pw"\n'
        )
        with pytest.raises(CommandError, match="the most one person may have"):
            call_command(
                "import_fetchmailrc",
                str(path),
                owner="alice@example.org",
                netrc="/nonexistent",
                stdout=io.StringIO(),
            )
        assert Mailbox.objects.filter(owner=trio.alice).count() == 1


def test_only_the_last_tests_of_a_mailbox_are_kept(trio, queued):
    for _ in range(services.PROBES_KEPT + 3):
        ConnectionTest.objects.create(
            mailbox=trio.mailbox, status=ConnectionTest.Status.DONE
        )
    newest = services.connection_test_request(mailbox=trio.mailbox, user=trio.alice)
    kept = ConnectionTest.objects.filter(mailbox=trio.mailbox)
    assert kept.count() == services.PROBES_KEPT
    assert kept.filter(pk=newest.pk).exists()


def test_a_lost_test_says_so_and_is_no_longer_followed(client, trio):
    probe = ConnectionTest.objects.create(mailbox=trio.mailbox, requested_by=trio.alice)
    ConnectionTest.objects.filter(pk=probe.pk).update(
        created_at=timezone.now() - timedelta(seconds=services.PROBE_STALE_SECONDS + 1)
    )
    _as(client, trio.alice)
    page = client.get(_page(trio.mailbox.pk, probe.pk)).content.decode()
    assert "This test did not finish" in page and "data-status-url" not in page
    part = client.get(_page(trio.mailbox.pk, probe.pk, status=True)).content.decode()
    assert 'data-done="true"' in part
