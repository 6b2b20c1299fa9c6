"""The IDLE push process against the suite's real Dovecot: mail delivered by LMTP
while the mailbox is held in IDLE reaches the listener through a push poll,
without any scheduled poll."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import concurrent.futures
import smtplib
import ssl

import pytest

from retrieval import tasks
from retrieval.models import Mailbox, PollRun
from retrieval.push.client import TLS_READ_BUFFER, use_small_tls_buffers
from retrieval.push.supervisor import Supervisor
from tests.factories import make_mailbox, make_user
from tests.push.support import WAIT, Running, wait_until

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _not_on_sqlite_memory():
    # The test database on SQLite is in memory with a shared cache, where a table
    # another thread's connection reads is locked (SQLITE_LOCKED, not retried by
    # the busy timeout): the poll's thread then fails at random. A SQLite file, as
    # in production, waits instead; the fake-server tests (tests/push) run on both.
    from django.db import connection

    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        pytest.skip("needs concurrent writers: PostgreSQL (or a SQLite file)")


@pytest.fixture(autouse=True)
def _memory_cache(settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "throttle": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }


@pytest.fixture(autouse=True)
def _small_tls_buffers(monkeypatch):
    """As in the IDLE process (manage.py idle); put back after each test."""
    monkeypatch.setattr(
        asyncio.sslproto.SSLProtocol, "max_size", asyncio.sslproto.SSLProtocol.max_size
    )
    use_small_tls_buffers()


def test_the_idle_process_reads_tls_into_small_buffers(dovecot):
    async def buffer_of_a_session() -> int:
        context = ssl.create_default_context(cafile=dovecot.ca_file)
        reader, writer = await asyncio.open_connection(
            dovecot.host, dovecot.imaps_port, ssl=context, server_hostname="localhost"
        )
        try:
            assert (await reader.readline()).startswith(b"* OK")
            protocol = writer.transport._ssl_protocol  # type: ignore[attr-defined]
            return len(protocol._ssl_buffer)
        finally:
            writer.close()

    # In a thread of its own, whatever this thread's event loop is doing.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        size = pool.submit(asyncio.run, buffer_of_a_session()).result()
    assert size == TLS_READ_BUFFER


def _deliver(dovecot, mailuser, n: int) -> bytes:
    raw = (
        f"From: sender@example.net\r\nTo: {mailuser.address}\r\n"
        f"Subject: pushed {n}\r\nMessage-ID: <push{n}.idle@example.net>\r\n\r\n"
        f"Body {n}.\r\n"
    ).encode()
    with smtplib.LMTP(dovecot.host, dovecot.lmtp_port, timeout=WAIT) as lmtp:
        lmtp.sendmail("sender@example.net", [mailuser.address], raw)
    return raw


@pytest.mark.parametrize("tls_mode", ["implicit", "starttls"])
def test_new_mail_is_fetched_by_a_push_poll(
    dovecot, mailuser, smtp_listener, monkeypatch, tls_mode
):
    """The real path from EXISTS to the listener: services.mailbox_push_request
    queues the task with trigger "push" (run here in place of the broker)."""
    queued = []

    def delay(*args):
        queued.append(args)
        tasks.poll_mailbox.apply(args)

    monkeypatch.setattr(tasks.poll_mailbox, "delay", delay)
    owner = make_user("root@example.org", superuser=True)
    mailbox = make_mailbox(
        owner,
        password=mailuser.password,
        protocol="imap",
        host=dovecot.host,
        port=dovecot.imaps_port if tls_mode == "implicit" else dovecot.imap_port,
        tls_mode=tls_mode,
        ca_file=dovecot.ca_file,
        username=mailuser.name,
        delivery_host="127.0.0.1",
        delivery_port=smtp_listener.port,
        recipient="alice@example.org",
        timeout=10,
        options={"user": {"idle": True}},
    )
    with Running(Supervisor(interval=0.5, backoff=(0.2, 2.0))) as running:
        wait_until(lambda: running.idling() == {mailbox.pk})
        raw = _deliver(dovecot, mailuser, 1)
        received = smtp_listener.wait_for(1, timeout=WAIT)
        assert received[0].data.endswith(raw)
        assert queued and all(args == (mailbox.pk, "push") for args in queued)
        runs = PollRun.objects.filter(mailbox=mailbox)
        assert {r.trigger for r in runs} == {PollRun.Trigger.PUSH}
        assert dovecot.messages(mailuser.name) == []  # fetched and deleted
        # Still held after the poll, and a second message comes the same way.
        wait_until(lambda: running.idling() == {mailbox.pk})
        _deliver(dovecot, mailuser, 2)
        smtp_listener.wait_for(2, timeout=WAIT)
        # Each message by a push poll of its own: a poll never waits in IDLE.
        wait_until(lambda: runs.exclude(outcome="running").count() >= 2)
        assert {r.trigger for r in runs} == {PollRun.Trigger.PUSH}
        # One poll a message: Dovecot's EXISTS and RECENT for it are one piece of news.
        assert len(queued) == 2
        # Disabled: dropped within a few reconcile rounds.
        Mailbox.objects.filter(pk=mailbox.pk).update(enabled=False)
        wait_until(lambda: running.state(mailbox.pk) is None)
        assert running.idling() == set()
    assert len(smtp_listener.messages) == 2
