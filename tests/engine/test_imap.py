"""IMAP polls against the scripted fake server: UIDs, flags, expunge, faults."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode, MessageStatus
from retrieval.engine.run import poll
from retrieval.engine.spec import Protocol, TlsMode
from retrieval.engine.testing import FakeImapServer, FakeSmtpServer

from .conftest import make_spec, message, without_trace
from .test_pop3 import TRICKY

if TYPE_CHECKING:
    import ssl


def run(server: FakeImapServer, listener: FakeSmtpServer | None, **options: object):
    ledger = options.pop("ledger", None) or MemoryLedger()
    transcript = ListTranscript()
    spec = make_spec(server, listener, protocol=Protocol.IMAP, **options)  # type: ignore[arg-type]
    report = poll(spec, ledger=ledger, transcript=transcript)  # type: ignore[arg-type]
    return report, ledger, transcript


def sent(server: FakeImapServer) -> list[str]:
    """The commands without their tags."""
    return [c.split(" ", 1)[1] for c in server.commands if " " in c]


class ImapDeliveryTests:
    def test_it_delivers_by_uid_and_expunges_only_its_own_messages(
        self, listener: FakeSmtpServer
    ) -> None:
        bodies = [message(1), TRICKY, message(3)]
        with FakeImapServer(bodies) as server:
            server.messages.append(
                server.messages[0].__class__(999, b"x", {"\\Deleted"})
            )
            report, ledger, _ = run(server, listener)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert [without_trace(r.data) for r in listener.received] == bodies
        assert all(m.deleted for m in report.messages)
        # Another client's \Deleted message survives: UID EXPUNGE names ours.
        assert [m.uid for m in server.messages] == [999]
        assert "UID EXPUNGE 101:103" in sent(server)
        assert ledger.marks == [
            ("INBOX", 1234, "101"),
            ("INBOX", 1234, "102"),
            ("INBOX", 1234, "103"),
        ]
        assert all("BODY.PEEK[]" in c for c in sent(server) if "BODY" in c)

    def test_it_falls_back_to_expunge_without_uidplus(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakeImapServer(
            [message(1)], capabilities=["IMAP4rev1", "AUTH=PLAIN"]
        ) as server:
            report, _, _ = run(server, listener)
        assert report.messages[0].deleted and "EXPUNGE" in sent(server)

    def test_it_expunges_every_n_deletes_when_asked(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakeImapServer([message(i) for i in range(5)]) as server:
            run(server, listener, expunge=2)
        assert [c for c in sent(server) if "EXPUNGE" in c] == [
            "UID EXPUNGE 101:102",
            "UID EXPUNGE 103:104",
            "UID EXPUNGE 105",
        ]

    def test_keep_examines_read_only_and_skips_known_uids(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakeImapServer([message(1), message(2)]) as server:
            first, ledger, _ = run(server, listener, keep=True)
            second, _, _ = run(server, listener, keep=True, ledger=ledger)
        assert first.delivered == 2 and second.exit_code is ExitCode.NOMAIL
        assert len(server.messages) == 2
        assert 'EXAMINE "INBOX"' in sent(server)
        assert not any("STORE" in c for c in sent(server))

    def test_it_uses_login_when_plain_is_not_offered(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakeImapServer([message(1)], capabilities=["IMAP4rev1"]) as server:
            report, _, transcript = run(server, listener)
        assert report.exit_code is ExitCode.SUCCESS
        assert ("C", 'A0002 LOGIN "joe" ********') in transcript.lines

    def test_it_sends_a_non_ascii_password_as_a_literal(
        self, listener: FakeSmtpServer
    ) -> None:
        password = "p\u00e4ss w\u00f6rd"
        with FakeImapServer(
            [message(1)], capabilities=["IMAP4rev1"], password=password
        ) as server:
            report, _, transcript = run(server, listener, password=password)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert password not in "\n".join(t for _, t in transcript.lines)

    def test_it_refuses_login_when_logindisabled(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakeImapServer(
            [message(1)], capabilities=["IMAP4rev1", "LOGINDISABLED"]
        ) as server:
            report, _, _ = run(server, listener)
        assert report.exit_code is ExitCode.AUTHFAIL
        assert "no password was sent" in report.error
        assert not any(c.startswith(("LOGIN", "AUTHENTICATE")) for c in sent(server))

    def test_it_renumbered_folder_is_left_alone_in_keep_mode(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakeImapServer([message(1)]) as server:
            _, ledger, _ = run(server, listener, keep=True)
            server.uidvalidity = 99
            again, _, _ = run(server, listener, keep=True, ledger=ledger)
        assert again.exit_code is ExitCode.NOMAIL and len(listener.received) == 1
        assert any("renumbered" in note for note in again.notes)

    def test_a_message_expunged_by_someone_else_is_skipped(
        self, listener: FakeSmtpServer
    ) -> None:
        overrides = {"UID FETCH BODY": b"{tag} OK nothing to fetch\r\n"}
        with FakeImapServer([message(1)], overrides=overrides) as server:
            report, _, _ = run(server, listener)
        assert report.messages[0].status is MessageStatus.FAILED
        assert report.exit_code is ExitCode.ERROR
        assert len(server.messages) == 1

    def test_an_unknown_folder_is_a_server_error(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakeImapServer([message(1)]) as server:
            report, _, _ = run(server, listener, folders=("Nope",))
        assert report.exit_code is ExitCode.ERROR
        assert "The folder 'Nope' could not be opened" in report.error


class ImapFaultsTests:
    def test_wrong_password_is_authfail(self, listener: FakeSmtpServer) -> None:
        with FakeImapServer([message(1)]) as server:
            report, _, _ = run(server, listener, password="nope")
        assert report.exit_code is ExitCode.AUTHFAIL
        assert "Wrong user name or password" in report.error
        assert len(server.messages) == 1

    def test_a_literal_claiming_gigabytes_is_refused_before_reading(
        self, listener: FakeSmtpServer
    ) -> None:
        overrides = {"UID FETCH BODY": b"* 1 FETCH (UID 101 BODY[] {9999999999}\r\n"}
        with FakeImapServer([message(1)], overrides=overrides) as server:
            started = time.monotonic()
            report, _, _ = run(server, listener, timeout=5)
        assert time.monotonic() - started < 2  # no waiting for the gigabytes
        assert report.exit_code is ExitCode.PROTOCOL
        assert "9999999999 bytes" in report.error
        assert len(server.messages) == 1

    def test_a_literal_that_stalls_times_out(self, listener: FakeSmtpServer) -> None:
        overrides = {"UID FETCH BODY": b"* 1 FETCH (UID 101 BODY[] {100000000}\r\nabc"}
        with FakeImapServer([message(1)], overrides=overrides) as server:
            report, _, _ = run(server, listener, timeout=0.5)
        assert report.exit_code is ExitCode.SOCKET
        assert len(server.messages) == 1 and listener.received == []

    def test_a_stalled_greeting_times_out(self, listener: FakeSmtpServer) -> None:
        with FakeImapServer(greeting=b"") as server:
            report, _, _ = run(server, listener, timeout=0.3)
        assert report.exit_code is ExitCode.SOCKET
        assert "did not answer" in report.error

    def test_an_over_long_line_is_a_protocol_error(
        self, listener: FakeSmtpServer
    ) -> None:
        overrides = {"CAPABILITY": b"* CAPABILITY " + b"X" * (2 * 1024 * 1024)}
        with FakeImapServer([message(1)], overrides=overrides) as server:
            report, _, _ = run(server, listener)
        assert report.exit_code is ExitCode.PROTOCOL

    def test_a_wrong_tag_is_a_protocol_error(self, listener: FakeSmtpServer) -> None:
        with FakeImapServer(
            [message(1)], overrides={"CAPABILITY": b"Z9 OK\r\n"}
        ) as server:
            report, _, _ = run(server, listener)
        assert report.exit_code is ExitCode.PROTOCOL

    def test_a_body_for_another_uid_is_a_protocol_error(
        self, listener: FakeSmtpServer
    ) -> None:
        overrides = {
            "UID FETCH BODY": b"* 1 FETCH (UID 555 BODY[] {3}\r\nabc)\r\n{tag} OK\r\n"
        }
        with FakeImapServer([message(1)], overrides=overrides) as server:
            report, _, _ = run(server, listener)
        assert report.exit_code is ExitCode.PROTOCOL
        assert listener.received == [] and len(server.messages) == 1


class ImapTlsTests:
    def test_it_upgrades_with_starttls_and_rereads_capabilities(
        self, listener: FakeSmtpServer, server_tls: ssl.SSLContext, ca_file: str
    ) -> None:
        with FakeImapServer([message(1)], starttls=server_tls) as server:
            report, _, _ = run(server, listener, tls=TlsMode.STARTTLS, ca_file=ca_file)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert sent(server)[:4] == [
            "CAPABILITY",
            "STARTTLS",
            "CAPABILITY",
            "AUTHENTICATE PLAIN",
        ]

    def test_preauth_on_cleartext_ends_the_poll_before_any_command(
        self, listener: FakeSmtpServer, server_tls: ssl.SSLContext, ca_file: str
    ) -> None:
        with FakeImapServer(
            [message(1)], starttls=server_tls, greeting=b"* PREAUTH welcome\r\n"
        ) as server:
            report, _, _ = run(server, listener, tls=TlsMode.STARTTLS, ca_file=ca_file)
        assert report.exit_code is ExitCode.SOCKET
        assert "PREAUTH" in report.error
        assert server.commands == []
        assert report.greeting == "* PREAUTH welcome"

    def test_it_stops_without_starttls_capability(
        self, listener: FakeSmtpServer, ca_file: str
    ) -> None:
        with FakeImapServer([message(1)]) as server:
            report, _, _ = run(server, listener, tls=TlsMode.STARTTLS, ca_file=ca_file)
        assert report.exit_code is ExitCode.SOCKET
        assert report.error.startswith("The server does not offer STARTTLS")
        assert sent(server) == ["CAPABILITY"]

    def test_it_stops_when_starttls_is_refused(
        self, listener: FakeSmtpServer, server_tls: ssl.SSLContext, ca_file: str
    ) -> None:
        with FakeImapServer(
            [message(1)],
            starttls=server_tls,
            overrides={"STARTTLS": b"{tag} NO not today\r\n"},
        ) as server:
            report, _, _ = run(server, listener, tls=TlsMode.STARTTLS, ca_file=ca_file)
        assert report.exit_code is ExitCode.SOCKET
        assert sent(server) == ["CAPABILITY", "STARTTLS"]

    def test_cleartext_injected_after_starttls_ok_is_refused(
        self, listener: FakeSmtpServer, server_tls: ssl.SSLContext, ca_file: str
    ) -> None:
        overrides = {
            "STARTTLS": b"{tag} OK go\r\n* OK [CAPABILITY IMAP4rev1] injected\r\n"
        }
        with FakeImapServer(
            [message(1)], starttls=server_tls, overrides=overrides
        ) as server:
            report, _, _ = run(server, listener, tls=TlsMode.STARTTLS, ca_file=ca_file)
        assert report.exit_code is ExitCode.SOCKET
        assert "unexpected data" in report.error

    def test_it_speaks_imaps(
        self, listener: FakeSmtpServer, server_tls: ssl.SSLContext, ca_file: str
    ) -> None:
        with FakeImapServer([message(1)], tls=server_tls) as server:
            report, _, _ = run(server, listener, tls=TlsMode.IMPLICIT, ca_file=ca_file)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert b"with IMAPS" in listener.received[0].data
