"""The engine's promises to the rest of the project: no Django, no leaked secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode
from retrieval.engine.run import poll
from retrieval.engine.spec import MailProtocol, Secret, TlsMode
from tests.support.fake_servers import FakeImapServer, FakePop3Server, FakeSmtpServer

from .conftest import PASSWORD, make_spec, message

if TYPE_CHECKING:
    import ssl

    from retrieval.engine.ports import Direction


def test_the_engine_imports_no_django_or_celery() -> None:
    code = (
        "import sys\n"
        "import retrieval.engine, retrieval.engine.run, retrieval.engine.memory\n"
        "import retrieval.engine.fetch.pop3, retrieval.engine.fetch.imap, retrieval.engine.deliver.smtp\n"
        "import retrieval.engine.deliver.mda, tests.support.fake_servers\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'django', 'celery'})\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": ""}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_a_secret_never_shows_in_its_repr() -> None:
    assert PASSWORD not in repr(Secret(PASSWORD))
    assert PASSWORD not in repr(make_spec(FakePop3Server(), password=PASSWORD))


def transcript_text(transcript: ListTranscript) -> str:
    return "\n".join(text for _, text in transcript.lines)


def test_the_password_appears_nowhere_in_the_transcript(
    server_tls: ssl.SSLContext, ca_file: str
) -> None:
    """Every login path, plus a server that echoes the password back (case 36)."""
    echo = f"-ERR [AUTH] you said {PASSWORD}\r\n".encode()
    cases: list[tuple[object, dict[str, object]]] = [
        (FakePop3Server([message(1)], password=PASSWORD), {}),
        (FakePop3Server([message(1)], password="other", overrides={"PASS": echo}), {}),
        (
            FakePop3Server(
                [message(1)], password=PASSWORD, capabilities=["UIDL", "SASL PLAIN"]
            ),
            {"auth": "plain"},
        ),
        (FakeImapServer([message(1)], password=PASSWORD), {"protocol": MailProtocol.IMAP}),
        (
            FakeImapServer(
                [message(1)],
                password=PASSWORD,
                capabilities=["IMAP4rev1", "AUTH=PLAIN", "SASL-IR"],
            ),
            {"protocol": MailProtocol.IMAP},
        ),
        (
            FakeImapServer([message(1)], password=PASSWORD, capabilities=["IMAP4rev1"]),
            {"protocol": MailProtocol.IMAP},
        ),
        (
            FakeImapServer([message(1)], password=PASSWORD, starttls=server_tls),
            {"protocol": MailProtocol.IMAP, "tls": TlsMode.STARTTLS, "ca_file": ca_file},
        ),
    ]
    for server, options in cases:
        assert isinstance(server, FakePop3Server | FakeImapServer)
        with server, FakeSmtpServer() as listener:
            transcript = ListTranscript()
            spec = make_spec(server, listener, password=PASSWORD, **options)  # type: ignore[arg-type]
            report = poll(spec, ledger=MemoryLedger(), transcript=transcript)
        text = transcript_text(transcript) + report.error + " ".join(report.notes)
        assert PASSWORD not in text, (options, text)
        assert "********" in text
        if server.password == PASSWORD:
            assert report.exit_code is ExitCode.SUCCESS, (options, report.error)


def test_message_bodies_are_not_transcribed(listener: FakeSmtpServer) -> None:
    with FakePop3Server([message(1, b"TOP-SECRET-BODY\r\n")]) as server:
        transcript = ListTranscript()
        poll(make_spec(server, listener), ledger=MemoryLedger(), transcript=transcript)
    text = transcript_text(transcript)
    assert "TOP-SECRET-BODY" not in text
    assert "TOP 1: " in text and " octets" in text


class _FillingTranscript(ListTranscript):
    """Keeps ``room`` lines, then says it keeps nothing more (a bounded one)."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room
        self.offered = 0

    @property
    def keeps(self) -> bool:
        return len(self.lines) < self.room

    def record(self, direction: Direction, text: str) -> None:
        self.offered += 1
        if self.keeps:
            super().record(direction, text)


def test_a_transcript_that_fills_up_is_given_no_more_lines(
    listener: FakeSmtpServer,
) -> None:
    """``keeps`` is read line by line: once it turns False (the service's
    transcript is full), no line is formatted, checked or offered to it, on
    the mail server's connection and the listener's alike."""
    with FakePop3Server([message(n) for n in range(1, 6)]) as server:
        full = _FillingTranscript(room=8)
        report = poll(make_spec(server, listener), ledger=MemoryLedger(), transcript=full)
        everything = ListTranscript()
    with FakePop3Server([message(n) for n in range(1, 6)]) as server:
        poll(make_spec(server, listener), ledger=MemoryLedger(), transcript=everything)
    assert report.exit_code is ExitCode.SUCCESS and report.delivered == 5
    assert len(full.lines) == 8
    assert full.offered == 8 < len(everything.lines)
    assert full.lines[1:] == everything.lines[1:8]  # after "connected to" its port


