"""Delivery kind IMAP (issue 16 item 3) against real Dovecots: fetched from one
account, APPENDed into another, byte for byte; the source copy is deleted only
after the tagged OK.

Runs without Django: ``pytest tests/live/test_append_dovecot.py -p no:django``.
The destination over quota is a second Dovecot with the quota plugin, where
every account may hold 2 KiB.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.probe import check_login
from retrieval.engine.report import ExitCode, MessageStatus, PollReport
from retrieval.engine.run import poll
from retrieval.engine.spec import (
    AppendTarget,
    DeliveryKind,
    DeliverySpec,
    MailboxSpec,
    MailProtocol,
    Secret,
    ServerSpec,
    TlsMode,
    TlsSpec,
)
from tests.support.dovecot import Dovecot, MailUser

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.live

SAMPLES = [
    b"From: a@example.net\r\nTo: b@example.org\r\nSubject: plain\r\n"
    b"Date: Tue, 03 Mar 2026 10:11:12 +0100\r\n"
    b"Message-ID: <plain@example.net>\r\n\r\nHello.\r\n",
    b"Subject: dots\r\n\r\n.a line that starts with a dot\r\n.\r\nafter the dot\r\n",
    b"Subject: 8-bit\r\nDate: not a date\r\n\r\ncaf\xe9 \xff raw bytes caf\xc3\xa9\r\n",
]


def lf(messages: list[bytes]) -> list[bytes]:
    """Dovecot's Maildir stores APPENDed messages with LF line ends (it serves them
    with CRLF again); ``put`` files keep what was written."""
    return [m.replace(b"\r\n", b"\n") for m in messages]


def server(dovecot: Dovecot, protocol: MailProtocol = MailProtocol.IMAP) -> ServerSpec:
    port = dovecot.imaps_port if protocol is MailProtocol.IMAP else dovecot.pop3s_port
    return ServerSpec(
        host="localhost",  # the certificate's name; connect to the address
        via=dovecot.host,
        protocol=protocol,
        port=port,
        tls=TlsSpec(mode=TlsMode.IMPLICIT, ca_file=dovecot.ca_file),
        timeout=10,
    )


def new_user(dovecot: Dovecot) -> MailUser:
    user = MailUser(f"user{secrets.token_hex(5)}", secrets.token_urlsafe(12))
    dovecot.add_user(user.name, user.password)
    return user


def spec_for(
    source: Dovecot,
    user: MailUser,
    target: Dovecot,
    into: MailUser,
    *,
    protocol: MailProtocol = MailProtocol.IMAP,
    **target_options: object,
) -> MailboxSpec:
    mailbox = AppendTarget(
        server=server(target),
        username=into.name,
        password=Secret(into.password),
    )
    return MailboxSpec(
        server=server(source, protocol),
        username=user.name,
        password=Secret(user.password),
        delivery=DeliverySpec(
            kind=DeliveryKind.IMAP,
            mailbox=replace(mailbox, **target_options),  # type: ignore[arg-type]
        ),
        name="append",
    )


def run(spec: MailboxSpec, **options: Any) -> tuple[PollReport, ListTranscript]:
    transcript = ListTranscript()
    report = poll(
        replace(spec, **options), ledger=MemoryLedger(), transcript=transcript
    )
    return report, transcript


@pytest.mark.parametrize("protocol", [MailProtocol.POP3, MailProtocol.IMAP])
def test_each_message_lands_byte_for_byte_and_leaves_the_source(
    dovecot: Dovecot, mailuser: MailUser, protocol: MailProtocol
) -> None:
    into = new_user(dovecot)
    for sample in SAMPLES:
        dovecot.put(mailuser.name, sample)

    report, transcript = run(
        spec_for(dovecot, mailuser, dovecot, into, protocol=protocol)
    )

    assert report.exit_code is ExitCode.SUCCESS, (report.error, transcript.text())
    assert [m.status for m in report.messages] == [MessageStatus.DELIVERED] * 3
    assert dovecot.messages(into.name) == lf(SAMPLES)
    assert dovecot.messages(mailuser.name) == []
    # UIDPLUS: the reply the run shows names where the message went.
    assert all("APPENDUID" in m.listener_reply for m in report.messages)
    # The password of the destination is a secret like the source's.
    assert into.password not in transcript.text()


def test_the_internal_date_is_the_date_header(
    dovecot: Dovecot, mailuser: MailUser
) -> None:
    into = new_user(dovecot)
    dovecot.put(mailuser.name, SAMPLES[0])

    report, _ = run(spec_for(dovecot, mailuser, dovecot, into))

    assert report.exit_code is ExitCode.SUCCESS
    shown = dovecot.doveadm(
        "fetch", "-u", into.name, "date.received", "mailbox", "INBOX", "all"
    )
    assert "2026-03-03 10:11:12" in shown or "2026-03-03 09:11:12" in shown, shown


def test_keep_and_fetchall_append_again_only_what_is_new(
    dovecot: Dovecot, mailuser: MailUser
) -> None:
    into = new_user(dovecot)
    dovecot.put(mailuser.name, SAMPLES[0])
    spec = spec_for(dovecot, mailuser, dovecot, into)
    ledger = MemoryLedger()
    first = poll(replace(spec, keep=True), ledger=ledger, transcript=ListTranscript())
    dovecot.put(mailuser.name, SAMPLES[1])
    second = poll(replace(spec, keep=True), ledger=ledger, transcript=ListTranscript())

    assert first.exit_code is ExitCode.SUCCESS
    assert second.exit_code is ExitCode.SUCCESS
    assert dovecot.messages(into.name) == lf(SAMPLES[:2])
    assert len(dovecot.messages(mailuser.name)) == 2  # kept on the source


def test_flags_and_a_folder_created_on_request(
    dovecot: Dovecot, mailuser: MailUser
) -> None:
    into = new_user(dovecot)
    dovecot.put(mailuser.name, SAMPLES[0])
    spec = spec_for(
        dovecot,
        mailuser,
        dovecot,
        into,
        folder="Old account/Inbox",
        flags=("\\Seen", "$Imported"),
        create_folder=True,
    )

    report, transcript = run(spec)

    assert report.exit_code is ExitCode.SUCCESS, (report.error, transcript.text())
    assert dovecot.messages(into.name, "Old account/Inbox") == lf([SAMPLES[0]])
    flags = dovecot.doveadm(
        "fetch", "-u", into.name, "flags", "mailbox", "Old account/Inbox", "all"
    )
    assert "\\Seen" in flags and "$Imported" in flags


def test_a_missing_folder_not_to_be_created_keeps_the_message(
    dovecot: Dovecot, mailuser: MailUser
) -> None:
    into = new_user(dovecot)
    dovecot.put(mailuser.name, SAMPLES[0])

    report, _ = run(spec_for(dovecot, mailuser, dovecot, into, folder="Nowhere"))

    assert [m.status for m in report.messages] != [MessageStatus.DELIVERED]
    assert "TRYCREATE" in report.messages[0].listener_reply
    assert dovecot.messages(mailuser.name) == [SAMPLES[0]]
    assert "Nowhere" not in dovecot.folders(into.name)


def test_a_wrong_destination_password_ends_the_poll_and_deletes_nothing(
    dovecot: Dovecot, mailuser: MailUser
) -> None:
    into = new_user(dovecot)
    dovecot.put(mailuser.name, SAMPLES[0])
    spec = spec_for(dovecot, mailuser, dovecot, into, password=Secret("wrong"))

    report, transcript = run(spec)

    assert report.exit_code is ExitCode.SMTP, report.error
    assert "destination mailbox" in report.error
    assert dovecot.messages(mailuser.name) == [SAMPLES[0]]
    assert "wrong" not in transcript.text()


class QuotaDovecot(Dovecot):
    """A destination where every account may hold 2 KiB."""

    def _write_config(self, ports: list[int]) -> None:
        super()._write_config(ports)
        with self.config_file.open("a") as config:
            config.write(
                "mail_plugins = $mail_plugins quota\n"
                "protocol imap {\n  mail_plugins = $mail_plugins imap_quota\n}\n"
                "plugin {\n  quota = maildir:User quota\n"
                "  quota_rule = *:storage=2K\n}\n"
            )


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    quota = QuotaDovecot.start(tmp_path_factory.mktemp("quota-dovecot"))
    try:
        yield quota
    finally:
        quota.stop()


def test_an_append_over_quota_keeps_the_source_message(
    dovecot: Dovecot, mailuser: MailUser, full: Dovecot
) -> None:
    into = new_user(full)
    small = SAMPLES[0]
    large = b"Subject: large\r\n\r\n" + b"z" * 5000 + b"\r\n"
    dovecot.put(mailuser.name, small)
    dovecot.put(mailuser.name, large)

    report, transcript = run(spec_for(dovecot, mailuser, full, into))

    statuses = [m.status for m in report.messages]
    assert statuses[0] is MessageStatus.DELIVERED, transcript.text()
    assert statuses[1] is not MessageStatus.DELIVERED
    assert "quota" in report.messages[1].listener_reply.lower()
    assert full.messages(into.name) == lf([small])
    assert dovecot.messages(mailuser.name) == [large]  # the refused one stays


def test_test_connection_logs_in_to_the_destination_too(
    dovecot: Dovecot, mailuser: MailUser
) -> None:
    into = new_user(dovecot)
    good = spec_for(dovecot, mailuser, dovecot, into)
    bad = spec_for(dovecot, mailuser, dovecot, into, password=Secret("wrong"))

    assert check_login(good).ok
    refused = check_login(bad)
    assert not refused.ok
    assert "destination mailbox" in refused.error
    assert refused.greeting  # the source answered; the destination did not let us in
