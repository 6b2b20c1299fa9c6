"""plugin / plugout: the protocol spoken over a program's stdin and stdout.

The program in these tests is a small Python bridge to a fake server (what
``ssh host imapd`` or ``openssl s_client`` are to a real one); the live tests
(tests/live/test_plugin_dovecot.py) run the real recipes against Dovecot.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode, MessageStatus, PollReport
from retrieval.engine.run import poll
from retrieval.engine.spec import DeliverySpec, MailProtocol, TlsMode
from retrieval.engine.wire import tunnel
from retrieval.engine.wire.commands import expand, split_command
from retrieval.rcfile import Environment, parse_text
from retrieval.rcfile.specs import to_mailbox_specs
from tests.support.fake_servers import FakeImapServer, FakePop3Server, FakeSmtpServer

from .conftest import make_spec, message, without_trace

if TYPE_CHECKING:
    import ssl
    from pathlib import Path

    from retrieval.engine.spec import MailboxSpec

# What ssh or openssl s_client are to a real server: bytes both ways.
BRIDGE = """
import os, socket, sys, threading
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
print("bridge to", sys.argv[1], sys.argv[2], file=sys.stderr, flush=True)
def upstream():
    while data := os.read(0, 65536):
        sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
threading.Thread(target=upstream, daemon=True).start()
while data := sock.recv(65536):
    os.write(1, data)
