"""Issue 14 item 2: backoff, pause on permanent failures, resume, alerts."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import Domain
from retrieval import services, tasks
from retrieval.engine.report import ExitCode, PollReport
from retrieval.models import Mailbox
from retrieval.services import failures
from tests.factories import make_mailbox, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def alerts(monkeypatch, django_capture_on_commit_callbacks):
    """The alerts queued (send_alert.delay), after commit."""
    queued: list[tuple[int, str, str]] = []
    monkeypatch.setattr(tasks.send_alert, "delay", lambda *a: queued.append(a))
    return queued


@pytest.fixture
def engine(monkeypatch):
    """Set ``engine.report`` to what the next poll's engine reports."""

    class Fake:
        report = PollReport(exit_code=ExitCode.NOMAIL)

    fake = Fake()
    monkeypatch.setattr(services.polls, "engine_poll", lambda *a, **k: fake.report)
    return fake


def _mailbox(**fields) -> Mailbox:
    return make_mailbox(
        make_user(superuser=True),
        password="pw",
        host="127.0.0.1",
        port=993,
        poll_interval=300,
        **fields,
    )


def _poll(mailbox: Mailbox, capture, trigger: str = "schedule") -> Mailbox:
    with capture(execute=True):
        services.mailbox_poll(mailbox_id=mailbox.pk, trigger=trigger)
    mailbox.refresh_from_db()
    return mailbox


AUTH = PollReport(
    exit_code=ExitCode.AUTHFAIL, error="Login refused: bad password.", permanent=True
)
SOCKET = PollReport(exit_code=ExitCode.SOCKET, error="Connection refused.")
NOMAIL = PollReport(exit_code=ExitCode.NOMAIL)


class BackoffTests:
    def test_the_delay_doubles_with_jitter_up_to_the_cap(self, settings):
        settings.FETCH_BACKOFF_MAX = 24 * 3600
        rng = random.Random(14)
        for failures_ in range(15):
            base = 300 * 2 ** max(failures_ - 1, 0)
            delay = failures.backoff_seconds(300, failures_, rng)
            # Jitter only shortens, and applies at the cap too (capped
            # mailboxes stay apart); never longer than the cap.
            capped = min(base, 24 * 3600)
            assert 0.9 * capped <= delay <= capped
        at_cap = [failures.backoff_seconds(300, 40, rng) for _ in range(50)]
        assert all(0.9 * 24 * 3600 <= d <= 24 * 3600 for d in at_cap)
        assert len(set(at_cap)) > 1

    def test_failing_polls_back_off_and_a_success_resets(
        self, engine, alerts, django_capture_on_commit_callbacks
    ):
        mailbox = _mailbox()
        engine.report = SOCKET
        gaps = []
        for n in (1, 2, 3, 4):
            before = timezone.now()
            mailbox = _poll(mailbox, django_capture_on_commit_callbacks)
            after = timezone.now()
            assert mailbox.failure_count == n
            gap = (mailbox.next_poll_at - before).total_seconds()
            base = timedelta(seconds=300 * 2 ** (n - 1))
            assert before + 0.9 * base <= mailbox.next_poll_at <= after + base
            gaps.append(gap)
        assert gaps == sorted(gaps)
        # A temporary failure never pauses.
        assert mailbox.health == Mailbox.Health.FAILING
        assert mailbox.permanent_failures == 0
        engine.report = NOMAIL
        before = timezone.now()
        mailbox = _poll(mailbox, django_capture_on_commit_callbacks)
        after = timezone.now()
        assert mailbox.failure_count == 0 and mailbox.failing_since is None
        # Reset to one interval, less up to 10 %: never later than the interval.
        interval = timedelta(seconds=300)
        assert before + 0.9 * interval <= mailbox.next_poll_at <= after + interval
        assert mailbox.health == Mailbox.Health.OK
        assert [a[1] for a in alerts] == ["failing", "recovered"]


class ClassifyTests:
    NOW = timezone.now()

    # ``permanent`` is what the engine's report says (its error hierarchy).
    @pytest.mark.parametrize(
        ("code", "since", "kind"),
        [
            (ExitCode.AUTHFAIL, None, "authentication"),
            (ExitCode.SYNTAX, None, "configuration"),
            (ExitCode.SOCKET, None, "certificate"),
            (ExitCode.DNS, timedelta(days=1, seconds=1), "dns"),
        ],
    )
    def test_permanent(self, code, since, kind):
        failure = failures.classify(
            exit_code=int(code),
            permanent=True,
            failing_since=self.NOW - since if since else None,
            now=self.NOW,
        )
        assert failure.permanent and failure.kind == kind

    @pytest.mark.parametrize(
        ("code", "permanent", "since"),
        [
            (ExitCode.SOCKET, False, None),  # connection refused
            (ExitCode.DNS, True, timedelta(hours=23)),  # unknown, not yet a day
            (ExitCode.DNS, False, timedelta(days=2)),  # the resolver failing
            (ExitCode.PROTOCOL, False, None),
            (ExitCode.LOCKBUSY, False, None),
            (None, False, None),  # took too long
        ],
    )
    def test_temporary(self, code, permanent, since):
        failure = failures.classify(
            exit_code=None if code is None else int(code),
            permanent=permanent,
            failing_since=self.NOW - since if since else None,
            now=self.NOW,
        )
        assert not failure.permanent


