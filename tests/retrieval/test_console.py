"""The console (issue 13 items 1 and 2): the dashboard at / and the mailbox list.

Three domains of people: alice (user, dom1), admin1 (administers dom1), bob
(user, dom2), root (superuser). Each mailbox and run carries markers of its
owner; a page shown to someone must hold their markers and never another's.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import QuerySet
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from retrieval import console, services
from retrieval.engine.report import ExitCode, MessageOutcome, MessageStatus, PollReport
from retrieval.models import (
    Mailbox,
    MailboxDayStat,
    MailboxStat,
    MessageResult,
    PollRun,
)
from retrieval.services import stats
from tests.factories import make_domain, make_mailbox, make_user
from tests.support.ports import free_port

pytestmark = pytest.mark.django_db

LIST = reverse("retrieval:mailbox-list")
BULK = reverse("retrieval:mailbox-bulk")
HOME = reverse("home")


def _recorded() -> None:
    """Runs written here directly: leave their mailboxes as recording them does
    (each one's last finished run on its row, services/latest_run.py)."""
    services.latest_run_refresh(mailboxes=Mailbox.objects.all())


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


class World:
    def __init__(self) -> None:
        self.admin1 = make_user("admin1@one.example")
        self.admin2 = make_user("admin2@two.example")
        self.dom1 = make_domain("one.example", admins=(self.admin1,))
        self.dom2 = make_domain("two.example", admins=(self.admin2,))
        self.alice = make_user("alice@one.example", domain=self.dom1)
        self.bob = make_user("bob@two.example", domain=self.dom2)
        self.root = make_user("root@operator.example", superuser=True)
        self.boxes = {
            "alice": self._box(self.alice, "alice", self.dom1),
            "bob": self._box(self.bob, "bob", self.dom2),
            "root": self._box(self.root, "root", None),
            # A superuser's mailbox in dom1: admin1 may look, not change.
            "sudom1": self._box(self.root, "sudom1", self.dom1),
        }

    def _box(self, owner, tag, domain) -> Mailbox:
        mailbox = make_mailbox(
            owner,
            name=f"MB-{tag}",
            host=f"imap.{tag}-marker.example",
            username=f"remote-{tag}",
            domain=domain,
        )
        PollRun.objects.create(
            mailbox=mailbox,
            outcome=PollRun.Outcome.ERROR,
            exit_code=ExitCode.AUTHFAIL,
            finished_at=timezone.now(),
            error=f"ERROR-{tag}-marker",
        )
        _recorded()
        return mailbox

    def markers(self, tag: str) -> list[str]:
        return [f"MB-{tag}", f"imap.{tag}-marker.example", f"ERROR-{tag}-marker"]


@pytest.fixture
def world() -> World:
    return World()


# Who sees whose mailboxes (retrieval.selectors.mailboxes_visible_to).
SEES = {
    "alice": {"alice"},
    "bob": {"bob"},
    "admin1": {"alice", "sudom1"},
    "admin2": {"bob"},
    "root": {"alice", "bob", "root", "sudom1"},
}
# Whose mailboxes they may change (a superuser's is read-only to others).
CHANGES = {
    "alice": {"alice"},
    "bob": {"bob"},
    "admin1": {"alice"},
    "admin2": {"bob"},
    "root": {"alice", "bob", "root", "sudom1"},
}


def _client(world: World, role: str) -> Client:
    client = Client()
    client.force_login(getattr(world, role))
    return client


# --- scope ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", sorted(SEES))
@pytest.mark.parametrize("url", [HOME, LIST, reverse("dashboard-running")])
def test_each_role_sees_its_scope_only(world, role, url):
    for box in world.boxes.values():  # a running poll each, for the live panel
        PollRun.objects.create(mailbox=box)
    page = _client(world, role).get(url).content.decode()
    for tag in world.boxes:
        shown = [m for m in world.markers(tag) if m in page]
        if tag in SEES[role]:
            assert f"MB-{tag}" in page, (role, tag)
        else:
            assert shown == [], (role, tag, shown)


@pytest.mark.parametrize("role", sorted(SEES))
def test_the_state_counts_are_the_scope_s(world, role):
    """Every mailbox in the world has failed once; one seen is then disabled, one
    paused by the scheduler (needs attention) and one (of root's) has succeeded
    since."""
    Mailbox.objects.filter(pk=world.boxes["alice"].pk).update(enabled=False)
    Mailbox.objects.filter(pk=world.boxes["bob"].pk).update(
        health=Mailbox.Health.PAUSED
    )
    PollRun.objects.create(
        mailbox=world.boxes["root"],
        outcome=PollRun.Outcome.NOMAIL,
        exit_code=1,
        finished_at=timezone.now(),
    )
    _recorded()
    make_mailbox(world.bob, name="MB-never", domain=world.dom2)
    counts = console.state_counts(console.scope(getattr(world, role)))
    seen = SEES[role] | ({"never"} if role in ("bob", "admin2", "root") else set())
    expected = {
        "disabled": int("alice" in seen),
        "attention": int("bob" in seen),
        "ok": int("root" in seen),
        "never": int("never" in seen),
    }
    expected["failing"] = len(seen) - sum(expected.values())
    assert counts == expected
    page = _client(world, role).get(HOME).content.decode()
    for state, n in expected.items():
        assert re.search(
            rf'data-state="{state}">.*?<span class="count">{n}</span>', page
        ), (state, n)


def test_an_owner_who_also_administers_the_domain_is_counted_once(world):
    world.dom1.admins.add(world.alice)
    world.dom1.admins.add(make_user("second-admin@one.example"))
    counts = console.state_counts(console.scope(world.alice))
    assert sum(counts.values()) == 2  # her own and root's in dom1, once each


def test_only_superusers_get_the_per_domain_table(world):
    Mailbox.objects.filter(pk=world.boxes["bob"].pk).update(
        health=Mailbox.Health.PAUSED
    )
    page = _client(world, "root").get(HOME).content.decode()
    assert "Per domain" in page
    # A cell under each heading: two.example's one mailbox needs attention.
    table = page[page.index('<table class="domains">') :]
    headings = re.findall(r"<th[^>]*>([^<]+)</th>", table[: table.index("</thead>")])
    row = re.search(r"<tr><td>two\.example</td>(.*?)</tr>", table).group(1)
    cells = re.findall(r'<td class="num">(\d+)</td>', row)
    assert len(cells) == len(headings) - 1
    assert dict(zip(headings[1:], cells, strict=True))["Needs attention"] == "1"
    for role in ("alice", "admin1"):
        page = _client(world, role).get(HOME).content.decode()
        assert "Per domain" not in page
        assert "two.example" not in page


def test_the_last_errors_say_what_went_wrong_and_link_to_the_run(world):
    run = world.boxes["alice"].runs.get()
    page = _client(world, "alice").get(HOME).content.decode()
    assert "The server refused the user name or password" in page
    assert reverse("retrieval:run-detail", args=[run.mailbox_id, run.pk]) in page


def test_the_running_panel_is_refreshed_by_htmx(world):
    page = _client(world, "alice").get(HOME).content.decode()
    assert f'hx-get="{reverse("dashboard-running")}"' in page
    assert re.search(r'hx-trigger="every \d+s"', page)
    assert "/static/js/htmx.min.js" in page
    fragment = _client(world, "alice").get(reverse("dashboard-running"))
    assert "No poll is running" in fragment.content.decode()
    assert fragment["Cache-Control"] == "no-store"
    PollRun.objects.create(mailbox=world.boxes["alice"])
    fragment = _client(world, "alice").get(reverse("dashboard-running"))
    assert "MB-alice" in fragment.content.decode()
    assert "<html" not in fragment.content.decode()


# --- the counters -------------------------------------------------------------------------


def _delivering(count: int, size: int):
    def engine_poll(spec, *, ledger, transcript, **_options):
        return PollReport(
            exit_code=ExitCode.SUCCESS,
            messages=[
                MessageOutcome(
                    folder="INBOX",
                    uid=str(i),
                    size=size,
                    status=MessageStatus.DELIVERED,
                    deleted=True,
                )
                for i in range(count)
            ],
            bytes_fetched=count * size,
        )

    return engine_poll


def test_recording_a_run_moves_the_counters(world, monkeypatch):
    """Through the real service: mailbox_poll records the run, and with it the
    hour's counters; a real failure (nothing listens on the port) counts as an
    error. No scan of the runs: deleting them leaves the figures."""
    mailbox = make_mailbox(
        world.root, name="MB-counted", host="127.0.0.1", port=free_port(), password="pw"
    )
    assert not MailboxStat.objects.filter(mailbox=mailbox).exists()

    monkeypatch.setattr(services.polls, "engine_poll", _delivering(3, 100))
    services.mailbox_poll(mailbox_id=mailbox.pk)
    row = MailboxStat.objects.get(mailbox=mailbox)
    assert (row.polls, row.errors, row.messages, row.bytes) == (1, 0, 3, 300)
    assert row.hour == stats.hour_of(timezone.now())

    monkeypatch.undo()  # the real engine: connection refused on loopback
    summary = services.mailbox_poll(mailbox_id=mailbox.pk)
    assert summary.outcome == PollRun.Outcome.ERROR, summary
    row.refresh_from_db()
    assert (row.polls, row.errors, row.messages, row.bytes) == (2, 1, 3, 300)

    PollRun.objects.filter(mailbox=mailbox).delete()
    buckets = console.traffic(
        console.scope(world.root), span="24h", zone=console.person_zone(world.root)
    )
    assert sum(b.polls for b in buckets) == 2
    assert sum(b.messages for b in buckets) == 3
    assert sum(b.errors for b in buckets) == 1
    page = _client(world, "root").get(HOME).content.decode()
    assert "2 polls, 3 messages delivered" in page and "1 failed polls" in page


def test_the_counters_of_a_mailbox_stay_out_of_other_scopes(world, monkeypatch):
    monkeypatch.setattr(services.polls, "engine_poll", _delivering(7, 10))
    bob = world.boxes["bob"]
    bob.host = "1.1.1.1"  # a public literal: the policy passes it without DNS
    bob.set_password("pw")
    bob.save()
    summary = services.mailbox_poll(mailbox_id=bob.pk)
    assert summary.outcome == PollRun.Outcome.SUCCESS, summary
    for role, polls in (("alice", 0), ("admin1", 0), ("bob", 1), ("admin2", 1)):
        buckets = console.traffic(
            console.scope(getattr(world, role)), span="7d", zone=UTC
        )
        assert sum(b.polls for b in buckets) == polls, role
        assert sum(b.messages for b in buckets) == 7 * polls, role


def test_two_workers_racing_for_the_hour_s_first_row_both_count(world, monkeypatch):
    """The first run of an hour inserts the row; if another worker inserted it
    between our UPDATE (0 rows) and our INSERT, the unique constraint refuses
    ours and we add to theirs."""
    mailbox = world.boxes["alice"]
    moment = timezone.now()
    real_update = QuerySet.update
    raced: list[bool] = []

    def update(self, **kwargs):
        if self.model is MailboxStat and not raced:
            raced.append(True)
            MailboxStat.objects.create(
                mailbox=mailbox, hour=stats.hour_of(moment), polls=5, messages=5
            )
            return 0
        return real_update(self, **kwargs)

    monkeypatch.setattr(QuerySet, "update", update)
    stats.stats_record(mailbox_id=mailbox.pk, moment=moment, messages=2, errors=1)
    row = MailboxStat.objects.get(mailbox=mailbox)
    assert raced and (row.polls, row.messages, row.errors) == (6, 7, 1)


def test_hours_and_days_buckets(world):
    """24 hourly bars; 7 and 30 daily ones, cut at midnight in the zone shown."""
    mailbox = world.boxes["alice"]
    now = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
    stats.stats_record(mailbox_id=mailbox.pk, moment=now, messages=4)
    stats.stats_record(mailbox_id=mailbox.pk, moment=now - timedelta(hours=2), errors=1)
    stats.stats_record(
        mailbox_id=mailbox.pk, moment=now - timedelta(days=3), messages=9
    )
    stats.stats_record(
        mailbox_id=mailbox.pk, moment=now - timedelta(days=40), messages=1
    )
    mine = console.scope(world.alice)
    hours = console.traffic(mine, span="24h", zone=UTC, now=now)
    assert len(hours) == 24
    assert (hours[-1].label, hours[-1].messages) == ("12:00", 4)
    assert (hours[-3].label, hours[-3].errors) == ("10:00", 1)
    week = console.traffic(mine, span="7d", zone=UTC, now=now)
    assert [b.messages for b in week] == [0, 0, 0, 9, 0, 0, 4]
    month = console.traffic(mine, span="30d", zone=UTC, now=now)
    assert len(month) == 30 and sum(b.messages for b in month) == 13
    assert sum(b.polls for b in month) == 3
    chart = console.chart(week, "messages", "Messages", "bar-messages")
    heights = [bar.height for bar in chart.bars]
    assert heights[3] > heights[6] > 0 == heights[0]
    assert chart.bars[3].title.endswith(": 9")


def test_the_chart_is_server_rendered_svg(world):
    stats.stats_record(
        mailbox_id=world.boxes["alice"].pk, moment=timezone.now(), messages=5
    )
    for span, bars in (("24h", 24), ("7d", 7), ("30d", 30)):
        page = _client(world, "alice").get(HOME, {"range": span}).content.decode()
        assert page.count('<rect class="bar-messages"') == bars
        assert page.count('<rect class="bar-errors"') == bars
    assert "Messages delivered: 5" in page


# --- the list -----------------------------------------------------------------------------


def _many(owner, count: int, domain=None, **fields) -> list[Mailbox]:
    return Mailbox.objects.bulk_create(
        Mailbox(
            owner=owner,
            domain=domain,
            name=f"bulk-{owner.pk}-{i:03d}",
            host=f"h{i:03d}.example",
            username=f"u{i:03d}",
            **fields,
        )
        for i in range(count)
    )


def _names(page: str) -> list[str]:
    return re.findall(
        r'data-mailbox="\d+">\s*<td>.*?</td>\s*<td><a href="[^"]+">([^<]+)</a>',
        page,
        re.S,
    )


def test_fifty_per_page(world):
    _many(world.alice, 60, world.dom1)
    client = _client(world, "alice")
    first = client.get(LIST).content.decode()
    assert len(_names(first)) == 50 and "Page 1 of 2" in first
    second = client.get(LIST, {"page": 2}).content.decode()
    assert len(_names(second)) == 11  # 60 + MB-alice
    assert not set(_names(first)) & set(_names(second))


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("MB-ali", ["MB-alice"]),  # name
        ("alice-marker", ["MB-alice"]),  # host
        ("remote-sudom1", ["MB-sudom1"]),  # user name
        ("bob@two", ["MB-bob"]),  # owner's email
        ("root@operator", ["MB-root", "MB-sudom1"]),
    ],
)
def test_search(world, q, expected):
    page = _client(world, "root").get(LIST, {"q": q}).content.decode()
    assert _names(page) == expected


