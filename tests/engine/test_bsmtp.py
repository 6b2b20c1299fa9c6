"""bsmtp: messages appended to a batch SMTP file instead of delivered.

Every test reads the file back as a batch SMTP reader would (MAIL, RCPT,
DATA, dot-unstuffed lines up to the lone dot) and compares the messages byte
for byte with what the server held.
"""

from __future__ import annotations

import errno
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from retrieval.cli.main import main
from retrieval.engine.deliver import bsmtp
from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode, MessageStatus
from retrieval.engine.run import poll
from retrieval.engine.spec import DeliveryKind, DeliverySpec
from retrieval.rcfile import Environment, parse_text
from retrieval.rcfile.specs import to_mailbox_specs
from tests.support.fake_servers import FakePop3Server

from .conftest import make_spec, message, without_trace

if TYPE_CHECKING:
    from pathlib import Path

    from retrieval.engine.ports import PollStep

TRICKY = (
    b"Return-Path: <dots@example.org>\r\n"
    b"Message-ID: <dots@example.org>\r\n"
    b"Subject: dots and 8 bits\r\n\r\n"
    b".a line starting with a dot\r\n"
    b".\r\n"
    b"..two dots\r\n"
    b"caf\xc3\xa9\r\n"
)


@dataclass
class Entry:
    mail_from: str
    recipients: list[str]
    data: bytes


def read_batch(raw: bytes) -> list[Entry]:
    """Parse a BSMTP file strictly: anything unexpected fails the test."""
    lines = raw.split(b"\r\n")
    assert lines.pop() == b"", "the file does not end with CRLF"
    entries: list[Entry] = []
    commands = iter(lines)
    for line in commands:
        assert line.startswith(b"MAIL FROM:"), line
        entry = Entry(line[len(b"MAIL FROM:") :].decode(), [], b"")
        for command in commands:
            if command == b"DATA":
                break
            assert command.startswith(b"RCPT TO:<"), command
            entry.recipients.append(command[9:-1].decode())
        body = bytearray()
        for data in commands:
            if data == b".":
                break
            body += (data[1:] if data.startswith(b".") else data) + b"\r\n"
        entry.data = bytes(body)
        entries.append(entry)
    return entries


def to_file(path: Path, **options: object) -> DeliverySpec:
    values: dict[str, object] = {
        "kind": DeliveryKind.BSMTP,
        "bsmtp": str(path),
        "recipients": ("joe@example.com",),
        "timeout": 2.0,
    }
    values.update(options)
    return DeliverySpec(**values)  # type: ignore[arg-type]


def run(server: FakePop3Server, delivery: DeliverySpec, **options: object):
    spec = make_spec(server, delivery=delivery, **options)  # type: ignore[arg-type]
    return poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())


