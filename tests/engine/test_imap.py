"""IMAP polls against the scripted fake server: UIDs, flags, expunge, faults."""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode, MessageStatus
from retrieval.engine.run import poll
from retrieval.engine.spec import MailProtocol, TlsMode
from tests.support.fake_servers import FakeImapServer, FakeSmtpServer

from .conftest import make_spec, message, without_trace
from .test_pop3 import TRICKY

if TYPE_CHECKING:
    import ssl


def run(server: FakeImapServer, listener: FakeSmtpServer | None, **options: object):
    ledger = options.pop("ledger", None) or MemoryLedger()
    transcript = ListTranscript()
    spec = make_spec(server, listener, protocol=MailProtocol.IMAP, **options)  # type: ignore[arg-type]
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
            report, _, transcript = run(server, listener, timeout=5)
        # Refused on the announcement: a client that started reading would
        # have waited for the bytes and ended on the 5 s timeout (SOCKET).
        assert report.exit_code is ExitCode.PROTOCOL
        assert "a message of 9999999999 bytes, more than the limit" in report.error
        assert not any(t.startswith("FETCH body") for _, t in transcript.lines)
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


class ImapAnnouncedCapabilitiesTests:
    """RFC 3501 7.1: capabilities in the greeting and in the login's tagged OK
    spare the CAPABILITY commands (two round trips of every poll)."""

    GREETING = b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready\r\n"

    def test_capabilities_announced_unasked_are_used(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakeImapServer(
            [message(1)],
            greeting=self.GREETING,
            login_capabilities=["IMAP4rev1", "UIDPLUS", "IDLE"],
        ) as server:
            report, _, _ = run(server, listener)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert "CAPABILITY" not in sent(server)
        # SASL-IR from the greeting: the initial response rides the command.
        assert sent(server)[0].startswith("AUTHENTICATE PLAIN ")
        # UIDPLUS from the login's OK: deletions by UID EXPUNGE.
        assert any(c.startswith("UID EXPUNGE") for c in sent(server))

    def test_without_them_the_commands_ask(self, listener: FakeSmtpServer) -> None:
        with FakeImapServer([message(1)], greeting=self.GREETING) as server:
            report, _, _ = run(server, listener)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert sent(server)[:2] == ["AUTHENTICATE PLAIN AGpvZQBzZWNyZXQ=", "CAPABILITY"]

    def test_none_in_cleartext_before_starttls(
        self, listener: FakeSmtpServer, server_tls: ssl.SSLContext, ca_file: str
    ) -> None:
        with FakeImapServer(
            [message(1)],
            starttls=server_tls,
            greeting=b"* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] hi\r\n",
        ) as server:
            report, _, _ = run(server, listener, tls=TlsMode.STARTTLS, ca_file=ca_file)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert sent(server)[:3] == ["CAPABILITY", "STARTTLS", "CAPABILITY"]


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


class ImapSeenAndFlushTests:
    def read(self, server: FakeImapServer, *uids: int) -> None:
        for m in server.messages:
            if m.uid in uids:
                m.flags.add("\\Seen")

    def test_messages_read_elsewhere_are_old_unless_fetchall(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakeImapServer([message(1), message(2)]) as server:
            self.read(server, 101)
            report, _, _ = run(server, listener, keep=True)
            assert [m.uid for m in report.messages] == ["102"]
            again, _, _ = run(server, listener, keep=True, fetchall=True)
        assert [m.uid for m in again.messages] == ["101", "102"]
        assert "UID SEARCH UNSEEN NOT DELETED" in sent(server)

    def test_flush_deletes_read_messages_without_fetching_them(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakeImapServer([message(1), message(2)]) as server:
            self.read(server, 101)
            report, _, _ = run(server, listener, keep=True, flush=True)
        assert [m.uid for m in server.messages] == [102]
        assert [(m.uid, m.status, m.deleted) for m in report.messages] == [
            ("101", MessageStatus.SKIPPED, True),
            ("102", MessageStatus.DELIVERED, False),
        ]
        assert len(listener.received) == 1
        assert any("deleted without fetching (flush)" in n for n in report.notes)


class ImapBatchTests:
    def test_bodies_come_in_one_uid_fetch_of_a_set(
        self, listener: FakeSmtpServer
    ) -> None:
        bodies = [message(i) for i in range(6)]
        with FakeImapServer(bodies) as server:
            report, _, _ = run(server, listener)
        assert [without_trace(r.data) for r in listener.received] == bodies
        assert [c for c in sent(server) if "BODY" in c] == [
            "UID FETCH 101:106 (UID BODY.PEEK[])"
        ]
        assert report.deleted == 6 and server.messages == []

    def test_a_message_missing_from_the_batch_is_skipped_alone(
        self, listener: FakeSmtpServer
    ) -> None:
        bodies = [message(i) for i in range(3)]
        with FakeImapServer(bodies) as server:
            original = server._fetch

            def without_102(client, arg, ok):  # type: ignore[no-untyped-def]
                gone = next(m for m in server.messages if m.uid == 102)
                server.messages.remove(gone)  # another client expunged it
                original(client, arg, ok)
                server.messages.insert(1, gone)

            server._fetch = without_102  # type: ignore[method-assign]
            report, _, _ = run(server, listener)
        assert [m.status for m in report.messages] == [
            MessageStatus.DELIVERED,
            MessageStatus.FAILED,
            MessageStatus.DELIVERED,
        ]
        assert "no longer on the server" in report.messages[1].listener_reply
        assert [m.uid for m in server.messages] == [102]

    def test_a_listener_failure_mid_batch_still_commits_the_delivered(
        self, listener: FakeSmtpServer
    ) -> None:
        bodies = [message(i) for i in range(4)]
        with FakeImapServer(bodies) as server:
            spec = make_spec(server, listener, protocol=MailProtocol.IMAP)
            listener.stop()  # the listener is gone before the first delivery
            report = poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())
        assert report.exit_code is ExitCode.SMTP
        assert len(server.messages) == 4
        assert sent(server)[-1] == "LOGOUT"


class ImapRev2Tests:
    def test_an_imap4rev2_server_gets_esearch_and_uid_expunge(
        self, listener: FakeSmtpServer
    ) -> None:
        bodies = [message(i) for i in range(3)]
        with FakeImapServer(bodies, capabilities=["IMAP4rev2", "AUTH=PLAIN"]) as server:
            server.messages[1].flags.add("\\Seen")
            report, _, _ = run(server, listener)
        assert [m.uid for m in report.messages] == ["101", "103"]
        assert "UID SEARCH RETURN (ALL) UNSEEN NOT DELETED" in sent(server)
        assert "UID EXPUNGE 101,103" in sent(server)
        assert [m.uid for m in server.messages] == [102]


class ImapIdleTests:
    def test_it_fetches_what_arrives_while_idle(self, listener: FakeSmtpServer) -> None:
        with FakeImapServer(
            [message(1)],
            capabilities=["IMAP4rev1", "AUTH=PLAIN", "IDLE"],
            arrivals=[message(2)],
        ) as server:
            report, _, transcript = run(
                server, listener, idle=True, idle_rounds=2, idle_reissue=0.3
            )
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert [without_trace(r.data) for r in listener.received] == [
            message(1),
            message(2),
        ]
        assert server.messages == []
        assert sent(server).count("IDLE") == 2 and "DONE" in server.commands
        notes = [t for _, t in transcript.lines]
        assert "idle round 1: new mail" in notes
        assert "idle round 2: nothing new" in notes

    def test_the_stop_hook_ends_an_idle_poll(self, listener: FakeSmtpServer) -> None:
        # What the server had been told each time the hook was asked.
        asked: list[list[str]] = []

        def stop() -> bool:
            asked.append(list(server.commands))
            return len(asked) > 2

        with FakeImapServer(
            [], capabilities=["IMAP4rev1", "AUTH=PLAIN", "IDLE"]
        ) as server:
            spec = make_spec(
                server,
                listener,
                protocol=MailProtocol.IMAP,
                idle=True,
                idle_rounds=1,
                idle_reissue=60,
            )
            report = poll(
                spec, ledger=MemoryLedger(), transcript=ListTranscript(), stop=stop
            )
        assert report.exit_code is ExitCode.NOMAIL
        # The hook said stop while the IDLE was outstanding (its last command,
        # no DONE yet), and DONE and LOGOUT followed. Had the wait not asked
        # the hook, it would have run to the 60 s re-issue and the one round
        # allowed would have ended the poll, the hook asked twice, never idle.
        assert len(asked) == 4, "the hook was not asked while idle"
        said_stop = asked[2]
        assert said_stop[-1].endswith(" IDLE") and "DONE" not in said_stop
        assert server.commands[len(said_stop) :][0] == "DONE"
        assert sent(server).count("IDLE") == 1 and sent(server)[-1] == "LOGOUT"

    def test_without_idle_it_watches_with_noop(self, listener: FakeSmtpServer) -> None:
        with FakeImapServer([], arrivals=[message(1)]) as server:
            report, _, _ = run(
                server, listener, idle=True, idle_rounds=1, idle_reissue=0.2
            )
        assert report.delivered == 1 and "NOOP" in sent(server)
        assert "IDLE" not in sent(server)

    def test_idle_watches_one_folder_only(self, listener: FakeSmtpServer) -> None:
        with FakeImapServer([message(1)]) as server:
            report, _, _ = run(server, listener, idle=True, folders=("INBOX", "B"))
        assert report.exit_code is ExitCode.SYNTAX and server.connections == 0

    def test_idle_on_pop3_is_noted_and_the_poll_runs_once(
        self, listener: FakeSmtpServer
    ) -> None:
        from tests.support.fake_servers import FakePop3Server

        with FakePop3Server([message(1)]) as server:
            spec = make_spec(server, listener, idle=True)
            report = poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())
        assert report.delivered == 1
        assert "The option idle works with IMAP only; this poll ran once." in (
            report.notes
        )


class ImapAuthTests:
    def test_any_prefers_cram_md5(self, listener: FakeSmtpServer) -> None:
        caps = ["IMAP4rev1", "AUTH=PLAIN", "AUTH=CRAM-MD5"]
        with FakeImapServer([message(1)], capabilities=caps) as server:
            report, _, _ = run(server, listener)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert "AUTHENTICATE CRAM-MD5" in sent(server)
        assert not any(
            c.startswith(("LOGIN", "AUTHENTICATE PLAIN")) for c in sent(server)
        )

    def test_any_moves_on_when_cram_md5_is_refused(
        self, listener: FakeSmtpServer
    ) -> None:
        caps = ["IMAP4rev1", "AUTH=CRAM-MD5"]
        with FakeImapServer(
            [message(1)], capabilities=caps, refused_mechanisms=["CRAM-MD5"]
        ) as server:
            report, _, _ = run(server, listener)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert [c.split()[0] for c in sent(server)][1:3] == ["AUTHENTICATE", "LOGIN"]

    def test_a_named_mechanism_is_never_replaced(
        self, listener: FakeSmtpServer
    ) -> None:
        caps = ["IMAP4rev1", "AUTH=CRAM-MD5"]
        with FakeImapServer(
            [message(1)], capabilities=caps, refused_mechanisms=["CRAM-MD5"]
        ) as server:
            report, _, _ = run(server, listener, auth="cram-md5")
        assert report.exit_code is ExitCode.AUTHFAIL
        assert not any(c.startswith("LOGIN") for c in sent(server))

    def test_sasl_login_and_tokens(self, listener: FakeSmtpServer) -> None:
        for mechanism, caps in [
            ("login", ["IMAP4rev1", "AUTH=LOGIN", "LOGINDISABLED"]),
            ("xoauth2", ["IMAP4rev1", "AUTH=XOAUTH2", "SASL-IR"]),
            ("oauthbearer", ["IMAP4rev1", "AUTH=OAUTHBEARER"]),
        ]:
            with FakeImapServer(
                [message(1)], capabilities=caps, password="tok"
            ) as server:
                report, _, transcript = run(
                    server, listener, auth=mechanism, password="tok"
                )
            assert report.exit_code is ExitCode.SUCCESS, (mechanism, report.error)
            assert f"AUTHENTICATE {mechanism.upper()}" in " ".join(sent(server))
            assert "tok" not in "\n".join(t for _, t in transcript.lines)

    def test_a_rejected_token_reports_the_servers_reason(
        self, listener: FakeSmtpServer
    ) -> None:
        caps = ["IMAP4rev1", "AUTH=OAUTHBEARER", "SASL-IR"]
        with FakeImapServer([message(1)], capabilities=caps, password="good") as server:
            report, _, _ = run(server, listener, auth="oauthbearer", password="expired")
        assert report.exit_code is ExitCode.AUTHFAIL
        assert "Token error: status 401, scope mail" in report.error
        assert "AQ==" in server.commands  # RFC 7628's answer to the error challenge

    def test_hostile_challenges_cancel_the_login(
        self, listener: FakeSmtpServer
    ) -> None:
        caps = ["IMAP4rev1", "AUTH=CRAM-MD5"]
        for challenge in (b"+ !!not base64!!\r\n", b"+ " + b"QUFB" * 3000 + b"\r\n"):
            with FakeImapServer(
                [message(1)], capabilities=caps, hostile_sasl=challenge
            ) as server:
                report, _, _ = run(server, listener, auth="cram-md5")
            assert report.exit_code is ExitCode.PROTOCOL, report.error
            assert "cannot be answered" in report.error
            assert "*" in server.commands
            assert len(server.messages) == 1

    def test_a_read_only_folder_is_lockbusy(self, listener: FakeSmtpServer) -> None:
        with FakeImapServer([message(1)], read_only=True) as server:
            report, _, _ = run(server, listener)
        assert report.exit_code is ExitCode.LOCKBUSY
        assert listener.received == []


class ImapHostileTests:
    def test_a_server_closing_mid_literal_deletes_nothing(
        self, listener: FakeSmtpServer
    ) -> None:
        cut = {"UID FETCH BODY": b"* 1 FETCH (UID 101 BODY[] {500}\r\nSubject: hal"}
        with FakeImapServer([message(1), message(2)], hangup_after=cut) as server:
            report, ledger, _ = run(server, listener)
        assert report.exit_code is ExitCode.SOCKET
        assert len(server.messages) == 2 and ledger.marks == []
        assert listener.received == []

    def test_nul_bytes_in_a_message_arrive_unchanged(
        self, listener: FakeSmtpServer
    ) -> None:
        body = message(1, b"a\0b\0\r\n\0\r\n")
        with FakeImapServer([body]) as server:
            report, _, _ = run(server, listener)
        assert report.delivered == 1
        assert without_trace(listener.received[0].data) == body

    def test_a_reply_that_never_ends_is_cut_off(self, listener: FakeSmtpServer) -> None:
        endless = {"UID SEARCH": b"* SEARCH" + b" 1" * 700_000}  # no line end
        with FakeImapServer([message(1)], overrides=endless) as server:
            report, _, _ = run(server, listener)
        assert report.exit_code is ExitCode.PROTOCOL
        assert "longer than" in report.error and len(server.messages) == 1


def test_fetchsizelimit_sets_the_sizes_asked_per_command(
    listener: FakeSmtpServer,
) -> None:
    with FakeImapServer([message(i) for i in range(5)]) as server:
        report, _, transcript = run(server, listener, fetchsizelimit=2, showdots=True)
    assert report.delivered == 5
    assert [c for c in sent(server) if "RFC822.SIZE" in c] == [
        "UID FETCH 101:102 (UID RFC822.SIZE)",
        "UID FETCH 103:104 (UID RFC822.SIZE)",
        "UID FETCH 105 (UID RFC822.SIZE)",
    ]
    dots = [t for _, t in transcript.lines if t.startswith("reading message UID")]
    assert len(dots) == 5