def test_search_stays_in_scope(world):
    page = _client(world, "alice").get(LIST, {"q": "bob"}).content.decode()
    assert _names(page) == [] and "No mailbox matches" in page


def test_filters(world):
    client = _client(world, "root")
    Mailbox.objects.filter(pk=world.boxes["bob"].pk).update(
        enabled=False, protocol=Mailbox.Protocol.POP3
    )
    by = lambda **params: _names(client.get(LIST, params).content.decode())  # noqa: E731
    assert by(domain=world.dom1.pk) == ["MB-alice", "MB-sudom1"]
    assert by(state="disabled") == ["MB-bob"]
    assert by(state="failing") == ["MB-alice", "MB-root", "MB-sudom1"]
    assert by(protocol="pop3") == ["MB-bob"]
    assert by(owner=world.root.pk) == ["MB-root", "MB-sudom1"]
    assert by(owner=world.root.pk, domain=world.dom1.pk) == ["MB-sudom1"]
    # An admin's owner filter naming someone out of scope finds nothing of theirs.
    assert (
        _names(
            _client(world, "admin1").get(LIST, {"owner": world.bob.pk}).content.decode()
        )
        == []
    )


def test_owner_and_domain_filters_list_few_choices_and_match_text_beyond(
    world, monkeypatch
):
    """A select while there are at most CHOICES_SHOWN owners or domains in sight
    (only theirs), a text box matching part of the address or name beyond: a
    superuser's thousands of owners are not a select to render on every page."""
    client = _client(world, "root")
    page = client.get(LIST).content.decode()
    assert '<select name="owner">' in page and '<select name="domain">' in page
    for email in ("alice@one.example", "bob@two.example", "root@operator.example"):
        assert f">{email}</option>" in page
    assert ">admin1@one.example</option>" not in page  # owns no mailbox
    admin = _client(world, "admin1").get(LIST).content.decode()
    assert ">bob@two.example</option>" not in admin

    monkeypatch.setattr(console, "CHOICES_SHOWN", 1)
    page = client.get(LIST).content.decode()
    assert '<select name="owner">' not in page and '<select name="domain">' not in page
    assert '<input type="search" name="owner" value=""' in page
    assert '<input type="search" name="domain" value=""' in page
    by = lambda **params: _names(client.get(LIST, params).content.decode())  # noqa: E731
    assert by(owner="ROOT@oper") == ["MB-root", "MB-sudom1"]
    assert by(owner="bob") == ["MB-bob"]
    assert by(domain="one.ex") == ["MB-alice", "MB-sudom1"]
    assert by(domain="one.ex", owner="root") == ["MB-sudom1"]
    assert by(owner=world.root.pk) == ["MB-root", "MB-sudom1"]  # an id still works
    # An id chosen by a link shows as the address it stands for.
    page = client.get(LIST, {"owner": world.bob.pk}).content.decode()
    assert 'name="owner" value="bob@two.example"' in page
    # The text stays in scope: an administrator matches nothing of another domain.
    admin = _client(world, "admin1")
    assert _names(admin.get(LIST, {"owner": "bob"}).content.decode()) == []
    assert _names(admin.get(LIST, {"domain": "two"}).content.decode()) == []