class BatchFileTests:
    def test_messages_are_appended_as_fetchmail_writes_them(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "batch"  # created, private to its owner
        seen_at_record: list[int] = []

        def observe(step: PollStep, uid: str) -> None:
            if step == "recorded":  # before the delete: already in the file
                seen_at_record.append(len(read_batch(path.read_bytes())))

        with FakePop3Server([message(1), TRICKY]) as server:
            spec = make_spec(server, delivery=to_file(path))
            report = poll(
                spec,
                ledger=MemoryLedger(),
                transcript=ListTranscript(),
                observe=observe,
            )
            left = list(server.mailbox)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert [m.deleted for m in report.messages] == [True, True]
        assert left == []
        assert seen_at_record == [1, 2]
        first, second = read_batch(path.read_bytes())
        assert first.mail_from == "<sender1@example.org>"
        assert second.mail_from == "<dots@example.org> BODY=8BITMIME"
        assert first.recipients == second.recipients == ["joe@example.com"]
        assert without_trace(first.data) == message(1)
        assert without_trace(second.data) == TRICKY
        assert oct(path.stat().st_mode & 0o777) == "0o600"

    def test_later_polls_append_and_bare_names_get_a_domain(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "batch"
        path.write_bytes(b"")
        with FakePop3Server([message(1)]) as server:
            run(server, to_file(path, recipients=("joe",)))
        with FakePop3Server([message(2)]) as server:
            run(server, to_file(path, recipients=("joe",), smtpaddress="example.net"))
        entries = read_batch(path.read_bytes())
        assert [e.recipients for e in entries] == [
            ["joe@localhost"],  # fetchmail's default domain for BSMTP
            ["joe@example.net"],
        ]
        assert [without_trace(e.data) for e in entries] == [message(1), message(2)]

    def test_a_file_locked_by_another_process_keeps_the_mail(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "batch"
        path.write_bytes(b"")
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import fcntl, sys\n"
                f"f = open({str(path)!r}, 'a')\n"
                "fcntl.lockf(f, fcntl.LOCK_EX)\n"
                "print('locked', flush=True)\n"
                "sys.stdin.read()\n",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert holder.stdout is not None and holder.stdin is not None
        try:
            assert holder.stdout.readline() == b"locked\n"
            with FakePop3Server([message(1)]) as server:
                report = run(server, to_file(path, timeout=0.3))
                left = len(server.mailbox)
        finally:
            holder.stdin.close()
            holder.wait()
        assert report.messages[0].status is MessageStatus.DEFERRED
        assert "another process held its lock for 0.3 seconds" in (
            report.messages[0].listener_reply
        )
        assert left == 1
        assert path.read_bytes() == b""

    @pytest.mark.parametrize("where", ["missing-dir/batch", "/dev/full"])
    def test_a_file_that_cannot_be_written_keeps_the_mail(
        self, tmp_path: Path, where: str
    ) -> None:
        path = tmp_path / where if not where.startswith("/") else where
        with FakePop3Server([message(1)]) as server:
            report = run(server, to_file(path))  # type: ignore[arg-type]
            left = len(server.mailbox)
        assert report.exit_code is ExitCode.SMTP
        assert "could not be written" in report.messages[0].listener_reply
        assert left == 1

    def test_a_failed_sync_leaves_no_half_entry(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "batch"
        path.write_bytes(b"MAIL FROM:<old@x>\r\nRCPT TO:<a@b>\r\nDATA\r\nold\r\n.\r\n")
        before = path.read_bytes()

        def no_space(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(bsmtp.os, "fsync", no_space)
        with FakePop3Server([message(1)]) as server:
            report = run(server, to_file(path))
            left = len(server.mailbox)
        assert report.messages[0].status is MessageStatus.DEFERRED
        assert left == 1
        assert path.read_bytes() == before

    def test_the_rcfile_option_wins_over_mda_as_in_fetchmail(self) -> None:
        config = parse_text(
            "poll mail.example.org proto pop3 user joe pass x "
            'mda "/usr/bin/procmail -d %T" bsmtp /var/spool/batch\n',
            "rc",
        )
        (spec,) = to_mailbox_specs(config, Environment.fixed("joe"))
        assert spec.delivery.kind is DeliveryKind.BSMTP
        assert spec.delivery.bsmtp == "/var/spool/batch"
        assert not spec.extra or all(k != "bsmtp" for k, _ in spec.extra)


def test_the_command_line_writes_standard_output_for_a_dash(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with FakePop3Server([message(1), TRICKY]) as server:
        rc = tmp_path / "rc"
        rc.write_text(
            f"poll 127.0.0.1 proto pop3 port {server.port} user joe pass secret "
            "sslproto ''\n"
        )
        rc.chmod(0o600)
        code = main(["-f", str(rc), "--bsmtp", "-", "-s"])
        out = capfd.readouterr().out
    assert code == ExitCode.SUCCESS
    entries = read_batch(out.encode())
    assert [without_trace(e.data) for e in entries] == [message(1), TRICKY]
