"""The stored mailbox, polled through the service, against a real Dovecot.

These run twice in `make test`: on PostgreSQL and on SQLite.
"""

from __future__ import annotations

import email
import io

import pytest
from django.core.management import call_command
from django.db import connection

from retrieval import services
from retrieval.models import Mailbox, MessageResult, PollRun, SeenMessage
from tests.factories import make_mailbox, make_user

pytestmark = [pytest.mark.live, pytest.mark.django_db]


def _message(n: int) -> bytes:
    return (
        f"From: sender{n}@example.net\r\n"
        f"To: alice@example.org\r\n"
        f"Subject: message {n}\r\n"
        f"Message-ID: <m{n}.service@example.net>\r\n"
        "\r\n"
        f"Body of message {n}.\r\n"
        ".a line that starts with a dot\r\n"
        "caf\xc3\xa9 8-bit bytes\r\n"
    ).encode("latin-1")


def _strip_trace(raw: bytes) -> bytes:
    """The delivered message minus the Received: header we prepend."""
    head, _, rest = raw.partition(b"\r\n")
    assert head.startswith(b"Received:"), raw[:200]
    while rest[:1] in (b" ", b"\t"):  # folded continuation lines of our header
        _, _, rest = rest.partition(b"\r\n")
    return rest


@pytest.fixture
def superuser(settings):
    return make_user("root@example.org", superuser=True)


def _mailbox(dovecot, mailuser, smtp_listener, owner, **fields) -> Mailbox:
    values = {
        "protocol": "imap",
        "host": dovecot.host,
        "port": dovecot.imaps_port,
        "tls_mode": "implicit",
        "ca_file": dovecot.ca_file,
        "username": mailuser.name,
        "delivery_host": "127.0.0.1",
        "delivery_port": smtp_listener.port,
        "recipient": "alice@example.org",
        "timeout": 10,
    }
    values.update(fields)
    return make_mailbox(owner, password=mailuser.password, **values)


PORTS = {
    ("pop3", "implicit"): "pop3s_port",
    ("pop3", "starttls"): "pop3_port",
    ("imap", "implicit"): "imaps_port",
    ("imap", "starttls"): "imap_port",
}