def test_each_row_links_to_its_mailbox_and_its_last_poll(world):
    page = _client(world, "root").get(LIST).content.decode()
    for box in world.boxes.values():
        run = box.runs.get()
        detail = reverse("retrieval:mailbox-detail", args=[box.pk])
        assert f'<td><a href="{detail}">{box}</a></td>' in page
        assert (
            f'<a href="{reverse("retrieval:run-detail", args=[box.pk, run.pk])}">'
            in page
        )


def test_sorting(world):
    client = _client(world, "root")
    Mailbox.objects.filter(pk=world.boxes["root"].pk).update(host="aaa.example")
    by_host = _names(client.get(LIST, {"sort": "host"}).content.decode())
    assert by_host[0] == "MB-root"
    assert _names(client.get(LIST, {"sort": "-host"}).content.decode()) == by_host[::-1]
    by_owner = _names(client.get(LIST, {"sort": "owner"}).content.decode())
    assert by_owner == ["MB-alice", "MB-bob", "MB-root", "MB-sudom1"]
    # An unknown column falls back to the name, never to raw SQL.
    assert _names(
        client.get(LIST, {"sort": "password_encrypted"}).content.decode()
    ) == ["MB-alice", "MB-bob", "MB-root", "MB-sudom1"]
    page = client.get(LIST, {"sort": "host", "q": "example"}).content.decode()
    assert "sort=-host" in page and "q=example" in page


