"""Around the session: preconnect, postconnect, interface and monitor, refusals.

The commands are small Python programs that leave traces in files (the side
effects fetchmail users rely on: a tunnel opened, a log line written). The
interface checks read the real loopback interface; the monitor's packet
counts are scripted, since every test on this machine moves loopback traffic.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from retrieval.engine.check import check
from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode, MessageStatus, PollReport
from retrieval.engine.run import poll
from retrieval.engine.wire import link
from retrieval.rcfile import Environment, parse_text
from retrieval.rcfile.specs import to_mailbox_specs
from tests.support.fake_servers import FakePop3Server, FakeSmtpServer, refused_port

from .conftest import make_spec, message

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from retrieval.engine.spec import MailboxSpec


@pytest.fixture(autouse=True)
def _fresh_link_records() -> Iterator[None]:
    link.forget_activity()
    yield
    link.forget_activity()


def python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def note(path: Path, word: str, *, status: int = 0, say: str = "") -> tuple[str, ...]:
    """A command that appends ``word`` to ``path``, prints ``say``, exits ``status``."""
    return python(
        f"import sys; open({str(path)!r}, 'a').write({word!r} + '\\n'); "
        f"print({say!r}) if {say!r} else None; sys.exit({status})"
    )


def run(spec: MailboxSpec) -> tuple[PollReport, str]:
    transcript = ListTranscript()
    report = poll(spec, ledger=MemoryLedger(), transcript=transcript)
    return report, transcript.text()


class ConnectCommandTests:
    def test_they_run_before_and_after_the_session(
        self, listener: FakeSmtpServer, tmp_path: Path
    ) -> None:
        log = tmp_path / "log"
        with FakePop3Server([message(1)]) as server:
            spec = make_spec(
                server,
                listener,
                preconnect=note(log, "pre", say="tunnel up"),
                postconnect=note(log, "post", say="tunnel down"),
            )
            report, text = run(spec)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert log.read_text() == "pre\npost\n"
        assert len(listener.received) == 1
        order = [
            text.index("preconnect said: tunnel up"),
            text.index("preconnect: exited with status 0"),
            text.index("connected to 127.0.0.1"),
            text.index("postconnect said: tunnel down"),
            text.index("postconnect: exited with status 0"),
        ]
        assert order == sorted(order)

    def test_a_failing_preconnect_skips_the_poll_but_not_postconnect(
        self, listener: FakeSmtpServer, tmp_path: Path
    ) -> None:
        log = tmp_path / "log"
        with FakePop3Server([message(1)]) as server:
            spec = make_spec(
                server,
                listener,
                preconnect=note(log, "pre", status=3, say="no route to host"),
                postconnect=note(log, "post"),
            )
            report, text = run(spec)
        assert report.exit_code is ExitCode.SYNTAX  # fetchmail's PS_SYNTAX
        assert "pre-connection command" in report.error
        assert "exited with status 3; the mail server was not contacted" in (
            report.error
        )
        assert server.connections == 0
        assert log.read_text() == "pre\npost\n"
        assert "preconnect said: no route to host" in text

    def test_a_failing_postconnect_fails_a_poll_that_succeeded(
        self, listener: FakeSmtpServer, tmp_path: Path
    ) -> None:
        with FakePop3Server([message(1)]) as server:
            spec = make_spec(
                server, listener, postconnect=note(tmp_path / "log", "x", status=1)
            )
            report, _ = run(spec)
            left = len(server.mailbox)
        assert report.exit_code is ExitCode.SYNTAX
        assert "post-connection command" in report.error
        assert "exited with status 1 after a poll that succeeded." in report.error
        assert report.messages[0].status is MessageStatus.DELIVERED
        assert left == 0

    def test_a_failing_postconnect_does_not_hide_why_the_poll_failed(
        self, listener: FakeSmtpServer, tmp_path: Path
    ) -> None:
        with FakePop3Server() as server:
            spec = make_spec(
                server, listener, postconnect=note(tmp_path / "log", "x", status=1)
            )
        spec = replace(spec, server=replace(spec.server, port=refused_port()))
        report, _ = run(spec)
        assert report.exit_code is ExitCode.SOCKET
        assert any("post-connection command" in n for n in report.notes)

    def test_a_command_that_never_ends_is_stopped(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server([message(1)]) as server:
            spec = make_spec(
                server,
                listener,
                timeout=0.5,
                preconnect=python("import time; time.sleep(600)"),
            )
            report, _ = run(spec)
        assert report.exit_code is ExitCode.SYNTAX
        assert "did not finish within 0.5 seconds" in report.error
        assert server.connections == 0

    def test_a_child_left_in_the_background_is_not_waited_for(
        self, listener: FakeSmtpServer, tmp_path: Path
    ) -> None:
        """``preconnect "ssh -f -L 1110:mail:110 mail sleep 20"``: the command
        returns while its child keeps the tunnel (and our output) open."""
        pid_file = tmp_path / "child"
        background = python(
            "import os, sys, time\n"
            "if os.fork() == 0:\n"
            f"    open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
            "    print('tunnel child running', flush=True)\n"
            "    time.sleep(600)\n"
            "    sys.exit(0)\n"
            "print('forked', flush=True)\n"
        )
        with FakePop3Server([message(1)]) as server:
            spec = make_spec(server, listener, timeout=3.0, preconnect=background)
            try:
                report, text = run(spec)
            finally:
                if pid_file.exists():
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert "preconnect said: forked" in text
        assert pid_file.exists()

    def test_a_command_that_needs_a_shell_is_refused_unrun(
        self, tmp_path: Path
    ) -> None:
        log = tmp_path / "log"
        config = parse_text(
            f"poll mail.example.org proto pop3 user joe pass secret "
            f"preconnect 'date >> {log}'\n",
            "rc",
        )
        (spec,) = to_mailbox_specs(config, Environment.fixed("joe"))
        report, text = run(spec)
        assert report.exit_code is ExitCode.SYNTAX
        assert "preconnect 'date >>" in report.error
        assert "needs a shell (>)" in report.error
        assert not log.exists()
        assert "connected" not in text


def test_check_mode_runs_them_too(listener: FakeSmtpServer, tmp_path: Path) -> None:
    """fetchmail -c runs pre- and postconnect around its count, as a poll does."""
    log = tmp_path / "log"
    with FakePop3Server([message(1)]) as server:
        spec = make_spec(
            server,
            listener,
            preconnect=note(log, "pre"),
            postconnect=note(log, "post"),
        )
        counted = check(spec, ledger=MemoryLedger(), transcript=ListTranscript())
    assert (counted.exit_code, counted.waiting) == (ExitCode.SUCCESS, 1)
    assert log.read_text() == "pre\npost\n"
    assert listener.received == []


class InterfaceTests:
    @pytest.mark.parametrize("rule", ["lo/127.0.0.1", "lo/127.0.0.0/255.0.0.0"])
    def test_a_link_that_is_up_with_the_address_is_polled(
        self, listener: FakeSmtpServer, rule: str
    ) -> None:
        with FakePop3Server([message(1)]) as server:
            report, _ = run(make_spec(server, listener, interface=rule))
        assert report.exit_code is ExitCode.SUCCESS, report.error

    @pytest.mark.parametrize(
        ("rule", "words"),
        [
            ("lo/10.9.9.9", "lo/10.9.9.9 IP address excluded"),
            ("nosuch0/10.9.9.9", "nosuch0/10.9.9.9 down"),
        ],
    )
    def test_otherwise_the_poll_is_skipped(
        self, listener: FakeSmtpServer, rule: str, words: str
    ) -> None:
        with FakePop3Server([message(1)]) as server:
            report, text = run(make_spec(server, listener, interface=rule))
        assert report.exit_code is ExitCode.NOMAIL
        assert report.notes == [f"Skipping poll of 127.0.0.1, {words}"]
        assert server.connections == 0
        assert f"skipping poll of 127.0.0.1, {words}" in text

    @pytest.mark.parametrize("rule", ["lo", "lo/not-an-address", "lo/1.2.3.4/33"])
    def test_a_malformed_rule_is_refused(
        self, listener: FakeSmtpServer, rule: str
    ) -> None:
        with FakePop3Server([message(1)]) as server:
            report, _ = run(make_spec(server, listener, interface=rule))
        assert report.exit_code is ExitCode.SYNTAX
        assert f"interface {rule!r}" in report.error
        assert server.connections == 0


class MonitorTests:
    def test_a_quiet_link_skips_the_next_poll(
        self, listener: FakeSmtpServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        packets = {"ppp0": 1000}
        monkeypatch.setattr(link, "packet_count", packets.get)
        outcomes = []
        with FakePop3Server([message(1)]) as server:
            spec = make_spec(server, listener, monitor="ppp0", name="isp")
            for count in (1000, 1000, 1000 + link.MONITOR_SLOP, 1100):
                packets["ppp0"] = count
                report, _ = run(spec)
                outcomes.append((report.exit_code, report.notes))
        skipped = (ExitCode.NOMAIL, ["Skipping poll of isp, ppp0 inactive"])
        # The first poll (nothing noted yet) runs; then only traffic beyond
        # fetchmail's slop of 5 packets since the last poll lets one through.
        assert outcomes[0][0] is ExitCode.SUCCESS
        assert outcomes[1:3] == [skipped, skipped]
        assert outcomes[3] == (ExitCode.NOMAIL, [])
        assert server.connections == 2


class ObsoleteProtocolTests:
    @pytest.mark.parametrize(
        ("proto", "words"), [("pop2", "POP2 (RFC 937)"), ("rpop", "RPOP (RFC 1081)")]
    )
    def test_they_are_refused_before_anything_is_contacted(
        self, proto: str, words: str
    ) -> None:
        config = parse_text(
            # A one-letter password would withhold every line containing that
            # letter, this error included (see retrieval.engine.redact).
            f"poll mail.example.org proto {proto} port 110 user joe pass qq7\n",
            "rc",
        )
        (spec,) = to_mailbox_specs(config, Environment.fixed("joe"))
        report, text = run(spec)
        assert report.exit_code is ExitCode.SYNTAX
        assert f"protocol {proto!r}: {words}" in report.error
        assert "connected" not in text

    def test_sdps_is_polled_as_pop3_with_a_note(self, listener: FakeSmtpServer) -> None:
        config = parse_text(
            "poll mail.example.org proto sdps user joe pass secret\n", "rc"
        )
        (parsed,) = to_mailbox_specs(config, Environment.fixed("joe"))
        with FakePop3Server([message(1)]) as server:
            spec = make_spec(server, listener, extra=parsed.extra)
            report, _ = run(spec)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert report.notes == [
            "The option protocol 'sdps' is not applied: SDPS (Demon Internet's POP3 "
            "extension) is polled as plain POP3; its *ENV envelope lookup is not "
            "used, so multidrop reads the headers."
        ]