class PauseTests:
    def test_it_pauses_after_n_permanent_failures(
        self, settings, engine, alerts, django_capture_on_commit_callbacks
    ):
        settings.FETCH_PAUSE_AFTER = 3
        mailbox = _mailbox()
        engine.report = AUTH
        states = []
        for _ in range(3):
            mailbox = _poll(mailbox, django_capture_on_commit_callbacks)
            states.append(mailbox.health)
        assert states == ["failing", "failing", "paused"]
        assert mailbox.permanent_failures == 3
        assert "bad password" in mailbox.health_reason
        assert "user name or password" in mailbox.health_reason
        # One alert per change of state, not per failed poll.
        assert [a[1] for a in alerts] == ["failing", "paused"]
        # The schedule leaves it alone: not claimed, and a queued poll is skipped.
        Mailbox.objects.filter(pk=mailbox.pk).update(
            next_poll_at=timezone.now() - timedelta(seconds=1)
        )
        assert services.mailboxes_claim_due() == []
        runs = mailbox.runs.count()
        assert services.mailbox_poll(mailbox_id=mailbox.pk).outcome == "skipped"
        assert mailbox.runs.count() == runs

    def test_resume_puts_it_back_and_a_success_recovers(
        self, settings, engine, alerts, django_capture_on_commit_callbacks
    ):
        settings.FETCH_PAUSE_AFTER = 1
        mailbox = _mailbox()
        engine.report = AUTH
        mailbox = _poll(mailbox, django_capture_on_commit_callbacks)
        assert mailbox.health == "paused"
        assert services.mailbox_resume(mailbox=mailbox) is True
        assert services.mailbox_resume(mailbox=mailbox) is False  # not paused now
        mailbox.refresh_from_db()
        assert mailbox.health == "failing" and mailbox.permanent_failures == 0
        assert services.mailboxes_claim_due() == [mailbox.pk]
        engine.report = NOMAIL
        mailbox = _poll(mailbox, django_capture_on_commit_callbacks)
        assert mailbox.health == "ok"
        assert [a[1] for a in alerts] == ["paused", "recovered"]

    def test_a_person_may_poll_a_paused_mailbox(
        self, settings, engine, alerts, django_capture_on_commit_callbacks
    ):
        settings.FETCH_PAUSE_AFTER = 1
        engine.report = AUTH
        mailbox = _poll(_mailbox(), django_capture_on_commit_callbacks)
        mailbox = _poll(mailbox, django_capture_on_commit_callbacks, "manual")
        assert mailbox.health == "paused"  # still failing: stays paused
        engine.report = NOMAIL
        mailbox = _poll(mailbox, django_capture_on_commit_callbacks, "manual")
        assert mailbox.health == "ok"
        assert [a[1] for a in alerts] == ["paused", "recovered"]

    def test_a_state_change_is_made_and_announced_once(
        self, alerts, django_capture_on_commit_callbacks
    ):
        mailbox = _mailbox()
        now = timezone.now()
        with django_capture_on_commit_callbacks(execute=True):
            first = failures.health_change(
                mailbox_id=mailbox.pk, before="ok", after="failing", reason="r", now=now
            )
            second = failures.health_change(
                mailbox_id=mailbox.pk, before="ok", after="failing", reason="r", now=now
            )
        assert (first, second) == (True, False)
        assert alerts == [(mailbox.pk, "failing", "r")]


