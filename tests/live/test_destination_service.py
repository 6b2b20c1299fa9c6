"""Delivery kind IMAP through the service (issue 16 item 3): a stored mailbox
whose messages go into another Dovecot account, polled by services.mailbox_poll
with the database ledger; the form that sets it up, for each role.

These run twice in `make test`: on PostgreSQL and on SQLite.
"""

from __future__ import annotations

import secrets

import pytest

from retrieval import netpolicy, services
from retrieval.forms import MailboxForm
from retrieval.models import Mailbox, MessageResult, PollRun, SeenMessage
from retrieval.services.specs import SpecError, mailbox_spec
from tests.factories import make_mailbox, make_user
from tests.support.dovecot import MailUser

pytestmark = [pytest.mark.live, pytest.mark.django_db]

MESSAGE = (
    b"From: old@example.net\r\nSubject: moving house\r\n"
    b"Date: Fri, 04 Dec 2026 09:00:00 +0000\r\n"
    b"Message-ID: <move@example.net>\r\n\r\nAll of it.\r\n"
)


def _destination(dovecot) -> MailUser:
    user = MailUser(f"into{secrets.token_hex(4)}", secrets.token_urlsafe(10))
    dovecot.add_user(user.name, user.password)
    return user


def _mailbox(dovecot, mailuser, into, owner, **fields) -> Mailbox:
    values = {
        "protocol": "imap",
        "host": dovecot.host,
        "port": dovecot.imaps_port,
        "tls_mode": "implicit",
        "ca_file": dovecot.ca_file,
        "username": mailuser.name,
        "timeout": 10,
        "delivery_kind": "imap",
        "destination_host": dovecot.host,
        "destination_port": dovecot.imaps_port,
        "destination_username": into.name,
        "destination_folder": "From old account",
        "destination_create_folder": True,
    }
    values.update(fields)
    mailbox = make_mailbox(owner, password=mailuser.password, **values)
    mailbox.set_destination_password(into.password)
    services.mailbox_save(mailbox=mailbox)
    return mailbox


class DestinationPollTests:
    @pytest.mark.parametrize("keep", [False, True])
    def test_the_message_moves_into_the_destination_folder(
        self, dovecot, mailuser, keep
    ):
        owner = make_user("root@example.org", superuser=True)
        into = _destination(dovecot)
        dovecot.put(mailuser.name, MESSAGE)
        mailbox = _mailbox(dovecot, mailuser, into, owner, keep=keep)

        summary = services.mailbox_poll(mailbox_id=mailbox.pk)
        run = PollRun.objects.get(pk=summary.run_id)

        assert run.outcome == PollRun.Outcome.SUCCESS, (run.error, run.transcript)
        stored = dovecot.messages(into.name, "From old account")
        assert stored == [MESSAGE.replace(b"\r\n", b"\n")]
        assert len(dovecot.messages(mailuser.name)) == (1 if keep else 0)
        result = MessageResult.objects.get(run=run)
        assert "APPENDUID" in result.listener_reply
        if keep:
            assert SeenMessage.objects.filter(mailbox=mailbox).count() == 1
        assert into.password not in run.transcript

        # With keep, the ledger stops the next poll from appending it again.
        services.mailbox_poll(mailbox_id=mailbox.pk)
        assert len(dovecot.messages(into.name, "From old account")) == 1

    def test_a_wrong_destination_password_keeps_the_message_and_says_where(
        self, dovecot, mailuser
    ):
        owner = make_user("root@example.org", superuser=True)
        into = _destination(dovecot)
        dovecot.put(mailuser.name, MESSAGE)
        mailbox = _mailbox(dovecot, mailuser, into, owner)
        mailbox.set_destination_password("not-the-password")
        services.mailbox_save(mailbox=mailbox)

        summary = services.mailbox_poll(mailbox_id=mailbox.pk)
        run = PollRun.objects.get(pk=summary.run_id)

        assert run.outcome != PollRun.Outcome.SUCCESS
        assert "destination mailbox" in run.error
        assert dovecot.messages(mailuser.name) == [MESSAGE]

    def test_a_user_may_deliver_only_into_a_public_address(self, monkeypatch):
        """The same policy as for the source, checked again by the engine."""

        def check(host, port):
            if host == "private.test":
                raise netpolicy.DestinationRefused("not a public address")

        monkeypatch.setattr(netpolicy, "check_destination", check)
        person = make_user("person@example.org")
        mailbox = make_mailbox(
            person,
            password="x",
            host="public.test",
            delivery_kind="imap",
            destination_host="private.test",
            destination_username="me",
        )
        with pytest.raises(SpecError, match="destination mailbox: not a public"):
            mailbox_spec(mailbox)

        services.mailbox_save(mailbox=mailbox)
        mailbox.destination_host = "public.test"
        target = mailbox_spec(mailbox).delivery.mailbox
        assert target is not None
        assert target.server.public_only
        assert target.server.effective_port == 993


