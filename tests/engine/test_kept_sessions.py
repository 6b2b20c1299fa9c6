"""IMAP sessions kept open between polls (retrieval/engine/fetch/kept.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from retrieval.engine.fetch.kept import KeptSessions
from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode
from retrieval.engine.run import poll
from retrieval.engine.spec import MailboxSpec, MailProtocol, Secret
from tests.support.fake_servers import FakeImapServer, FakeSmtpServer, ImapMessage

from .conftest import make_spec, message, without_trace


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def imap_spec(server: FakeImapServer, listener: FakeSmtpServer, **options: Any):
    return make_spec(server, listener, protocol=MailProtocol.IMAP, **options)


def run(spec: MailboxSpec, kept: KeptSessions, ledger: MemoryLedger | None = None):
    transcript = ListTranscript()
    report = poll(
        spec, ledger=ledger or MemoryLedger(), transcript=transcript, kept=kept
    )
    return report, transcript


def verbs(server: FakeImapServer) -> list[str]:
    return [c.split(" ")[1].upper() for c in server.commands if " " in c]


def arrive(server: FakeImapServer, body: bytes) -> None:
    server.messages.append(ImapMessage(server._uidnext(), body))


class ReuseTests:
    def test_the_next_poll_uses_the_session_without_a_login(
        self, listener: FakeSmtpServer
    ) -> None:
        kept = KeptSessions(300)
        with FakeImapServer([message(1)]) as server:
            spec = imap_spec(server, listener)
            first, _ = run(spec, kept)
            assert len(kept) == 1
            arrive(server, message(2))
            second, transcript = run(spec, kept)
            assert "LOGOUT" not in verbs(server)
            kept.close_all()
        assert first.exit_code is ExitCode.SUCCESS, first.error
        assert second.exit_code is ExitCode.SUCCESS, second.error
        assert server.connections == 1
        assert verbs(server).count("LOGIN") + verbs(server).count("AUTHENTICATE") == 1
        assert [without_trace(r.data) for r in listener.received] == [
            message(1),
            message(2),
        ]
        # Each poll deleted and expunged its own message on the one session.
        assert server.messages == []
        text = transcript.text()
        assert "reusing the session logged in at" in text and "(poll 2 on it)" in text
        # The server said nothing while it idled: no NOOP, straight to work.
        assert "NOOP" not in text
        # The report still shows the server's greeting.
        assert second.greeting == first.greeting != ""

    @pytest.mark.parametrize(
        "options",
        [{}, {"keep": True}, {"fetchall": True}, {"keep": True, "fetchall": True}],
        ids=["default", "keep", "fetchall", "keep-fetchall"],
    )
    def test_polls_on_a_kept_session_do_what_polls_that_log_in_do(
        self, options: dict[str, bool]
    ) -> None:
        """Three polls, a message arriving and one read by another client
        between them: the same deliveries and the same server state."""
        outcomes = []
        for kept in (None, KeptSessions(300)):
            ledger = MemoryLedger()
            with (
                FakeSmtpServer() as listener,
                FakeImapServer([message(1), message(2)]) as server,
            ):
                server.messages[1].flags.add("\\Seen")
                spec = imap_spec(server, listener, **options)
                for n in (3, 4, 5):
                    report = poll(
                        spec, ledger=ledger, transcript=ListTranscript(), kept=kept
                    )
                    assert report.exit_code in (ExitCode.SUCCESS, ExitCode.NOMAIL)
                    arrive(server, message(n))
                if kept is not None:
                    kept.close_all()
                outcomes.append(
                    (
                        [without_trace(r.data) for r in listener.received],
                        [(m.uid, sorted(m.flags)) for m in server.messages],
                    )
                )
                connections = server.connections
            assert connections == (3 if kept is None else 1)
        assert outcomes[0] == outcomes[1]
        assert outcomes[0][0]  # something was delivered

    def test_the_folder_is_left_before_the_session_idles_where_the_server_can(
        self, listener: FakeSmtpServer
    ) -> None:
        kept = KeptSessions(300)
        caps = ["IMAP4rev1", "AUTH=PLAIN", "UIDPLUS", "UNSELECT"]
        with FakeImapServer([message(1)], capabilities=caps) as server:
            spec = imap_spec(server, listener)
            run(spec, kept)
            assert verbs(server)[-1] == "UNSELECT"
            arrive(server, message(2))
            report, _ = run(spec, kept)
            kept.close_all()
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert server.connections == 1 and server.messages == []
        # Without UNSELECT the folder stays selected: CLOSE would expunge
        # messages other clients marked deleted.
        assert "CLOSE" not in verbs(server)

    @pytest.mark.parametrize(
        "goodbye",
        [b"", b"* BYE Disconnected for inactivity\r\n"],
        ids=["hang-up", "bye"],
    )
    def test_a_session_the_server_ended_is_replaced_before_anything_is_sent(
        self, listener: FakeSmtpServer, goodbye: bytes
    ) -> None:
        kept = KeptSessions(300)
        with FakeImapServer([message(1)]) as server:
            spec = imap_spec(server, listener)
            run(spec, kept)
            server.tell_clients(goodbye, hang_up=True)  # autologout, a restart
            arrive(server, message(2))
            report, transcript = run(spec, kept)
            assert len(kept) == 1  # the new one, kept in turn
            kept.close_all()
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert server.connections == 2
        assert len(listener.received) == 2
        assert "the kept session is gone; connecting anew" in transcript.text()
        assert server.messages == []

    def test_news_sent_while_idle_are_read_with_noop_and_the_session_used(
        self, listener: FakeSmtpServer
    ) -> None:
        kept = KeptSessions(300)
        with FakeImapServer([message(1)]) as server:
            spec = imap_spec(server, listener)
            run(spec, kept)
            arrive(server, message(2))
            server.tell_clients(b"* 1 EXISTS\r\n")
            report, transcript = run(spec, kept)
            kept.close_all()
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert server.connections == 1
        assert len(listener.received) == 2
        assert "NOOP" in transcript.text()

    def test_a_session_that_spoke_and_refuses_noop_is_closed_and_replaced(
        self, listener: FakeSmtpServer
    ) -> None:
        kept = KeptSessions(300)
        with FakeImapServer(
            [message(1)], overrides={"NOOP": b"{tag} NO [UNAVAILABLE] gone\r\n"}
        ) as server:
            spec = imap_spec(server, listener)
            run(spec, kept)
            server.tell_clients(b"* OK [ALERT] maintenance soon\r\n")
            report, _ = run(spec, kept)
            kept.close_all()
        assert report.exit_code is ExitCode.NOMAIL, report.error
        assert server.connections == 2

    def test_another_password_is_another_session(
        self, listener: FakeSmtpServer
    ) -> None:
        kept = KeptSessions(300)
        with FakeImapServer([message(1)]) as server:
            spec = imap_spec(server, listener)
            run(spec, kept)
            server.password = "changed"
            report, _ = run(replace(spec, password=Secret("changed")), kept)
            assert len(kept) == 2
            kept.close_all()
        assert report.exit_code is ExitCode.NOMAIL, report.error
        assert server.connections == 2


class NotKeptTests:
    def test_a_message_a_listener_answered_wrongly_stays_for_the_next_poll(
        self,
    ) -> None:
        kept = KeptSessions(300)
        with (
            FakeSmtpServer(replies={"MAIL": "hello there"}) as listener,
            FakeImapServer([message(1)]) as server,
        ):
            spec = imap_spec(server, listener)
            report, _ = run(spec, kept)
            assert report.exit_code is not ExitCode.SUCCESS
            assert [m.uid for m in server.messages] == [101]  # not deleted
            listener.replies.clear()
            report, _ = run(spec, kept)
            assert report.exit_code is ExitCode.SUCCESS, report.error
            assert [without_trace(r.data) for r in listener.received] == [message(1)]
            assert server.messages == []
            assert server.connections == 1
            kept.close_all()

    def test_a_listener_that_is_not_there_ends_the_session(self) -> None:
        kept = KeptSessions(300)
        with FakeSmtpServer() as gone:
            pass  # its port is closed now
        with FakeImapServer([message(1)]) as server:
            report, _ = run(imap_spec(server, gone), kept)
            assert report.exit_code is not ExitCode.SUCCESS
            assert len(kept) == 0
            assert "LOGOUT" in verbs(server)
            assert [m.uid for m in server.messages] == [101]

    def test_a_poll_that_fails_drops_its_session(
        self, listener: FakeSmtpServer
    ) -> None:
        kept = KeptSessions(300)
        with FakeImapServer(
            [message(1)], overrides={"UID SEARCH": b"{tag} NO search failed\r\n"}
        ) as server:
            report, _ = run(imap_spec(server, listener), kept)
        assert report.exit_code is not ExitCode.SUCCESS
        assert len(kept) == 0

    @pytest.mark.parametrize(
        "options",
        [
            {"protocol": MailProtocol.POP3},
            {"idle": True},
            {"preconnect": ("true",)},
            {"postconnect": ("true",)},
            {"interface": "lo/127.0.0.1"},
            {"monitor": "lo"},
        ],
        ids=["pop3", "idle", "preconnect", "postconnect", "interface", "monitor"],
    )
    def test_sessions_something_wraps_are_not_kept(self, options: dict) -> None:
        spec = make_spec(FakeImapServer(), protocol=MailProtocol.IMAP)
        server = replace(
            spec.server, protocol=options.pop("protocol", MailProtocol.IMAP)
        )
        assert KeptSessions.key(replace(spec, server=server, **options)) is None

    def test_a_plugin_session_is_not_kept(self) -> None:
        spec = make_spec(FakeImapServer(), protocol=MailProtocol.IMAP)
        plugged = replace(spec.server, plugin=("nc", "%h", "%p"))
        assert KeptSessions.key(replace(spec, server=plugged)) is None

    def test_the_key_shows_no_password(self) -> None:
        spec = make_spec(FakeImapServer(), protocol=MailProtocol.IMAP, password="pw1")
        key = KeptSessions.key(spec)
        assert key is not None and "pw1" not in key
        assert key != KeptSessions.key(replace(spec, password=Secret("pw2")))


class LifetimeTests:
    def test_an_idle_session_past_its_time_is_logged_out(
        self, listener: FakeSmtpServer
    ) -> None:
        clock = Clock()
        kept = KeptSessions(60, clock=clock)
        with FakeImapServer([message(1)]) as server:
            spec = imap_spec(server, listener)
            _, first_transcript = run(spec, kept)
            clock.now += 61
            report, _ = run(spec, kept)
            assert report.exit_code is ExitCode.NOMAIL, report.error
            assert server.connections == 2
            server_verbs = verbs(server)
            kept.close_all()
        assert server_verbs.count("LOGOUT") == 1  # the expired one's
        # The goodbye of the idle session went to no poll's transcript.
        assert "LOGOUT" not in first_transcript.text()

    def test_sweep_logs_out_only_the_expired(self, listener: FakeSmtpServer) -> None:
        clock = Clock()
        kept = KeptSessions(60, clock=clock)
        with FakeImapServer([]) as old, FakeImapServer([]) as new:
            run(imap_spec(old, listener), kept)
            clock.now += 30
            run(imap_spec(new, listener), kept)
            clock.now += 31
            assert kept.sweep() == 1
            assert len(kept) == 1
            assert "LOGOUT" in verbs(old) and "LOGOUT" not in verbs(new)
            kept.close_all()

    def test_the_least_recently_used_goes_beyond_the_limit(
        self, listener: FakeSmtpServer
    ) -> None:
        kept = KeptSessions(300, max_sessions=1)
        with FakeImapServer([]) as first, FakeImapServer([]) as second:
            run(imap_spec(first, listener), kept)
            run(imap_spec(second, listener), kept)
            assert len(kept) == 1
            assert "LOGOUT" in verbs(first) and "LOGOUT" not in verbs(second)
            kept.close_all()

    def test_close_all_says_goodbye(self, listener: FakeSmtpServer) -> None:
        kept = KeptSessions(300)
        with FakeImapServer([]) as server:
            run(imap_spec(server, listener), kept)
            kept.close_all()
            assert len(kept) == 0
            assert "LOGOUT" in verbs(server)

    def test_without_kept_sessions_every_poll_logs_out(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakeImapServer([]) as server:
            spec = imap_spec(server, listener)
            for _ in range(2):
                poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())
        assert server.connections == 2 and verbs(server).count("LOGOUT") == 2