class MailAlertTests:
    def test_owner_and_domain_admins_get_one_mail_with_reason_and_link(self, settings):
        settings.FETCH_BASE_URL = "https://fetch.example.org"
        settings.FETCH_WEBHOOK_URL = ""
        owner = make_user()
        admin = make_user()
        domain = Domain.objects.create(name="example.org")
        domain.admins.add(admin)
        mailbox = make_mailbox(owner, domain=domain)
        result = services.alert_send(
            mailbox_id=mailbox.pk, event="paused", reason="Login refused."
        )
        assert "mailed 2" in result
        assert len(mail.outbox) == 1
        message = mail.outbox[0]
        assert message.to == [owner.email, admin.email]
        assert "needs attention" in message.subject
        assert "Login refused." in message.body and "Resume" in message.body
        assert f"https://fetch.example.org/mailboxes/{mailbox.pk}/" in message.body


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]]
    status = 204

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers), body))
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver():
    handler = type("Handler", (_Receiver,), {"received": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()


class WebhookTests:
    SECRET = "per-install-secret"

    def test_the_webhook_is_queued_then_posted_signed(
        self, settings, monkeypatch, receiver
    ):
        server, handler = receiver
        settings.FETCH_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/hook"
        settings.FETCH_WEBHOOK_SECRET = self.SECRET
        queued: list[str] = []
        monkeypatch.setattr(tasks.post_webhook, "delay", queued.append)
        mailbox = _mailbox()
        services.alert_send(mailbox_id=mailbox.pk, event="failing", reason="Refused.")
        # Queued as a task of its own (retried there), never posted inline.
        assert len(queued) == 1 and handler.received == []
        assert tasks.post_webhook(queued[0]) == 204
        [(headers, body)] = handler.received
        expected = hmac.new(self.SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Fetchweb-Signature"] == f"sha256={expected}"
        wrong = hmac.new(b"other", body, hashlib.sha256).hexdigest()
        assert headers["X-Fetchweb-Signature"] != f"sha256={wrong}"
        payload = json.loads(body)
        assert payload["event"] == "failing" and payload["reason"] == "Refused."
        assert payload["mailbox"]["id"] == mailbox.pk
        assert payload["url"].endswith(f"/mailboxes/{mailbox.pk}/")

    def test_a_failing_receiver_raises_so_that_the_task_retries(
        self, settings, receiver
    ):
        server, handler = receiver
        handler.status = 503
        settings.FETCH_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/hook"
        settings.FETCH_WEBHOOK_SECRET = self.SECRET
        with pytest.raises(OSError):
            services.webhook_post(body="{}")
        assert len(handler.received) == 1
        assert OSError in tasks.post_webhook.autoretry_for
        assert tasks.post_webhook.max_retries > 0

    def test_no_secret_no_post(self, settings, receiver):
        server, handler = receiver
        settings.FETCH_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/hook"
        settings.FETCH_WEBHOOK_SECRET = ""
        assert services.webhook_post(body="{}") == 0
        assert handler.received == []


class ConsoleTests:
    def test_the_page_says_why_and_resume_puts_it_back(self, client):
        mailbox = _mailbox(
            health=Mailbox.Health.PAUSED,
            health_reason="Login refused: bad password. Check them.",
        )
        client.force_login(mailbox.owner)
        page = client.get(f"/mailboxes/{mailbox.pk}/").content.decode()
        assert "Needs attention" in page and "Login refused: bad password." in page
        assert f"/mailboxes/{mailbox.pk}/resume/" in page
        answer = client.post(f"/mailboxes/{mailbox.pk}/resume/")
        assert answer.status_code == 302
        mailbox.refresh_from_db()
        assert mailbox.health == Mailbox.Health.FAILING
        assert (
            "Needs attention"
            not in client.get(f"/mailboxes/{mailbox.pk}/").content.decode()
        )

    def test_a_working_mailbox_shows_no_attention_line(self, client):
        mailbox = _mailbox()
        client.force_login(mailbox.owner)
        page = client.get(f"/mailboxes/{mailbox.pk}/").content.decode()
        assert "Needs attention" not in page and "/resume/" not in page

    def test_someone_else_may_not_resume(self, client):
        mailbox = _mailbox(health=Mailbox.Health.PAUSED)
        client.force_login(make_user())
        assert client.post(f"/mailboxes/{mailbox.pk}/resume/").status_code == 404
        mailbox.refresh_from_db()
        assert mailbox.health == Mailbox.Health.PAUSED


class AlertRetryTests:
    def test_a_refused_mail_retries_the_mail_alone(self, settings, monkeypatch):
        """The webhook is queued once; the retry (webhook=False) only mails."""
        settings.FETCH_WEBHOOK_URL = "http://127.0.0.1:9/hook"
        settings.FETCH_WEBHOOK_SECRET = "s"
        hooks: list[str] = []
        monkeypatch.setattr(tasks.post_webhook, "delay", hooks.append)

        def refuse(*args, **kwargs):
            raise ConnectionRefusedError("mail server down")

        monkeypatch.setattr(services.alerts, "send_mail", refuse)
        mailbox = _mailbox()
        with pytest.raises(services.AlertMailFailed):
            services.alert_send(mailbox_id=mailbox.pk, event="failing", reason="x")
        assert len(hooks) == 1
        retried: list[dict] = []

        def retry(**kwargs):
            retried.append(kwargs)
            return RuntimeError("retry")

        monkeypatch.setattr(tasks.send_alert, "retry", retry)
        with pytest.raises(RuntimeError):
            tasks.send_alert(mailbox.pk, "failing", "x")
        assert retried[0]["kwargs"] == {"webhook": False}
        assert len(hooks) == 2  # this attempt queued it; the retry will not
        monkeypatch.undo()
        settings.FETCH_WEBHOOK_URL = "http://127.0.0.1:9/hook"
        monkeypatch.setattr(tasks.post_webhook, "delay", hooks.append)
        assert "mailed 1" in services.alert_send(
            mailbox_id=mailbox.pk, event="failing", reason="x", webhook=False
        )
        assert len(hooks) == 2
        assert len(mail.outbox) == 1
