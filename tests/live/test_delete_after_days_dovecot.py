"""``delete_after_days`` with keep against the real Dovecot, with a moved clock.

The engine with its memory ledger, and the command line with its idfile
(``--delete-after-days``), on POP3 and IMAP: messages delivered with keep stay
N-1 days later, are deleted (and reported) N+1 days later; a message delivered
later keeps its own age; ``fetchall`` with keep fetches again only what is not
yet due. No Django: ``pytest -p no:django`` runs this file.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from retrieval.cli.main import main
from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode, MessageStatus
from retrieval.engine.run import poll
from retrieval.engine.spec import MailProtocol, TlsMode
from tests.live.test_cli_dovecot import entry, write_rcfile
from tests.live.test_engine_dovecot import mailbox_spec

if TYPE_CHECKING:
    from pathlib import Path

    from retrieval.engine.report import PollReport
    from retrieval.engine.spec import MailboxSpec
    from tests.support.dovecot import Dovecot, MailUser
    from tests.support.smtp_listener import SmtpListener

pytestmark = pytest.mark.live

DAYS = 7
T0 = datetime.now(UTC)
DAY = timedelta(days=1)
PROTOCOLS = [
    pytest.param(MailProtocol.POP3, "pop3s_port", id="pop3"),
    pytest.param(MailProtocol.IMAP, "imaps_port", id="imap"),
]


def sample(n: int) -> bytes:
    return (
        f"From: a@example.net\r\nSubject: kept {n}\r\n"
        f"Message-ID: <kept{n}@example.net>\r\n\r\nBody {n}.\r\n"
    ).encode()


def subjects(dovecot: Dovecot, user: MailUser) -> list[str]:
    return sorted(
        line.decode()
        for raw in dovecot.messages(user.name)
        for line in raw.split(b"\r\n")
        if line.startswith(b"Subject: ")
    )


def polled(spec: MailboxSpec, ledger: MemoryLedger, moment: datetime) -> PollReport:
    report = poll(
        spec, ledger=ledger, transcript=ListTranscript(), clock=lambda: moment
    )
    assert not report.error, report.error
    return report


def kept(
    dovecot: Dovecot,
    user: MailUser,
    listener: SmtpListener,
    protocol: MailProtocol,
    port_name: str,
    **options: object,
) -> MailboxSpec:
    """Kept for ``DAYS`` days after delivery, over implicit TLS."""
    return mailbox_spec(
        dovecot,
        user,
        listener,
        protocol=protocol,
        tls=TlsMode.IMPLICIT,
        port_name=port_name,
        keep=True,
        delete_after_days=DAYS,
        **options,
    )


@pytest.mark.parametrize(("protocol", "port_name"), PROTOCOLS)
def test_kept_messages_go_n_days_after_delivery_each_at_its_own_age(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    protocol: MailProtocol,
    port_name: str,
) -> None:
    spec = kept(dovecot, mailuser, smtp_listener, protocol, port_name)
    ledger = MemoryLedger()
    for n in (1, 2):
        dovecot.put(mailuser.name, sample(n))
    assert polled(spec, ledger, T0).delivered == 2
    dovecot.put(mailuser.name, sample(3))  # delivered three days later
    assert polled(spec, ledger, T0 + 3 * DAY).delivered == 1
    assert len(smtp_listener.received) == 3

    # N-1 days after the first delivery: all three stay, nothing is reported.
    report = polled(spec, ledger, T0 + (DAYS - 1) * DAY)
    assert report.messages == []
    assert report.exit_code is ExitCode.NOMAIL
    assert len(dovecot.messages(mailuser.name)) == 3

    # N+1 days: the first two go, each reported; the third is N-2 days old.
    report = polled(spec, ledger, T0 + (DAYS + 1) * DAY)
    gone = [m for m in report.messages if m.status is MessageStatus.EXPIRED]
    assert len(gone) == 2
    assert all(m.deleted for m in gone)
    assert all(f"deleted after {DAYS} days (keep)" in m.listener_reply for m in gone)
    assert report.delivered == 0
    assert subjects(dovecot, mailuser) == ["Subject: kept 3"]
    assert len(smtp_listener.received) == 3  # nothing fetched again

    # The third one's own N+1 days.
    report = polled(spec, ledger, T0 + (3 + DAYS + 1) * DAY)
    assert [m.status for m in report.messages] == [MessageStatus.EXPIRED]
    assert dovecot.messages(mailuser.name) == []
    assert len(smtp_listener.received) == 3


@pytest.mark.parametrize(("protocol", "port_name"), PROTOCOLS)
def test_fetchall_with_keep_fetches_again_until_the_days_have_passed(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    protocol: MailProtocol,
    port_name: str,
) -> None:
    spec = kept(dovecot, mailuser, smtp_listener, protocol, port_name, fetchall=True)
    ledger = MemoryLedger()
    dovecot.put(mailuser.name, sample(1))
    assert polled(spec, ledger, T0).delivered == 1
    # fetchall with keep: fetched again, and its first delivery date stays.
    assert polled(spec, ledger, T0 + (DAYS - 1) * DAY).delivered == 1
    assert len(dovecot.messages(mailuser.name)) == 1
    report = polled(spec, ledger, T0 + (DAYS + 1) * DAY)
    assert [m.status for m in report.messages] == [MessageStatus.EXPIRED]
    assert report.delivered == 0
    assert dovecot.messages(mailuser.name) == []
    assert len(smtp_listener.received) == 2


def test_without_keep_the_option_only_adds_a_note(
    dovecot: Dovecot, mailuser: MailUser, smtp_listener: SmtpListener
) -> None:
    spec = mailbox_spec(dovecot, mailuser, smtp_listener, delete_after_days=DAYS)
    dovecot.put(mailuser.name, sample(1))
    report = polled(spec, MemoryLedger(), T0)
    assert report.delivered == report.deleted == 1
    assert any("works with 'keep' only" in note for note in report.notes)


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_the_command_line_deletes_by_the_idfile_dates(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    protocol: str,
) -> None:
    port = dovecot.pop3s_port if protocol == "pop3" else dovecot.imaps_port
    rc = write_rcfile(
        tmp_path / "fetchmailrc",
        entry(dovecot, mailuser, smtp_listener, protocol=protocol, port=port),
    )
    idfile = tmp_path / "ids"
    argv = ["-f", str(rc), "-i", str(idfile), "--keep", "--delete-after-days", "7"]
    for n in (1, 2):
        dovecot.put(mailuser.name, sample(n))

    assert main(argv, clock=lambda: T0) == ExitCode.SUCCESS
    dovecot.put(mailuser.name, sample(3))
    assert main(argv, clock=lambda: T0 + 3 * DAY) == ExitCode.SUCCESS
    assert len(smtp_listener.received) == 3
    capsys.readouterr()

    assert main(argv, clock=lambda: T0 + (DAYS - 1) * DAY) == ExitCode.NOMAIL
    assert len(dovecot.messages(mailuser.name)) == 3

    assert main(argv, clock=lambda: T0 + (DAYS + 1) * DAY) == ExitCode.NOMAIL
    out = capsys.readouterr().out
    assert out.count(f"flushed (delivered {T0:%Y-%m-%d}") == 2, out
    assert subjects(dovecot, mailuser) == ["Subject: kept 3"]

    # A fresh process later (the idfile kept the third message's date).
    assert main(argv, clock=lambda: T0 + (3 + DAYS + 1) * DAY) == ExitCode.NOMAIL
    assert dovecot.messages(mailuser.name) == []
    assert len(smtp_listener.received) == 3


def test_the_command_line_refuses_a_number_of_days_that_is_not_positive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--delete-after-days", "0"]) == ExitCode.SYNTAX
    assert "give a positive number of days" in capsys.readouterr().err
