"""/metrics: who may read it, what it says about the database and the broker, and
the counters the poll service feeds (without a network: see tests/live for real
polls)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from retrieval import observability, services
from retrieval.engine.report import ExitCode, MessageOutcome, MessageStatus, PollReport
from retrieval.models import Mailbox, PollRun
from tests.factories import make_mailbox, make_user
from tests.monitoring.scrape import samples, scrape, value

pytestmark = pytest.mark.django_db

TOKEN = "s3cret-metrics-token-for-the-test"


@pytest.fixture(autouse=True)
def _single_process(settings, tmp_path):
    settings.PROMETHEUS_MULTIPROC_DIR = ""
    settings.REDIS_URL = ""
    queue = tmp_path / "queue"
    queue.mkdir()
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(queue)}


class AccessTests:
    def test_loopback_is_allowed_by_default(self, client):
        names = {name for name, _, _ in samples(scrape(client))}
        assert {"fetchweb_mailboxes", "fetchweb_queue_depth"} <= names

    def test_another_network_is_refused_without_a_token(self, client, settings):
        response = client.get("/metrics", REMOTE_ADDR="192.0.2.7")
        assert response.status_code == 403
        assert b"fetchweb_" not in response.content

    def test_the_allow_list_lets_a_network_in(self, client, settings):
        settings.FETCH_METRICS_ALLOW = ["192.0.2.0/24"]
        scrape(client, REMOTE_ADDR="192.0.2.7")
        refused = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
        assert refused.status_code == 403  # loopback is only the default

    def test_the_token_lets_any_network_in_and_a_wrong_one_is_refused(
        self, client, settings
    ):
        settings.FETCH_METRICS_TOKEN = TOKEN
        settings.FETCH_METRICS_ALLOW = []
        without = client.get("/metrics", REMOTE_ADDR="192.0.2.7")
        assert without.status_code == 401
        assert without["WWW-Authenticate"].startswith("Bearer")
        wrong = client.get(
            "/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer nope"
        )
        assert wrong.status_code == 401
        text = scrape(
            client, REMOTE_ADDR="192.0.2.7", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
        )
        assert "fetchweb_mailboxes" in text

    def test_a_token_is_refused_when_none_is_configured(self, client, settings):
        settings.FETCH_METRICS_TOKEN = ""
        response = client.get(
            "/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer anything"
        )
        assert response.status_code == 403


class StateTests:
    def test_due_overdue_failing_and_disabled_mailboxes(self, client):
        now = timezone.now()
        owner = make_user()
        make_mailbox(owner, next_poll_at=now + timedelta(hours=1))  # not due
        make_mailbox(owner, next_poll_at=now - timedelta(seconds=30))  # due
        make_mailbox(owner, next_poll_at=now - timedelta(hours=2))  # overdue
        failing = make_mailbox(owner, next_poll_at=now + timedelta(hours=1))
        PollRun.objects.create(
            mailbox=failing, outcome="success", started_at=now - timedelta(hours=1)
        )
        PollRun.objects.create(mailbox=failing, outcome="error", started_at=now)
        recovered = make_mailbox(owner, next_poll_at=now + timedelta(hours=1))
        PollRun.objects.create(
            mailbox=recovered, outcome="error", started_at=now - timedelta(hours=1)
        )
        PollRun.objects.create(mailbox=recovered, outcome="nomail", started_at=now)
        PollRun.objects.create(mailbox=recovered, outcome="running", started_at=now)
        make_mailbox(owner, enabled=False, next_poll_at=now - timedelta(hours=2))
        # Paused after repeated failures: not scheduled, so neither due nor overdue.
        make_mailbox(
            owner, next_poll_at=now - timedelta(hours=2), health=Mailbox.Health.PAUSED
        )

        text = scrape(client)

        assert value(text, "fetchweb_mailboxes", state="enabled") == 6
        assert value(text, "fetchweb_mailboxes", state="paused") == 1
        assert value(text, "fetchweb_mailboxes", state="disabled") == 1
        assert value(text, "fetchweb_mailboxes", state="failing") == 1
        assert value(text, "fetchweb_mailboxes_due") == 2
        assert value(text, "fetchweb_mailboxes_overdue") == 1
        assert value(text, "fetchweb_polls_running") == 1
        assert value(text, "fetchweb_idle_connections") == 0

    def test_file_broker_queue_depth_counts_message_files(self, client, settings):
        queue = settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]
        for n in range(3):
            (Path(queue) / f"{n}_abc.celery.msg").write_bytes(b"")
        (Path(queue) / "9_abc.interactive.msg").write_bytes(b"")
        text = scrape(client)
        assert value(text, "fetchweb_queue_depth", queue="celery") == 3
        assert value(text, "fetchweb_queue_depth", queue="interactive") == 1
        assert value(text, "fetchweb_broker_up") == 1

    def test_redis_queue_depth_reads_the_celery_lists(
        self, client, settings, redis_url
    ):
        import redis

        settings.REDIS_URL = redis_url
        r = redis.Redis.from_url(redis_url)
        r.delete("celery", "celery\x06\x163", "interactive")
        try:
            r.rpush("celery", b"a", b"b")
            r.rpush("celery\x06\x163", b"c")  # a priority-3 task
            r.rpush("interactive", b"d")
            text = scrape(client)
        finally:
            r.delete("celery", "celery\x06\x163", "interactive")
        assert value(text, "fetchweb_queue_depth", queue="celery") == 3
        assert value(text, "fetchweb_queue_depth", queue="interactive") == 1
        assert value(text, "fetchweb_broker_up") == 1

    def test_an_unreachable_broker_is_a_gauge_not_an_error(
        self, client, settings, unused_port
    ):
        settings.REDIS_URL = f"redis://127.0.0.1:{unused_port}/0"
        text = scrape(client)
        assert value(text, "fetchweb_broker_up") == 0
        assert value(text, "fetchweb_mailboxes_due") == 0


class CounterTests:
    def test_a_recorded_poll_moves_the_counters(self, client):
        mailbox = make_mailbox(make_user(), protocol="pop3")
        run = PollRun.objects.create(
            mailbox=mailbox, outcome="error", started_at=timezone.now()
        )
        run.finished_at = run.started_at + timedelta(seconds=3)
        report = PollReport(
            exit_code=ExitCode.SMTP,
            messages=[
                MessageOutcome("INBOX", "1", size=100, status=MessageStatus.DELIVERED),
                MessageOutcome("INBOX", "2", size=50, status=MessageStatus.DELIVERED),
                MessageOutcome("INBOX", "3", size=7, status=MessageStatus.REFUSED),
                MessageOutcome("INBOX", "4", size=7, status=MessageStatus.DEFERRED),
                MessageOutcome("INBOX", "5", size=7, status=MessageStatus.SKIPPED),
            ],
        )
        before = scrape(client)
        observability.poll_finished(mailbox, run, report)
        after = scrape(client)

        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert delta("fetchweb_polls_total", outcome="error", protocol="pop3") == 1
        assert delta("fetchweb_messages_delivered_total", protocol="pop3") == 2
        assert delta("fetchweb_delivered_bytes_total", protocol="pop3") == 150
        assert delta("fetchweb_listener_refusals_total", kind="permanent") == 1
        assert delta("fetchweb_listener_refusals_total", kind="temporary") == 1
        assert delta("fetchweb_poll_duration_seconds_count", protocol="pop3") == 1
        assert delta("fetchweb_poll_duration_seconds_sum", protocol="pop3") == pytest.approx(3)
        assert (
            delta("fetchweb_poll_duration_seconds_bucket", protocol="pop3", le="2.5")
            == 0
        )
        assert (
            delta("fetchweb_poll_duration_seconds_bucket", protocol="pop3", le="5.0")
            == 1
        )

    def test_taking_over_an_expired_lease_counts_a_steal(self, client):
        mailbox = make_mailbox(make_user())
        before = value(scrape(client), "fetchweb_lease_steals_total")
        with services.mailbox_lease(mailbox_id=mailbox.pk) as held:  # a free mailbox
            assert held is not None
        assert value(scrape(client), "fetchweb_lease_steals_total") == before
        Mailbox.objects.filter(pk=mailbox.pk).update(
            lease_owner="dead-worker", lease_until=timezone.now() - timedelta(seconds=1)
        )
        with services.mailbox_lease(mailbox_id=mailbox.pk) as held:
            assert held is not None
        assert value(scrape(client), "fetchweb_lease_steals_total") == before + 1
        Mailbox.objects.filter(pk=mailbox.pk).update(
            lease_owner="live-worker", lease_until=timezone.now() + timedelta(hours=1)
        )
        with services.mailbox_lease(mailbox_id=mailbox.pk) as held:
            assert held is None  # a live lease is neither taken nor counted
        assert value(scrape(client), "fetchweb_lease_steals_total") == before + 1


class DocsTests:
    """The dashboard and docs/metrics.md name the metrics /metrics really has."""

    def test_dashboard_and_docs_match_the_exposed_metrics(self, client):
        import json
        import re

        root = Path(__file__).resolve().parents[2]
        mailbox = make_mailbox(make_user(), protocol="imap")
        run = PollRun.objects.create(mailbox=mailbox, outcome="success")
        observability.poll_finished(
            mailbox,
            run,
            PollReport(
                exit_code=ExitCode.SMTP,
                messages=[
                    MessageOutcome("INBOX", "1", status=MessageStatus.DELIVERED),
                    MessageOutcome("INBOX", "2", status=MessageStatus.REFUSED),
                ],
            ),
        )
        exposed = {name for name, _, _ in samples(scrape(client))}
        dashboard = json.loads((root / "docs" / "grafana-dashboard.json").read_text())
        exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
        used = {m for e in exprs for m in re.findall(r"fetchweb_\w+", e)}
        assert used and used <= exposed, used - exposed
        docs = (root / "docs" / "metrics.md").read_text()
        documented = set(re.findall(r"^\| `(fetchweb_\w+)`", docs, re.MULTILINE))
        families = {
            f.name
            for f in text_string_to_metric_families(scrape(client))
            if f.name.startswith("fetchweb_")
        }
        # The parser names a counter's family without its "_total".
        assert {re.sub(r"_total$", "", d) for d in documented} == families


class MultiprocessFilesTests:
    def test_a_dead_childs_live_gauge_file_is_removed(self, tmp_path, monkeypatch):
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        dead = tmp_path / "gauge_livesum_4242.db"
        alive = tmp_path / "gauge_livesum_4243.db"
        counter = tmp_path / "counter_4242.db"
        for f in (dead, alive, counter):
            f.write_bytes(b"")
        observability.process_dead(4242)
        assert not dead.exists()
        assert alive.exists() and counter.exists()  # counters stay in the sum

    def test_a_worker_start_empties_its_own_directory_only(self, tmp_path, monkeypatch):
        own = tmp_path / "polls"
        other = tmp_path / "interactive"
        other.mkdir(parents=True)
        (other / "counter_1.db").write_bytes(b"")
        own.mkdir()
        (own / "counter_1.db").write_bytes(b"")
        (own / "README").write_text("kept")
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(own))
        observability.clear_own_files()
        assert not list(own.glob("*.db"))
        assert (own / "README").exists()
        assert (other / "counter_1.db").exists()