class ServicePollTests:
    @pytest.mark.parametrize(("protocol", "tls_mode"), sorted(PORTS))
    def test_it_delivers_every_message_byte_for_byte_and_empties_the_mailbox(
        self, dovecot, mailuser, smtp_listener, superuser, protocol, tls_mode
    ):
        originals = [_message(n) for n in range(5)]
        for raw in originals:
            dovecot.put(mailuser.name, raw)
        mailbox = _mailbox(
            dovecot,
            mailuser,
            smtp_listener,
            superuser,
            protocol=protocol,
            tls_mode=tls_mode,
            port=getattr(dovecot, PORTS[(protocol, tls_mode)]),
        )

        summary = services.mailbox_poll(mailbox_id=mailbox.pk)

        run = PollRun.objects.get(pk=summary.run_id)
        assert run.outcome == PollRun.Outcome.SUCCESS, run.error
        assert run.exit_code == 0
        assert run.delivered == run.deleted == 5
        assert run.greeting
        assert mailuser.password not in run.transcript
        assert "********" in run.transcript
        delivered = sorted(_strip_trace(m.data) for m in smtp_listener.messages)
        assert delivered == sorted(originals)
        assert all(m.rcpt_tos == ["alice@example.org"] for m in smtp_listener.messages)
        assert dovecot.messages(mailuser.name) == []
        results = MessageResult.objects.filter(run=run)
        assert {r.message_id for r in results} == {
            f"<m{n}.service@example.net>" for n in range(5)
        }
        assert all(r.status == "delivered" and r.deleted for r in results)
        assert all(r.listener_reply.startswith("250") for r in results)

    def test_with_keep_a_second_poll_delivers_nothing(
        self, dovecot, mailuser, smtp_listener, superuser
    ):
        for n in range(3):
            dovecot.put(mailuser.name, _message(n))
        mailbox = _mailbox(dovecot, mailuser, smtp_listener, superuser, keep=True)

        first = services.mailbox_poll(mailbox_id=mailbox.pk)
        second = services.mailbox_poll(mailbox_id=mailbox.pk)

        assert first.outcome == "success" and first.delivered == 3
        assert second.outcome == "nomail" and second.delivered == 0
        assert second.exit_code == 1
        assert len(smtp_listener.messages) == 3
        assert len(dovecot.messages(mailuser.name)) == 3
        assert SeenMessage.objects.filter(mailbox=mailbox).count() == 3

    def test_a_refusing_listener_keeps_every_message(
        self, dovecot, mailuser, smtp_listener, superuser
    ):
        for n in range(2):
            dovecot.put(mailuser.name, _message(n))
        smtp_listener.fail_at("DATA_END", 451)  # "try again later" after the dot
        mailbox = _mailbox(dovecot, mailuser, smtp_listener, superuser)

        summary = services.mailbox_poll(mailbox_id=mailbox.pk)

        run = PollRun.objects.get(pk=summary.run_id)
        assert run.delivered == 0 and run.deleted == 0
        assert len(dovecot.messages(mailuser.name)) == 2
        assert all(r.status == "deferred" for r in run.messages.all())
        assert all(r.listener_reply.startswith("451") for r in run.messages.all())
        assert SeenMessage.objects.filter(mailbox=mailbox).count() == 0

    def test_a_wrong_password_is_recorded_in_plain_words(
        self, dovecot, mailuser, smtp_listener, superuser
    ):
        dovecot.put(mailuser.name, _message(1))
        mailbox = _mailbox(dovecot, mailuser, smtp_listener, superuser)
        mailbox.set_password("not-the-password")
        mailbox.save()

        summary = services.mailbox_poll(mailbox_id=mailbox.pk)

        run = PollRun.objects.get(pk=summary.run_id)
        assert run.exit_code == 3
        assert "password" in run.error.lower()
        assert "not-the-password" not in run.transcript + run.error
        assert len(dovecot.messages(mailuser.name)) == 1

    def test_bad_hosts_are_recorded_and_the_next_mailbox_is_still_polled(
        self, dovecot, mailuser, smtp_listener, superuser, unused_port
    ):
        dovecot.put(mailuser.name, _message(1))
        unresolvable = _mailbox(
            dovecot, mailuser, smtp_listener, superuser, host="no-such-host.invalid"
        )
        closed = _mailbox(
            dovecot,
            mailuser,
            smtp_listener,
            superuser,
            host="127.0.0.1",
            port=unused_port,
        )
        good = _mailbox(dovecot, mailuser, smtp_listener, superuser)

        results = [
            services.mailbox_poll(mailbox_id=m.pk) for m in (unresolvable, closed, good)
        ]

        assert results[0].exit_code == 11 and "resolve" in results[0].error.lower()
        assert results[1].exit_code == 2 and "refused" in results[1].error.lower()
        assert results[2].outcome == "success" and results[2].delivered == 1

    def test_a_certificate_that_does_not_verify_stops_before_login(
        self, dovecot, mailuser, smtp_listener, superuser
    ):
        dovecot.put(mailuser.name, _message(1))
        mailbox = _mailbox(dovecot, mailuser, smtp_listener, superuser, ca_file="")

        summary = services.mailbox_poll(mailbox_id=mailbox.pk)

        run = PollRun.objects.get(pk=summary.run_id)
        assert run.exit_code == 2
        assert "certificate" in run.error.lower()
        assert "LOGIN" not in run.transcript and "AUTHENTICATE" not in run.transcript
        assert len(dovecot.messages(mailuser.name)) == 1

    def test_the_password_is_nowhere_in_the_database_but_its_column(
        self, dovecot, mailuser, smtp_listener, superuser
    ):
        dovecot.put(mailuser.name, _message(1))
        mailbox = _mailbox(dovecot, mailuser, smtp_listener, superuser)
        services.mailbox_poll(mailbox_id=mailbox.pk)
        with connection.cursor() as cursor:
            for table in connection.introspection.table_names():
                cursor.execute(f'SELECT * FROM "{table}"')
                for row in cursor.fetchall():
                    assert mailuser.password not in " ".join(map(str, row)), table

    def test_manage_py_poll_runs_it_in_the_foreground(
        self, dovecot, mailuser, smtp_listener, superuser, capsys
    ):
        dovecot.put(mailuser.name, _message(1))
        mailbox = _mailbox(dovecot, mailuser, smtp_listener, superuser)
        out = io.StringIO()
        call_command("poll", str(mailbox.pk), verbosity=2, stdout=out)
        printed = capsys.readouterr().out
        assert "1 delivered" in out.getvalue()
        assert "S: " in printed and "C: " in printed  # the transcript, with -v 2
        assert mailuser.password not in printed
        assert PollRun.objects.get(mailbox=mailbox).trigger == "command"
        assert email.message_from_bytes(smtp_listener.messages[0].data)["Subject"]
