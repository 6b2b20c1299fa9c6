"""Sessions kept between polls against the real Dovecot: the next poll of the
mailbox skips the login and still delivers, deletes and records as usual; the
polls share one connection to the listener (here Dovecot's LMTP)."""

from __future__ import annotations

import re
import secrets

import pytest

from retrieval import services
from retrieval.models import PollRun
from retrieval.services.kept import kept_listeners, kept_sessions, kept_sessions_close
from tests.factories import make_mailbox, make_user
from tests.live.test_service_dovecot import _mailbox
from tests.support.dovecot import MailUser

pytestmark = [pytest.mark.live, pytest.mark.django_db]


def _message(n: int) -> bytes:
    return (
        f"From: sender{n}@example.net\r\nTo: alice@example.org\r\n"
        f"Subject: kept {n}\r\nMessage-ID: <k{n}@example.net>\r\n\r\nbody {n}\r\n"
    ).encode()


def _logins(dovecot, user: str) -> int:
    return len(
        re.findall(rf"imap-login: Info: Login: user=<{user}>", dovecot.log_text())
    )


@pytest.fixture
def keeping(settings):
    settings.FETCH_KEEP_SESSIONS = 300
    settings.FETCH_MAX_SESSIONS_PER_HOST = 0
    yield
    kept_sessions_close()


@pytest.mark.parametrize("keep", [False, True], ids=["delete", "keep"])
def test_the_next_poll_reuses_the_session(
    dovecot, mailuser, smtp_listener, keeping, keep
):
    owner = make_user("root@example.org", superuser=True)
    mailbox = _mailbox(dovecot, mailuser, smtp_listener, owner, keep=keep)
    dovecot.put(mailuser.name, _message(1))
    first = PollRun.objects.get(pk=services.mailbox_poll(mailbox_id=mailbox.pk).run_id)
    dovecot.put(mailuser.name, _message(2))
    second = PollRun.objects.get(pk=services.mailbox_poll(mailbox_id=mailbox.pk).run_id)
    third = PollRun.objects.get(pk=services.mailbox_poll(mailbox_id=mailbox.pk).run_id)

    assert (first.outcome, second.outcome) == ("success", "success"), second.error
    assert third.outcome == "nomail", third.error
    assert first.delivered == second.delivered == 1
    assert [m.data.count(b"Message-ID: <k") for m in smtp_listener.messages] == [1, 1]
    assert len(dovecot.messages(mailuser.name)) == (2 if keep else 0)
    assert _logins(dovecot, mailuser.name) == 1
    assert "reusing the session logged in at" in second.transcript
    assert "(poll 3 on it)" in third.transcript
    assert second.greeting == first.greeting != ""
    assert mailuser.password not in second.transcript
    assert len(kept_sessions()) == 1


def test_a_session_the_server_ended_is_replaced_and_nothing_is_lost(
    dovecot, mailuser, smtp_listener, keeping
):
    owner = make_user("root@example.org", superuser=True)
    mailbox = _mailbox(dovecot, mailuser, smtp_listener, owner)
    services.mailbox_poll(mailbox_id=mailbox.pk)
    dovecot.doveadm("kick", mailuser.name)  # what a restart or autologout does
    dovecot.put(mailuser.name, _message(3))
    run = PollRun.objects.get(pk=services.mailbox_poll(mailbox_id=mailbox.pk).run_id)

    assert run.outcome == "success", run.error
    assert run.delivered == run.deleted == 1
    assert "the kept session is gone; connecting anew" in run.transcript
    assert dovecot.messages(mailuser.name) == []
    assert _logins(dovecot, mailuser.name) == 2


def _lmtp_sessions(dovecot) -> int:
    return len(re.findall(r"lmtp\(\d+\): Info: Connect from", dovecot.log_text()))


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_polls_of_two_mailboxes_share_one_connection_to_dovecots_lmtp(
    dovecot, keeping, protocol
):
    """The listener connection is kept too (deliver/kept_listeners.py): polls
    of two accounts delivering into Dovecot's LMTP open it once."""
    owner = make_user("root@example.org", superuser=True)
    inbox = MailUser(f"inbox{secrets.token_hex(4)}", secrets.token_urlsafe(12))
    dovecot.add_user(inbox.name, inbox.password)
    sources = []
    for _ in range(2):
        user = MailUser(f"user{secrets.token_hex(5)}", secrets.token_urlsafe(12))
        dovecot.add_user(user.name, user.password)
        sources.append(user)
    mailboxes = [
        make_mailbox(
            owner,
            password=user.password,
            protocol=protocol,
            host=dovecot.host,
            port=dovecot.imaps_port if protocol == "imap" else dovecot.pop3s_port,
            tls_mode="implicit",
            ca_file=dovecot.ca_file,
            username=user.name,
            delivery_kind="lmtp",
            delivery_host=dovecot.host,
            delivery_port=dovecot.lmtp_port,
            recipient=inbox.address,
            timeout=10,
        )
        for user in sources
    ]
    before = _lmtp_sessions(dovecot)
    runs = []
    for n, (user, mailbox) in enumerate([*zip(sources, mailboxes, strict=True)] * 2):
        dovecot.put(user.name, _message(10 + n))
        outcome = services.mailbox_poll(mailbox_id=mailbox.pk)
        runs.append(PollRun.objects.get(pk=outcome.run_id))

    assert [r.outcome for r in runs] == ["success"] * 4, [r.error for r in runs]
    assert [r.delivered for r in runs] == [1] * 4
    delivered = dovecot.messages(inbox.name)
    assert sorted(m.count(b"Message-ID: <k1") for m in delivered) == [1] * 4
    assert [dovecot.messages(u.name) for u in sources] == [[], []]
    assert _lmtp_sessions(dovecot) - before == 1
    assert "reusing the LMTP connection opened at" in runs[3].transcript
    assert len(kept_listeners()) == 1