def _form_data(**fields):
    data = {
        "name": "old account",
        "enabled": "on",
        "poll_interval": "300",
        "protocol": "imap",
        "host": "imap.example.org",
        "tls_mode": "implicit",
        "verify_tls": "on",
        "auth": "any",
        "username": "me",
        "new_password": "secret",
        "delivery_kind": "imap",
        "destination_host": "imap.gmail.com",
        "destination_tls_mode": "implicit",
        "destination_auth": "any",
        "destination_username": "me@gmail.com",
        "destination_password": "app-password",
        "destination_folder": "INBOX",
        "destination_flags": "\\Seen $Imported",
    }
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


class DestinationFormTests:
    def test_a_person_chooses_between_the_service_and_a_mailbox_only(self):
        person = make_user("person@example.org")
        form = MailboxForm(editor=person)
        kinds = [value for value, _ in form.fields["delivery_kind"].choices]
        assert kinds == ["smtp", "imap"]
        superuser = make_user("root@example.org", superuser=True)
        kinds = [
            v for v, _ in MailboxForm(editor=superuser).fields["delivery_kind"].choices
        ]
        assert kinds == ["smtp", "lmtp", "mda", "imap"]

    @pytest.mark.parametrize(
        ("fields", "field", "words"),
        [
            ({"destination_host": ""}, "destination_host", "Enter the IMAP server"),
            ({"destination_username": ""}, "destination_username", "user name"),
            ({"destination_password": ""}, "destination_password", "password"),
            ({"destination_flags": "\\Recent"}, "destination_flags", "not a flag"),
            ({"destination_host": "gmail.com:993"}, "destination_host", "Port field"),
            ({"destination_host": "127.0.0.1"}, "destination_host", ""),
        ],
    )
    def test_what_is_missing_or_wrong_is_said_in_words(
        self, settings, fields, field, words
    ):
        settings.FETCH_ALLOW_PRIVATE_HOSTS = False
        person = make_user("person@example.org")
        form = MailboxForm(_form_data(**fields), editor=person)
        assert not form.is_valid()
        assert field in form.errors, form.errors
        assert words in " ".join(form.errors[field])

    def test_the_password_is_stored_encrypted_and_asked_again_on_a_new_account(
        self, settings
    ):
        settings.FETCH_ALLOW_PRIVATE_HOSTS = True
        person = make_user("person@example.org")
        form = MailboxForm(_form_data(), editor=person)
        assert form.is_valid(), form.errors
        mailbox = services.mailbox_save(
            mailbox=form.instance,
            owner=person,
            new_password=form.cleaned_data["new_password"],
            destination_password=form.cleaned_data["destination_password"],
        )
        mailbox.refresh_from_db()
        assert mailbox.get_destination_password() == "app-password"
        assert "app-password" not in mailbox.destination_password_encrypted
        assert mailbox.destination_flags == "\\Seen $Imported"

        same = MailboxForm(
            _form_data(destination_password="", new_password=""),
            instance=mailbox,
            editor=person,
        )
        assert same.is_valid(), same.errors
        moved = MailboxForm(
            _form_data(
                destination_password="",
                new_password="",
                destination_host="outlook.office365.com",
            ),
            instance=mailbox,
            editor=person,
        )
        assert not moved.is_valid()
        assert "again" in " ".join(moved.errors["destination_password"])