def test_last_checked_in_words_with_the_exact_time_and_zone(world, settings):
    settings.TIME_ZONE = "Europe/Paris"
    PollRun.objects.filter(mailbox=world.boxes["alice"]).update(
        finished_at=datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
    )
    _recorded()
    Mailbox.objects.filter(pk=world.boxes["alice"].pk).update(
        next_poll_at=timezone.now() + timedelta(minutes=4, seconds=30)
    )
    page = _client(world, "alice").get(LIST).content.decode()
    assert re.search(
        r'title="2026-01-15 10:00:00 CET \(Europe/Paris\)">[^<]+ ago<', page
    )
    assert re.search(r">in 4\xa0minutes<", page)
    assert "Times in Europe/Paris" in page


def test_state_colour_classes(world):
    page = _client(world, "root").get(LIST).content.decode()
    assert 'class="badge state-failing"' in page
    css = Path(console.__file__).resolve().parents[1] / "static/css/fetchweb.css"
    text = css.read_text()
    for state in console.STATES:
        assert f".badge.state-{state}" in text


# --- bulk actions ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", sorted(CHANGES))
@pytest.mark.parametrize("action", ["pause", "resume", "delete"])
def test_bulk_actions_touch_only_what_the_role_may_change(world, role, action):
    if action == "resume":
        Mailbox.objects.update(enabled=False)
    ids = [str(b.pk) for b in world.boxes.values()] + ["999999", "junk"]
    response = _client(world, role).post(BULK, {"action": action, "ids": ids})
    assert response.status_code == 302 and response["Location"] == LIST
    for tag, box in world.boxes.items():
        changed = tag in CHANGES[role]
        row = Mailbox.objects.filter(pk=box.pk).first()
        if action == "delete":
            assert (row is None) == changed, (role, tag)
        else:
            before = (
                action == "pause"
            )  # all enabled before a pause, none before a resume
            assert row.enabled == ((not before) if changed else before), (role, tag)