def test_line_breaks_in_credentials_stop_the_poll_before_connecting() -> None:
    server = FakePop3Server([message(1)])
    with server:
        spec = make_spec(server, password="pw\r\nDELE 1")
        report = poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())
    assert report.exit_code is ExitCode.SYNTAX
    assert server.connections == 0


def test_a_folder_name_cannot_inject_a_command(listener: FakeSmtpServer) -> None:
    with FakeImapServer([message(1)]) as server:
        spec = make_spec(
            server, listener, protocol=MailProtocol.IMAP, folders=("INBOX\r\nA1 DELETE x",)
        )
        report = poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())
    assert report.exit_code is ExitCode.SYNTAX
    assert not any("DELETE" in c for c in server.commands)


def test_unsupported_or_unoffered_mechanisms_say_so_before_any_secret() -> None:
    with FakePop3Server([message(1)]) as server:
        reports = {
            auth: poll(
                make_spec(server, auth=auth),
                ledger=MemoryLedger(),
                transcript=ListTranscript(),
            )
            for auth in ("cram-md5", "ntlm", "gssapi", "external", "unheard-of")
        }
    assert reports["cram-md5"].exit_code is ExitCode.AUTHFAIL
    assert "does not offer CRAM-MD5" in reports["cram-md5"].error
    for auth in ("ntlm", "gssapi", "unheard-of"):
        assert reports[auth].exit_code is ExitCode.SYNTAX, auth
        assert "no password was sent" in reports[auth].error, auth
    assert reports["external"].exit_code is ExitCode.AUTHFAIL
    assert not any(c.startswith(("PASS", "USER", "AUTH")) for c in server.commands)


def test_unknown_options_are_listed_in_the_report(listener: FakeSmtpServer) -> None:
    with FakePop3Server() as server:
        spec = make_spec(server, listener, extra=(("nonesuch", "x"),))
        report = poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())
    assert report.exit_code is ExitCode.NOMAIL
    assert report.notes == ["The option nonesuch 'x' is not supported yet."]


def test_long_listings_are_summarised_in_the_transcript(
    listener: FakeSmtpServer,
) -> None:
    bodies = [message(i) for i in range(60)]
    for server in (
        FakePop3Server(bodies),
        FakeImapServer(bodies, capabilities=["IMAP4rev1", "AUTH=PLAIN"]),
    ):
        with server:
            transcript = ListTranscript()
            protocol = (
                MailProtocol.POP3 if isinstance(server, FakePop3Server) else MailProtocol.IMAP
            )
            # A size limit below every message: listed and sized, none fetched.
            spec = make_spec(server, listener, protocol=protocol, keep=True, limit=1)
            report = poll(spec, ledger=MemoryLedger(), transcript=transcript)
        assert len(report.messages) == 60 and report.delivered == 0
        text = transcript_text(transcript)
        assert "(40 more lines not shown)" in text
        assert len(transcript.lines) < 100  # not one line per message


def test_the_rcfile_retrieval_options_reach_the_spec() -> None:
    from retrieval.rcfile import Environment, parse_text, to_mailbox_specs

    text = (
        'set properties "global"\nset showdots\n'
        "poll mail.example.org proto imap uidl user joe pass pw\n"
        "  limit 5000 limitflush warnings 60 fetchsizelimit 0 fastuidl 2\n"
        '  sslproto tls1.2 sslfingerprint "AB:CD" properties "mine"\n'
        "poll other.example.org proto pop3 user ann pass pw sslproto tls1\n"
        "poll third.example.org proto pop3 user bob pass pw sslproto ''\n"
    )
    first, second, third = to_mailbox_specs(
        parse_text(text), Environment.fixed("joe@example.org")
    )
    assert (first.limit, first.limitflush, first.warnings) == (5000, True, 60)
    assert (first.fetchsizelimit, first.fastuidl) == (0, 2)
    assert (first.showdots, first.properties) == (True, "mine")
    assert first.server.tls.min_version == "=TLS1.2"
    assert first.server.tls.fingerprint == "AB:CD"
    assert not any(key in ("uidl", "sslproto", "idle") for key, _ in first.extra)
    assert (second.fastuidl, second.warnings, second.fetchsizelimit) == (4, 3600, 100)
    assert second.server.tls.min_version == "tls1"
    assert second.properties == "global"
    assert third.server.tls.mode is TlsMode.NONE
    (idler,) = to_mailbox_specs(
        parse_text("poll a.example.org proto imap user joe pass pw idle\n"),
        Environment.fixed("joe@example.org"),
    )
    assert idler.idle and not any(key == "idle" for key, _ in idler.extra)