"""
BRIDGE_ARGV = (sys.executable, "-c", BRIDGE, "%h", "%p")


def python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def with_plugin(
    spec: MailboxSpec, argv: tuple[str, ...], **server: object
) -> MailboxSpec:
    return replace(spec, server=replace(spec.server, plugin=argv, **server))  # type: ignore[arg-type]


def run(spec: MailboxSpec) -> tuple[PollReport, ListTranscript]:
    transcript = ListTranscript()
    report = poll(spec, ledger=MemoryLedger(), transcript=transcript)
    return report, transcript


def started_pid(transcript: ListTranscript, label: str = "plugin") -> int:
    match = re.search(rf"{label}: started .* \(process (\d+)\)", transcript.text())
    assert match is not None, transcript.text()
    return int(match.group(1))


class PluginTests:
    def test_a_pop3_poll_runs_through_the_program(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server([message(1), message(2)]) as server:
            spec = with_plugin(make_spec(server, listener), BRIDGE_ARGV)
            report, transcript = run(spec)
            left = list(server.mailbox)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert [m.status for m in report.messages] == [MessageStatus.DELIVERED] * 2
        assert [without_trace(r.data) for r in listener.received] == [
            message(1),
            message(2),
        ]
        assert left == []
        text = transcript.text()
        # %h and %p became the host and port a TCP connection would have used.
        assert f"bridge to 127.0.0.1 {server.port}" in text
        assert f"plugin stderr: bridge to 127.0.0.1 {server.port}" in text
        assert "plugin: command exited with status 0" in text

    def test_implicit_tls_runs_over_the_program(
        self, listener: FakeSmtpServer, server_tls: ssl.SSLContext, ca_file: str
    ) -> None:
        with FakeImapServer([message(1)], tls=server_tls) as server:
            spec = make_spec(
                server,
                listener,
                protocol=MailProtocol.IMAP,
                tls=TlsMode.IMPLICIT,
                ca_file=ca_file,
            )
            report, transcript = run(with_plugin(spec, BRIDGE_ARGV))
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert "TLS established" in transcript.text()
        assert len(listener.received) == 1

    def test_a_program_that_fails_says_why_in_the_error(
        self, listener: FakeSmtpServer
    ) -> None:
        failing = python(
            "import sys; print('ssh: connect to host mail.example.org port 22: "
            "Connection refused', file=sys.stderr); sys.exit(255)"
        )
        with FakePop3Server([message(1)]) as server:
            report, transcript = run(with_plugin(make_spec(server, listener), failing))
        assert report.exit_code is ExitCode.SOCKET
        assert "plugin command exited with status 255" in report.error
        assert "Connection refused" in report.error
        assert server.connections == 0
        assert "plugin stderr: ssh: connect to host" in transcript.text()

    def test_a_program_that_cannot_start_is_a_socket_error(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakePop3Server([message(1)]) as server:
            spec = with_plugin(make_spec(server, listener), ("/nonexistent/ssh", "%h"))
            report, _ = run(spec)
        assert report.exit_code is ExitCode.SOCKET
        assert "could not be started" in report.error

    def test_a_silent_program_times_out_and_is_stopped(
        self, listener: FakeSmtpServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(tunnel, "EXIT_WAIT", 0.05)
        silent = python("import time; time.sleep(600)")  # ignores end of input
        with FakePop3Server([message(1)]) as server:
            spec = with_plugin(make_spec(server, listener, timeout=0.5), silent)
            report, transcript = run(spec)
        assert report.exit_code is ExitCode.SOCKET
        assert "did not answer within 0.5 seconds" in report.error
        with pytest.raises(ProcessLookupError):
            os.kill(started_pid(transcript), 0)
        assert "plugin: command was ended by signal 15" in transcript.text()

    def test_a_host_that_could_be_an_option_is_never_run(
        self, listener: FakeSmtpServer, tmp_path: Path
    ) -> None:
        marker = tmp_path / "ran"
        touch = python(f"open({str(marker)!r}, 'w'); import sys; print(sys.argv)")
        with FakePop3Server([message(1)]) as server:
            spec = with_plugin(
                make_spec(server, listener),
                (*touch, "%h"),
                via="-oProxyCommand=evil",
            )
            report, _ = run(spec)
        assert report.exit_code is ExitCode.SYNTAX
        assert "cannot be given to the plugin command" in report.error
        assert not marker.exists()


class PlugoutTests:
    def test_delivery_runs_through_the_program(self, listener: FakeSmtpServer) -> None:
        delivery = DeliverySpec(
            hosts=(f"127.0.0.1/{listener.port}",),
            recipients=("joe@example.com",),
            timeout=3.0,
            plugout=BRIDGE_ARGV,
        )
        with FakePop3Server([message(1)]) as server:
            report, transcript = run(make_spec(server, delivery=delivery))
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert [without_trace(r.data) for r in listener.received] == [message(1)]
        text = transcript.text()
        assert f"plugout: started {sys.executable} -c" in text
        assert f"plugout stderr: bridge to 127.0.0.1 {listener.port}" in text

    def test_a_dead_program_keeps_the_mail(self, listener: FakeSmtpServer) -> None:
        delivery = DeliverySpec(
            hosts=(f"127.0.0.1/{listener.port}",),
            recipients=("joe@example.com",),
            timeout=3.0,
            plugout=python("import sys; sys.exit(3)"),
        )
        with FakePop3Server([message(1)]) as server:
            report, _ = run(make_spec(server, delivery=delivery))
            left = len(server.mailbox)
        assert report.exit_code is ExitCode.SMTP
        assert "plugout command exited with status 3" in report.error
        assert left == 1 and listener.received == []


class CommandLineTests:
    def test_placeholders_are_filled_inside_single_arguments(self) -> None:
        argv = ("ssh", "%h", "-p", "%p", "exec imapd %h", "100%%", "%x")
        assert expand(argv, {"h": "mail.example.org", "p": "22"}) == [
            "ssh",
            "mail.example.org",
            "-p",
            "22",
            "exec imapd mail.example.org",
            "100%",
            "%x",
        ]

    @pytest.mark.parametrize(
        "text",
        [
            "ssh %h imapd | tee /tmp/log",
            "openssl s_client -connect %h:%p 2>/dev/null",
            "ssh %h imapd; rm -rf ~",
            "ssh $HOST imapd",
            "ssh `hostname` imapd",
            "ssh 'unbalanced",
            'echo "$HOME"',
            "",
        ],
    )
    def test_what_needs_a_shell_is_not_split(self, text: str) -> None:
        assert split_command(text) is None

    @pytest.mark.parametrize(
        ("text", "argv"),
        [
            ('python3 -c "import x; x.run()"', ("python3", "-c", "import x; x.run()")),
            ("echo '$HOME | `x`'", ("echo", "$HOME | `x`")),
            (r"a \; b", ("a", ";", "b")),
        ],
    )
    def test_quoted_shell_characters_are_plain_text(
        self, text: str, argv: tuple[str, ...]
    ) -> None:
        assert split_command(text) == argv

    def test_an_rcfile_plugin_that_needs_a_shell_refuses_the_poll(self) -> None:
        config = parse_text(
            "poll mail.example.org proto imap "
            "plugin 'openssl s_client -connect %h:%p 2>/dev/null' "
            "user joe pass secret\n",
            "rc",
        )
        (spec,) = to_mailbox_specs(config, Environment.fixed("joe"))
        assert spec.server.plugin == ()
        report, transcript = run(spec)
        assert report.exit_code is ExitCode.SYNTAX
        assert "plugin 'openssl s_client" in report.error
        assert "needs a shell (>)" in report.error
        assert "connected" not in transcript.text()

    def test_an_rcfile_plugin_becomes_an_argument_list(self) -> None:
        config = parse_text(
            'poll mail.example.org proto imap plugin "ssh -C %h /usr/sbin/imapd" '
            "user joe pass secret\n",
            "rc",
        )
        (spec,) = to_mailbox_specs(config, Environment.fixed("joe"))
        assert spec.server.plugin == ("ssh", "-C", "%h", "/usr/sbin/imapd")
        assert not any(key == "plugin" for key, _ in spec.extra)