@pytest.mark.parametrize("role", sorted(CHANGES))
def test_bulk_poll_queues_only_what_the_role_may_change(
    world, role, monkeypatch, django_capture_on_commit_callbacks
):
    from retrieval import tasks

    queued: list[int] = []
    monkeypatch.setattr(tasks.poll_mailbox, "delay", lambda pk, *a: queued.append(pk))
    ids = [str(b.pk) for b in world.boxes.values()]
    with django_capture_on_commit_callbacks(execute=True):
        _client(world, role).post(BULK, {"action": "poll", "ids": ids})
    assert sorted(queued) == sorted(world.boxes[t].pk for t in CHANGES[role])


def test_bulk_poll_is_rate_limited_like_the_button(world, monkeypatch):
    from retrieval import tasks

    monkeypatch.setattr(tasks.poll_mailbox, "delay", lambda *a: None)
    client = _client(world, "alice")
    ids = [str(world.boxes["alice"].pk)]
    client.post(BULK, {"action": "poll", "ids": ids})
    response = client.post(BULK, {"action": "poll", "ids": ids}, follow=True)
    assert "0 mailbox(es) queued" in response.content.decode()
    assert "a moment ago" in response.content.decode()


def test_bulk_delete_leaves_a_mailbox_being_polled(world):
    box = world.boxes["alice"]
    Mailbox.objects.filter(pk=box.pk).update(
        lease_owner="w", lease_until=timezone.now() + timedelta(minutes=5)
    )
    response = _client(world, "alice").post(
        BULK, {"action": "delete", "ids": [box.pk]}, follow=True
    )
    assert Mailbox.objects.filter(pk=box.pk).exists()
    assert "being polled right now" in response.content.decode()


