"""A real poll against Dovecot, seen by an operator: the counters on /metrics move
and the worker's log is one JSON object per line, without the password.

Runs on PostgreSQL and on SQLite.
"""

from __future__ import annotations

import io
import json
import logging

import pytest

from fetchweb.logformat import JsonFormatter
from retrieval import services
from tests.factories import make_mailbox, make_user
from tests.monitoring.scrape import scrape, value

pytestmark = [pytest.mark.live, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _single_process(settings):
    settings.PROMETHEUS_MULTIPROC_DIR = ""
    settings.REDIS_URL = ""


@pytest.fixture
def json_log():
    """The root logger's records, formatted as the workers write them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # the most a deployment could show
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def _message(n: int) -> bytes:
    return (
        f"From: s{n}@example.net\r\nTo: alice@example.org\r\nSubject: {n}\r\n"
        f"Message-ID: <{n}.observe@example.net>\r\n\r\nbody {n}\r\n"
    ).encode()


def test_a_real_poll_moves_the_counters_and_logs_json_lines_without_secrets(
    client, dovecot, mailuser, smtp_listener, json_log
):
    originals = [_message(n) for n in range(3)]
    for raw in originals:
        dovecot.put(mailuser.name, raw)
    mailbox = make_mailbox(
        make_user(superuser=True),
        password=mailuser.password,
        protocol="pop3",
        host=dovecot.host,
        port=dovecot.pop3s_port,
        tls_mode="implicit",
        ca_file=dovecot.ca_file,
        username=mailuser.name,
        delivery_host="127.0.0.1",
        delivery_port=smtp_listener.port,
        recipient="alice@example.org",
        timeout=10,
    )
    before = scrape(client)

    summary = services.mailbox_poll(mailbox_id=mailbox.pk)
    assert summary.outcome == "success", summary
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("fetchweb_polls_total", outcome="success", protocol="pop3") == 1
    assert delta("fetchweb_messages_delivered_total", protocol="pop3") == 3
    assert delta("fetchweb_delivered_bytes_total", protocol="pop3") == sum(
        len(m) for m in originals
    )
    assert delta("fetchweb_poll_duration_seconds_count", protocol="pop3") == 1
    assert delta("fetchweb_listener_refusals_total") == 0

    text = json_log.getvalue()
    assert mailuser.password not in text
    lines = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    polls = [r for r in lines if r.get("event") == "poll"]
    deliveries = [r for r in lines if r.get("event") == "delivery"]
    assert len(polls) == 1
    poll = polls[0]
    assert poll["mailbox_id"] == mailbox.pk
    assert poll["run_id"] == summary.run_id
    assert poll["outcome"] == "success"
    assert poll["exit_code"] == 0
    assert poll["delivered"] == poll["deleted"] == poll["fetched"] == 3
    assert poll["duration"] >= 0
    assert {"time", "level", "logger", "message"} <= set(poll)
    assert len(deliveries) == 3
    assert {d["run_id"] for d in deliveries} == {summary.run_id}
    assert all(d["status"] == "delivered" and d["deleted"] for d in deliveries)
    # What the wire said (greeting, transcript) is in the PollRun, not in the log.
    assert not any("USER " in line or "PASS " in line for line in text.splitlines())
