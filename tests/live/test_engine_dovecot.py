"""The engine against a real Dovecot: POP3, POP3S, STLS, IMAP+STARTTLS, IMAPS, LMTP.

No Django: runs with ``pytest tests/live/test_engine_dovecot.py -p no:django``.
Delivery goes to the suite's aiosmtpd listener (``smtp_listener``) or into
Dovecot's own LMTP; messages must arrive byte for byte apart from our trace
header, and the remote mailbox must be empty afterwards (unless kept).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode, MessageStatus, PollReport
from retrieval.engine.run import poll
from retrieval.engine.spec import (
    DeliveryKind,
    DeliverySpec,
    MailboxSpec,
    MailProtocol,
    Secret,
    ServerSpec,
    TlsMode,
    TlsSpec,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.support.dovecot import Dovecot, MailUser
    from tests.support.smtp_listener import SmtpListener

pytestmark = pytest.mark.live

SAMPLES = [
    b"From: a@example.net\r\nTo: b@example.org\r\nSubject: plain\r\n"
    b"Message-ID: <plain@example.net>\r\n\r\nHello.\r\n",
    b"Return-Path: <bounces@example.net>\r\nSubject: dots\r\n\r\n"
    b".a line that starts with a dot\r\n..two dots\r\n.\r\nafter the lone dot\r\n",
    b"Subject: 8-bit\r\nContent-Type: text/plain; charset=latin-1\r\n\r\n"
    b"caf\xe9 \xff\xfe raw bytes and UTF-8 caf\xc3\xa9\r\n",
    # RFC 5321's longest legal line (998 octets + CRLF); aiosmtpd refuses longer.
    b"Subject: a long line\r\n\r\n" + b"x" * 998 + b"\r\nend\r\n",
]
# Longer than SMTP allows: Dovecot's LMTP takes it, an strict SMTP listener not.
OVERLONG = b"Subject: a very long line\r\n\r\n" + b"y" * 20_000 + b"\r\nend\r\n"

# (protocol, TLS mode, name of the Dovecot port attribute)
PATHS = [
    pytest.param(MailProtocol.POP3, TlsMode.NONE, "pop3_port", id="pop3"),
    pytest.param(MailProtocol.POP3, TlsMode.STARTTLS, "pop3_port", id="pop3-stls"),
    pytest.param(MailProtocol.POP3, TlsMode.IMPLICIT, "pop3s_port", id="pop3s"),
    pytest.param(MailProtocol.IMAP, TlsMode.NONE, "imap_port", id="imap"),
    pytest.param(MailProtocol.IMAP, TlsMode.STARTTLS, "imap_port", id="imap-starttls"),
    pytest.param(MailProtocol.IMAP, TlsMode.IMPLICIT, "imaps_port", id="imaps"),
]


def mailbox_spec(
    dovecot: Dovecot,
    user: MailUser,
    listener: SmtpListener | None,
    *,
    protocol: MailProtocol = MailProtocol.IMAP,
    tls: TlsMode = TlsMode.IMPLICIT,
    port_name: str = "imaps_port",
    **options: object,
) -> MailboxSpec:
    delivery = DeliverySpec(
        kind=DeliveryKind.SMTP,
        hosts=(f"{listener.host}/{listener.port}",) if listener else (),
        recipients=("joe@example.org",),
        timeout=10,
    )
    spec = MailboxSpec(
        server=ServerSpec(
            # The certificate names "localhost"; connect to the address directly.
            host="localhost",
            via=dovecot.host,
            protocol=protocol,
            port=getattr(dovecot, port_name),
            tls=TlsSpec(mode=tls, ca_file=dovecot.ca_file),
            timeout=10,
        ),
        username=user.name,
        password=Secret(user.password),
        delivery=delivery,
        name="live",
    )
    return replace(spec, **options)  # type: ignore[arg-type]


def run(
    spec: MailboxSpec, ledger: MemoryLedger | None = None
) -> tuple[PollReport, MemoryLedger, ListTranscript]:
    ledger = ledger if ledger is not None else MemoryLedger()
    transcript = ListTranscript()
    return poll(spec, ledger=ledger, transcript=transcript), ledger, transcript


def without_trace(data: bytes) -> bytes:
    """Remove our three-line ``Received:`` header (it must be first)."""
    assert data.startswith(b"Received: from localhost"), data[:120]
    lines = data.split(b"\r\n")
    assert lines[1].startswith(b"\tby ") and b"(fetchweb-" in lines[1]
    return b"\r\n".join(lines[3:])


@pytest.mark.parametrize(("protocol", "tls", "port_name"), PATHS)
def test_it_delivers_byte_for_byte_and_empties_the_mailbox(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    protocol: MailProtocol,
    tls: TlsMode,
    port_name: str,
) -> None:
    for sample in SAMPLES:
        dovecot.put(mailuser.name, sample)
    spec = mailbox_spec(
        dovecot,
        mailuser,
        smtp_listener,
        protocol=protocol,
        tls=tls,
        port_name=port_name,
    )

    report, ledger, transcript = run(spec)

    assert report.exit_code is ExitCode.SUCCESS, (report.error, transcript.text())
    assert [m.status for m in report.messages] == [MessageStatus.DELIVERED] * 4
    assert all(m.deleted for m in report.messages)
    received = smtp_listener.wait_for(len(SAMPLES))
    assert [without_trace(r.data) for r in received] == SAMPLES
    assert received[1].mail_from == "bounces@example.net"
    assert (
        received[0].mail_from == "a@example.net"
    )  # no Return-Path: From, as fetchmail
    assert dovecot.messages(mailuser.name) == []
    assert len(ledger.marks) == 4
    assert smtp_listener.connections == 1  # one listener connection per poll
    if tls is not TlsMode.NONE:
        assert any(t.startswith("TLS established") for _, t in transcript.lines)
    assert mailuser.password not in transcript.text()


@pytest.mark.parametrize(
    ("protocol", "port_name"),
    [(MailProtocol.POP3, "pop3s_port"), (MailProtocol.IMAP, "imaps_port")],
)
def test_keep_leaves_the_mail_and_a_second_poll_delivers_nothing(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    protocol: MailProtocol,
    port_name: str,
) -> None:
    for sample in SAMPLES[:2]:
        dovecot.put(mailuser.name, sample)
    spec = mailbox_spec(
        dovecot,
        mailuser,
        smtp_listener,
        protocol=protocol,
        port_name=port_name,
        keep=True,
    )

    first, ledger, _ = run(spec)
    second, _, _ = run(spec, ledger)

    assert first.exit_code is ExitCode.SUCCESS and first.delivered == 2
    assert second.exit_code is ExitCode.NOMAIL and second.messages == []
    assert len(smtp_listener.received) == 2
    assert dovecot.messages(mailuser.name) == SAMPLES[:2]


@pytest.mark.parametrize(
    ("protocol", "port_name"),
    [(MailProtocol.POP3, "pop3s_port"), (MailProtocol.IMAP, "imaps_port")],
)
def test_a_wrong_password_is_authfail_and_deletes_nothing(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    protocol: MailProtocol,
    port_name: str,
) -> None:
    dovecot.put(mailuser.name, SAMPLES[0])
    spec = mailbox_spec(
        dovecot,
        mailuser,
        smtp_listener,
        protocol=protocol,
        port_name=port_name,
        password=Secret(mailuser.password + "-wrong"),
    )

    report, _, transcript = run(spec)

    assert report.exit_code is ExitCode.AUTHFAIL
    assert report.error.startswith("Wrong user name or password (the server said:")
    assert report.greeting  # the greeting is kept even when the login fails
    assert smtp_listener.received == []
    assert dovecot.messages(mailuser.name) == [SAMPLES[0]]
    assert mailuser.password not in transcript.text()


@pytest.mark.parametrize(
    ("protocol", "tls", "port_name"),
    [
        (MailProtocol.POP3, TlsMode.IMPLICIT, "pop3s_port"),
        (MailProtocol.IMAP, TlsMode.IMPLICIT, "imaps_port"),
        (MailProtocol.IMAP, TlsMode.STARTTLS, "imap_port"),
    ],
)
def test_a_certificate_from_another_ca_ends_the_poll_before_anything_is_sent(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    protocol: MailProtocol,
    tls: TlsMode,
    port_name: str,
) -> None:
    dovecot.put(mailuser.name, SAMPLES[0])
    spec = mailbox_spec(
        dovecot,
        mailuser,
        smtp_listener,
        protocol=protocol,
        tls=tls,
        port_name=port_name,
    )
    spec = replace(
        spec,
        server=replace(
            spec.server, tls=replace(spec.server.tls, ca_file=dovecot.wrong_ca_file)
        ),
    )

    report, _, transcript = run(spec)

    assert report.exit_code is ExitCode.SOCKET
    assert report.error.startswith("The server's certificate could not be verified")
    sent = [text for direction, text in transcript.lines if direction == "C"]
    # Only the STARTTLS request itself may precede the handshake.
    assert all(not text.endswith(("LOGIN", "PASS ********")) for text in sent)
    assert not any("AUTHENTICATE" in t or t.startswith("USER") for t in sent)
    assert dovecot.messages(mailuser.name) == [SAMPLES[0]]


def test_it_deletes_without_redelivery_what_an_earlier_poll_delivered(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener
) -> None:
    """Invariant 5: a crash between the ledger commit and the delete."""
    dovecot.put(mailuser.name, SAMPLES[0])
    dovecot.put(mailuser.name, SAMPLES[1])
    spec = mailbox_spec(dovecot, mailuser, smtp_listener, keep=True)
    _, ledger, _ = run(spec)  # delivers both and records them, deletes nothing
    smtp_listener.clear()
    dovecot.put(mailuser.name, SAMPLES[2])

    report, _, _ = run(replace(spec, keep=False), ledger)

    assert [without_trace(r.data) for r in smtp_listener.received] == [SAMPLES[2]]
    assert dovecot.messages(mailuser.name) == []
    assert [m.status for m in report.messages] == [
        MessageStatus.SKIPPED,
        MessageStatus.SKIPPED,
        MessageStatus.DELIVERED,
    ]


def test_it_polls_several_folders_including_a_non_ascii_one(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener
) -> None:
    dovecot.put(mailuser.name, SAMPLES[0])
    dovecot.put(mailuser.name, SAMPLES[1], folder="Entw\u00fcrfe")
    spec = mailbox_spec(
        dovecot, mailuser, smtp_listener, folders=("INBOX", "Entw\u00fcrfe")
    )

    report, ledger, _ = run(spec)

    assert report.exit_code is ExitCode.SUCCESS, report.error
    assert sorted(without_trace(r.data) for r in smtp_listener.received) == sorted(
        SAMPLES[:2]
    )
    assert dovecot.messages(mailuser.name, folder="Entw\u00fcrfe") == []
    assert {folder for folder, _, _ in ledger.marks} == {"INBOX", "Entw\u00fcrfe"}


def test_a_renumbered_folder_is_not_delivered_again_in_keep_mode(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener
) -> None:
    dovecot.put(mailuser.name, SAMPLES[0])
    spec = mailbox_spec(dovecot, mailuser, smtp_listener, keep=True)
    _, ledger, _ = run(spec)
    dovecot.set_uidvalidity(mailuser.name, dovecot.uidvalidity(mailuser.name) + 7)

    report, _, _ = run(spec, ledger)

    assert report.exit_code is ExitCode.NOMAIL
    assert any("renumbered" in note for note in report.notes)
    assert len(smtp_listener.received) == 1


def test_a_listener_answering_451_keeps_everything(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener
) -> None:
    for sample in SAMPLES[:2]:
        dovecot.put(mailuser.name, sample)
    smtp_listener.fail_at("DATA_END", 451)
    spec = mailbox_spec(
        dovecot, mailuser, smtp_listener, protocol=MailProtocol.POP3, port_name="pop3s_port"
    )

    report, ledger, _ = run(spec)

    assert report.exit_code is ExitCode.SMTP
    assert [m.status for m in report.messages] == [MessageStatus.DEFERRED] * 2
    assert "451" in report.error and ledger.marks == []
    assert dovecot.messages(mailuser.name) == SAMPLES[:2]


def test_a_line_too_long_for_the_smtp_listener_is_refused_and_kept(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener
) -> None:
    dovecot.put(mailuser.name, OVERLONG)
    dovecot.put(mailuser.name, SAMPLES[0])
    spec = mailbox_spec(dovecot, mailuser, smtp_listener)

    report, _, _ = run(spec)

    assert [m.status for m in report.messages] == [
        MessageStatus.REFUSED,
        MessageStatus.DELIVERED,
    ]
    assert report.messages[0].listener_reply.startswith("500")
    assert dovecot.messages(mailuser.name) == [OVERLONG]  # softbounce keeps it


def test_it_delivers_into_dovecots_own_lmtp(
    dovecot: Dovecot, mailuser: MailUser
) -> None:
    """POP3S from one account, LMTP into another: a real LMTP listener end to end."""
    recipient = f"rcpt{mailuser.name}"
    dovecot.add_user(recipient, "unused-password")
    samples = [*SAMPLES, OVERLONG]
    for sample in samples:
        dovecot.put(mailuser.name, sample)
    delivery = DeliverySpec(
        kind=DeliveryKind.LMTP,
        hosts=(f"{dovecot.host}/{dovecot.lmtp_port}",),
        recipients=(f"{recipient}@localhost",),
        timeout=10,
    )
    spec = mailbox_spec(
        dovecot,
        mailuser,
        None,
        protocol=MailProtocol.POP3,
        port_name="pop3s_port",
        delivery=delivery,
    )

    report, _, transcript = run(spec)

    assert report.exit_code is ExitCode.SUCCESS, (report.error, transcript.text())
    assert dovecot.messages(mailuser.name) == []
    stored = dovecot.messages(recipient)
    assert len(stored) == len(samples)
    for sample, data in zip(samples, stored, strict=True):
        # Dovecot adds its own Return-Path/Delivered-To/Received above ours and
        # may store LF line ends; what follows our trace header is the original.
        normal = data.replace(b"\r\n", b"\n")
        ours = normal.index(b"Received: from localhost")
        body = normal[ours:].split(b"\n", 3)[3]
        assert body == sample.replace(b"\r\n", b"\n")


@pytest.mark.parametrize(
    ("protocol", "port_name"),
    [(MailProtocol.POP3, "pop3s_port"), (MailProtocol.IMAP, "imaps_port")],
)
def test_throughput(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    protocol: MailProtocol,
    port_name: str,
    record_property: Callable[[str, object], None],
) -> None:
    """200 messages of ~10 KB over TLS to SMTP; prints and records messages/s."""
    count = 200
    body = b"Subject: bulk\r\n\r\n" + (b"0123456789" * 10 + b"\r\n") * 100
    for _ in range(count):
        dovecot.put(mailuser.name, body)
    spec = mailbox_spec(
        dovecot, mailuser, smtp_listener, protocol=protocol, port_name=port_name
    )

    started = time.perf_counter()
    report, _, _ = run(spec)
    elapsed = time.perf_counter() - started

    assert report.exit_code is ExitCode.SUCCESS and report.delivered == count
    assert dovecot.messages(mailuser.name) == []
    rate = count / elapsed
    record_property("messages_per_second", round(rate, 1))
    print(f"\n{protocol.value}: {count} messages in {elapsed:.2f} s = {rate:.0f} msg/s")