def test_bulk_refuses_without_csrf_and_on_get(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.alice)
    box = world.boxes["alice"]
    assert client.post(BULK, {"action": "pause", "ids": [box.pk]}).status_code == 403
    assert client.get(BULK).status_code == 405
    assert Mailbox.objects.get(pk=box.pk).enabled
    page = client.get(LIST).content.decode()
    assert 'name="csrfmiddlewaretoken"' in page


def test_bulk_needs_an_action_and_ids_and_goes_back_where_it_was(world):
    client = _client(world, "alice")
    box = world.boxes["alice"]
    response = client.post(BULK, {"action": "explode", "ids": [box.pk]}, follow=True)
    assert "Choose what to do" in response.content.decode()
    response = client.post(BULK, {"action": "pause"}, follow=True)
    assert "Tick at least one" in response.content.decode()
    back = f"{LIST}?q=MB&page=1"
    response = client.post(BULK, {"action": "pause", "ids": [box.pk], "next": back})
    assert response["Location"] == back
    response = client.post(
        BULK, {"action": "resume", "ids": [box.pk], "next": "https://evil.example/"}
    )
    assert response["Location"] == LIST


def test_only_changeable_rows_get_a_checkbox(world):
    page = _client(world, "admin1").get(LIST).content.decode()
    assert f'name="ids" value="{world.boxes["alice"].pk}"' in page
    assert "MB-sudom1" in page
    assert f'name="ids" value="{world.boxes["sudom1"].pk}"' not in page


# --- queries ------------------------------------------------------------------------------


def _populate(world: World, per_owner: int) -> None:
    """``per_owner`` mailboxes each for alice (dom1), bob (dom2) and root, each
    with a finished run, a running one and counters."""
    boxes = (
        _many(world.alice, per_owner, world.dom1)
        + _many(world.bob, per_owner, world.dom2)
        + _many(world.root, per_owner, None)
    )
    now = timezone.now()
    PollRun.objects.bulk_create(
        PollRun(
            mailbox=b,
            outcome=PollRun.Outcome.ERROR if i % 2 else PollRun.Outcome.SUCCESS,
            exit_code=2 if i % 2 else 0,
            finished_at=now,
            error="refused" if i % 2 else "",
        )
        for i, b in enumerate(boxes)
    )
    PollRun.objects.bulk_create(PollRun(mailbox=b) for b in boxes[::3])
    _recorded()
    MailboxStat.objects.bulk_create(
        MailboxStat(mailbox=b, hour=stats.hour_of(now - timedelta(hours=h)), polls=1)
        for b in boxes
        for h in (0, 30)
    )
    MailboxDayStat.objects.bulk_create(
        MailboxDayStat(mailbox=b, day=stats.day_of(now - timedelta(days=d)), polls=1)
        for b in boxes
        for d in (0, 1, 20)
    )


def _count(client: Client, url: str, params: dict[str, str]) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, params)
    assert response.status_code == 200
    return len(queries)


PAGES = [
    (HOME, {}),
    (HOME, {"range": "30d"}),
    (reverse("dashboard-running"), {}),
    (LIST, {}),
    (LIST, {"q": "example", "sort": "-checked", "state": "failing"}),
    (LIST, {"page": "2"}),
]


@pytest.mark.parametrize("role", ["alice", "admin1", "root"])
def test_queries_per_page_do_not_grow_with_the_data(
    world, role, django_assert_max_num_queries
):
    """The same number of queries for 10 mailboxes per owner as for 200."""
    client = _client(world, role)
    _populate(world, 10)
    small = [_count(client, url, params) for url, params in PAGES]
    _populate(world, 190)
    for (url, params), before in zip(PAGES, small, strict=True):
        with django_assert_max_num_queries(before):
            response = client.get(url, params)
        assert response.status_code == 200
    # And a fixed ceiling, whatever the role (session, user, the page's reads).
    for url, params in PAGES:
        with django_assert_max_num_queries(9):
            client.get(url, params)
    big = client.get(LIST).content.decode()
    assert len(_names(big)) == 50


def test_the_per_domain_table_adds_up(world):
    now = timezone.now()
    stats.stats_record(mailbox_id=world.boxes["alice"].pk, moment=now, messages=4)
    stats.stats_record(mailbox_id=world.boxes["sudom1"].pk, moment=now, errors=1)
    stats.stats_record(mailbox_id=world.boxes["bob"].pk, moment=now, messages=6)
    stats.stats_record(
        mailbox_id=world.boxes["bob"].pk, moment=now - timedelta(days=2), messages=50
    )
    rows = {r["name"]: r for r in console.per_domain(span="24h")}
    assert set(rows) == {"one.example", "two.example", "(no domain)"}
    one, two = rows["one.example"], rows["two.example"]
    assert (one["failing"], one["polls"], one["messages"], one["errors"]) == (
        2,
        2,
        4,
        1,
    )
    assert (two["failing"], two["polls"], two["messages"]) == (1, 1, 6)
    assert rows["(no domain)"]["polls"] == 0
    assert console.per_domain(span="7d")[1]["messages"] == 56


def test_a_bulk_pause_is_in_the_audit_log_under_the_person_s_name(world):
    from accounts.models import AuditEvent

    box = world.boxes["alice"]
    _client(world, "admin1").post(BULK, {"action": "pause", "ids": [box.pk]})
    event = AuditEvent.objects.filter(object_id=str(box.pk)).latest("created_at")
    assert event.actor_label == "admin1@one.example"
    assert event.action == AuditEvent.Action.UPDATE and "enabled" in event.summary


def test_resuming_makes_the_mailbox_due_now(world):
    box = world.boxes["alice"]
    Mailbox.objects.filter(pk=box.pk).update(
        enabled=False, next_poll_at=timezone.now() + timedelta(days=1)
    )
    _client(world, "alice").post(BULK, {"action": "resume", "ids": [box.pk]})
    box.refresh_from_db()
    assert box.enabled and box.next_poll_at <= timezone.now()


# Whose mailbox each role opens on the per-mailbox pages.
OPENS = {"alice": "alice", "admin1": "alice", "root": "root"}


def _grow_runs(mailbox: Mailbox, count: int) -> None:
    """``count`` more finished runs of ``mailbox``, each with three messages."""
    now = timezone.now()
    runs = PollRun.objects.bulk_create(
        PollRun(
            mailbox=mailbox,
            outcome=PollRun.Outcome.SUCCESS,
            exit_code=0,
            finished_at=now,
            started_at=now - timedelta(minutes=i),
            delivered=3,
        )
        for i in range(count)
    )
    MessageResult.objects.bulk_create(
        MessageResult(run=run, uid=f"{run.pk}.{k}", status="delivered")
        for run in runs
        for k in range(3)
    )
    _recorded()


def _every_page(world: World, role: str) -> list[tuple[str, dict[str, str]]]:
    """Every console page a role reads: the dashboard in each range, the list
    with each filter, the search, each sort both ways, first, middle and last
    page, and the mailbox's own pages (its polls, oldest first page, a poll,
    the poll status fragment)."""
    box = world.boxes[OPENS[role]]
    run = box.runs.order_by("pk").first()
    assert run is not None
    pages: list[tuple[str, dict[str, str]]] = [
        (HOME, {"range": span}) for span in console.RANGES
    ]
    pages.append((reverse("dashboard-running"), {}))
    pages += [
        (LIST, {}),
        (LIST, {"page": "2"}),
        (LIST, {"page": "6"}),  # the middle page with 600 mailboxes
        (LIST, {"page": "12"}),  # the last one (with 34: the only one)
        (LIST, {"q": "bulk"}),
        (LIST, {"q": "example", "sort": "-checked", "state": "failing"}),
        (LIST, {"domain": str(world.dom1.pk)}),
        (LIST, {"owner": str(box.owner_id)}),
        (LIST, {"protocol": "pop3"}),
    ]
    pages += [(LIST, {"state": state}) for state in console.STATES]
    for key in console.SORTS:
        pages += [(LIST, {"sort": key}), (LIST, {"sort": f"-{key}", "page": "3"})]
    detail = reverse("retrieval:mailbox-detail", args=[box.pk])
    pages += [
        (detail, {}),
        (detail, {"page": "16"}),  # the oldest polls (305 runs, 20 a page)
        (reverse("retrieval:run-detail", args=[box.pk, run.pk]), {}),
        (reverse("retrieval:mailbox-poll-status", args=[box.pk]), {"after": "0"}),
    ]
    return pages


@pytest.mark.parametrize("role", ["alice", "admin1", "root"])
def test_every_console_page_keeps_its_queries_as_the_data_grows(
    world, role, django_assert_max_num_queries
):
    """Each page, each role: no more queries with 200 mailboxes per owner and
    hundreds of polls of the mailbox than with 10 and a few."""
    client = _client(world, role)
    _populate(world, 10)
    _grow_runs(world.boxes[OPENS[role]], 5)
    pages = _every_page(world, role)
    small = [_count(client, url, params) for url, params in pages]
    _populate(world, 190)
    _grow_runs(world.boxes[OPENS[role]], 300)
    for (url, params), before in zip(pages, small, strict=True):
        with django_assert_max_num_queries(before):
            response = client.get(url, params)
        assert response.status_code == 200, (url, params)
