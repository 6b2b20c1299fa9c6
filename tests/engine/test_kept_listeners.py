"""Listener connections kept open between polls
(retrieval/engine/deliver/kept_listeners.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest

from retrieval.engine.deliver.kept_listeners import KeptListeners
from retrieval.engine.fetch.kept import KeptSessions
from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode, MessageStatus
from retrieval.engine.run import poll
from retrieval.engine.spec import DeliveryKind, MailboxSpec, MailProtocol, Secret
from tests.support.fake_servers import (
    FakeImapServer,
    FakePop3Server,
    FakeSmtpServer,
    ImapMessage,
    wait_for,
)

from .conftest import make_spec, message, without_trace

if TYPE_CHECKING:
    from collections.abc import Callable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(
    spec: MailboxSpec,
    listeners: KeptListeners | None,
    *,
    ledger: MemoryLedger | None = None,
    kept: KeptSessions | None = None,
):
    transcript = ListTranscript()
    report = poll(
        spec,
        ledger=ledger if ledger is not None else MemoryLedger(),
        transcript=transcript,
        kept=kept,
        listeners=listeners,
    )
    return report, transcript.text()


def imap(server: FakeImapServer, listener: FakeSmtpServer, **options: Any):
    return make_spec(server, listener, protocol=MailProtocol.IMAP, **options)


def arrive(server: FakeImapServer, body: bytes) -> None:
    server.messages.append(ImapMessage(server._uidnext(), body))


def hellos(listener: FakeSmtpServer) -> int:
    return sum(c.split(" ")[0].upper() in ("EHLO", "LHLO") for c in listener.commands)


def delivered(listener: FakeSmtpServer) -> list[bytes]:
    return [without_trace(r.data) for r in listener.received]


class ReuseTests:
    def test_polls_of_two_mailboxes_share_one_listener_connection(
        self, listener: FakeSmtpServer
    ) -> None:
        listeners = KeptListeners(300)
        with (
            FakeImapServer([message(1)]) as first,
            FakeImapServer([message(2), message(3)]) as second,
        ):
            one, _ = run(imap(first, listener), listeners)
            assert len(listeners) == 1
            two, text = run(imap(second, listener), listeners)
            arrive(first, message(4))
            three, _ = run(imap(first, listener), listeners)
            listeners.close_all()
        for report in (one, two, three):
            assert report.exit_code is ExitCode.SUCCESS, report.error
        assert listener.connections == 1 and hellos(listener) == 1
        assert delivered(listener) == [message(n) for n in (1, 2, 3, 4)]
        assert first.messages == [] and second.messages == []
        assert "reusing the SMTP connection opened at" in text
        assert "(1 messages on it)" in text
        # The goodbye goes out when the pool closes, to no poll's transcript.
        assert "QUIT" not in text
        assert wait_for(lambda: listener.commands[-1:] == ["QUIT"])

    @pytest.mark.parametrize(
        "options",
        [{}, {"keep": True}, {"fetchall": True}, {"keep": True, "fetchall": True}],
        ids=["default", "keep", "fetchall", "keep-fetchall"],
    )
    def test_polls_on_a_kept_connection_deliver_what_polls_that_connect_do(
        self, options: dict[str, bool]
    ) -> None:
        """Three polls, a message arriving and one read by another client
        between them: the same deliveries and the same server state."""
        outcomes = []
        for listeners in (None, KeptListeners(300)):
            ledger = MemoryLedger()
            with (
                FakeSmtpServer() as listener,
                FakeImapServer([message(1), message(2)]) as server,
            ):
                server.messages[1].flags.add("\\Seen")
                spec = imap(server, listener, **options)
                delivering = 0  # polls that had something to deliver
                for n in (3, 4, 5):
                    report, _ = run(spec, listeners, ledger=ledger)
                    assert report.exit_code in (ExitCode.SUCCESS, ExitCode.NOMAIL)
                    delivering += any(
                        m.status is MessageStatus.DELIVERED for m in report.messages
                    )
                    arrive(server, message(n))
                if listeners is not None:
                    listeners.close_all()
                outcomes.append(
                    (
                        delivered(listener),
                        [(m.uid, sorted(m.flags)) for m in server.messages],
                    )
                )
                connections = listener.connections
            assert delivering >= 2
            assert connections == (delivering if listeners is None else 1)
        assert outcomes[0] == outcomes[1]
        assert outcomes[0][0]  # something was delivered

    def test_pop3_polls_reuse_it_too(self, listener: FakeSmtpServer) -> None:
        listeners = KeptListeners(300)
        with (
            FakePop3Server([message(1)]) as first,
            FakePop3Server([message(2)]) as second,
        ):
            for server in (first, second):
                report, _ = run(make_spec(server, listener), listeners)
                assert report.exit_code is ExitCode.SUCCESS, report.error
        listeners.close_all()
        assert listener.connections == 1
        assert delivered(listener) == [message(1), message(2)]

    def test_an_lmtp_connection_is_kept(self) -> None:
        listeners = KeptListeners(300)
        with (
            FakeSmtpServer(lmtp=True) as listener,
            FakeImapServer([message(1)]) as server,
        ):
            spec = imap(server, listener)
            spec = replace(
                spec, delivery=replace(spec.delivery, kind=DeliveryKind.LMTP)
            )
            run(spec, listeners)
            arrive(server, message(2))
            report, _ = run(spec, listeners)
            listeners.close_all()
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert listener.connections == 1
        assert [c.split(" ")[0] for c in listener.commands].count("LHLO") == 1
        assert delivered(listener) == [message(1), message(2)]

    def test_with_kept_imap_sessions_a_poll_opens_nothing(
        self, listener: FakeSmtpServer
    ) -> None:
        listeners, kept = KeptListeners(300), KeptSessions(300)
        with FakeImapServer([message(1)]) as server:
            spec = imap(server, listener)
            run(spec, listeners, kept=kept)
            arrive(server, message(2))
            report, _ = run(spec, listeners, kept=kept)
            kept.close_all()
        listeners.close_all()
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert (server.connections, listener.connections) == (1, 1)
        assert delivered(listener) == [message(1), message(2)]

    def test_batchlimit_counts_across_the_polls_a_connection_serves(
        self, listener: FakeSmtpServer
    ) -> None:
        listeners = KeptListeners(300)
        with FakeImapServer([message(1)]) as server:
            spec = imap(server, listener, batchlimit=2)
            for n in (2, 3, 4):
                report, _ = run(spec, listeners)
                assert report.exit_code is ExitCode.SUCCESS, report.error
                arrive(server, message(n))
        listeners.close_all()
        # Messages 1 and 2 on the first connection (closed at its limit, not
        # kept), 3 on a second one.
        assert listener.connections == 2
        assert delivered(listener) == [message(1), message(2), message(3)]


def second_poll_connects_anew(
    listener: FakeSmtpServer,
    listeners: KeptListeners,
    meanwhile: Callable[[], None] = lambda: None,
) -> str:
    """Two polls of a message each, ``meanwhile`` between them: the second
    opens a new connection and delivers its message once; its transcript."""
    with FakeImapServer([message(1)]) as server:
        spec = imap(server, listener)
        run(spec, listeners)
        arrive(server, message(2))
        meanwhile()
        report, text = run(spec, listeners)
        listeners.close_all()
    assert report.exit_code is ExitCode.SUCCESS, report.error
    assert [m.status for m in report.messages] == [MessageStatus.DELIVERED]
    assert listener.connections == 2
    assert delivered(listener) == [message(1), message(2)]
    assert server.messages == []
    return text


class StaleTests:
    def test_a_connection_the_listener_closed_is_replaced_before_sending(
        self,
    ) -> None:
        with FakeSmtpServer(drop_on="RSET") as listener:
            second_poll_connects_anew(listener, KeptListeners(300))

    def test_a_listener_that_said_goodbye_while_idle_is_replaced(self) -> None:
        goodbye = b"421 4.4.2 fake.local idle too long\r\n"
        with FakeSmtpServer(overrides={"RSET": goodbye}) as listener:
            second_poll_connects_anew(listener, KeptListeners(300))

    @pytest.mark.parametrize(
        "stray",
        ["421 4.4.2 fake.local closing", "250 2.0.0 one more"],
        ids=["goodbye", "stray-ok"],
    )
    def test_a_connection_with_a_reply_out_of_turn_is_not_reused(
        self, stray: str
    ) -> None:
        """A reply waiting unread when the connection is taken would be read
        as the next command's: the connection is closed unused."""
        with FakeSmtpServer(
            replies={"END": f"250 2.0.0 queued\r\n{stray}"}
        ) as listener:
            text = second_poll_connects_anew(
                listener, KeptListeners(300), listener.replies.clear
            )
        assert "closed or spoke out of turn; connecting anew" in text
        assert listener.rsets == 0  # the stale connection was sent nothing

    def test_an_idle_connection_past_its_time_is_closed(
        self, listener: FakeSmtpServer
    ) -> None:
        clock = Clock()

        def later() -> None:
            clock.now += 61

        second_poll_connects_anew(listener, KeptListeners(60, clock=clock), later)


class NotKeptTests:
    def test_after_a_listener_failure_nothing_is_kept(self) -> None:
        listeners = KeptListeners(300)
        with (
            FakeSmtpServer(replies={"END": "hello there"}) as listener,
            FakeImapServer([message(1)]) as server,
        ):
            spec = imap(server, listener)
            report, _ = run(spec, listeners)
            assert len(listeners) == 0
            assert [m.uid for m in server.messages] == [101]  # not deleted
            listener.replies.clear()
            report, _ = run(spec, listeners)
            listeners.close_all()
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert listener.connections == 2
        assert server.messages == []

    def test_a_poll_that_failed_quits_its_listener_connection(
        self, listener: FakeSmtpServer
    ) -> None:
        """Only a poll that ended cleanly leaves its connection: one that
        stopped half-way (here the ledger could not be written) says QUIT."""

        class BrokenLedger(MemoryLedger):
            def mark_delivered(self, *args: Any, **kwargs: Any) -> None:
                raise OSError("disk full")

        listeners = KeptListeners(300)
        with FakeImapServer([message(1)]) as server:
            with pytest.raises(OSError):
                run(imap(server, listener), listeners, ledger=BrokenLedger())
            assert [m.uid for m in server.messages] == [101]  # not deleted
        assert delivered(listener) == [message(1)]
        assert len(listeners) == 0
        assert listener.commands[-1] == "QUIT"

    def test_a_poll_whose_goodbye_failed_still_keeps_it(
        self, listener: FakeSmtpServer
    ) -> None:
        """Every reply of the listener was read; the mail server's trouble
        at the end changes nothing on this connection."""
        listeners = KeptListeners(300)
        with FakeImapServer(
            [message(1)], overrides={"LOGOUT": b"* BYE going away\r\n"}
        ) as server:
            report, _ = run(imap(server, listener), listeners)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert len(listeners) == 1
        listeners.close_all()
        assert wait_for(lambda: listener.commands[-1:] == ["QUIT"])

    def test_without_kept_connections_every_poll_quits(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakeImapServer([message(1)]) as server:
            spec = imap(server, listener)
            run(spec, None)
            arrive(server, message(2))
            run(spec, None)
        assert listener.connections == 2
        assert [c for c in listener.commands if c == "QUIT"] == ["QUIT", "QUIT"]

    def test_a_plugout_connection_is_not_kept(self) -> None:
        spec = make_spec(FakeImapServer())
        plugged = replace(spec.delivery, plugout=("nc", "%h", "%p"))
        assert KeptListeners.key(plugged, lmtp=False, helo="h") is None


class KeyTests:
    def test_the_key_shows_no_password_and_tells_logins_apart(self) -> None:
        spec = make_spec(FakeImapServer(), FakeSmtpServer())
        delivery = replace(
            spec.delivery, esmtp_name="relay", esmtp_password=Secret("pw1")
        )
        key = KeptListeners.key(delivery, lmtp=False, helo="h")
        assert key is not None and "pw1" not in key
        other = replace(delivery, esmtp_password=Secret("pw2"))
        assert key != KeptListeners.key(other, lmtp=False, helo="h")

    @pytest.mark.parametrize(
        "change",
        [
            {"hosts": ("127.0.0.1/2525",)},
            {"smtpaddress": "example.org"},
            {"esmtp_name": "someone"},
            {"listener_verify": False},
        ],
        ids=["hosts", "smtpaddress", "login", "verify"],
    )
    def test_what_the_connection_was_opened_with_is_in_the_key(
        self, change: dict[str, Any]
    ) -> None:
        delivery = make_spec(FakeImapServer(), FakeSmtpServer()).delivery
        key = KeptListeners.key(delivery, lmtp=False, helo="h")
        assert key != KeptListeners.key(
            replace(delivery, **change), lmtp=False, helo="h"
        )
        assert key != KeptListeners.key(delivery, lmtp=True, helo="h")
        assert key != KeptListeners.key(delivery, lmtp=False, helo="other")

    def test_what_each_message_carries_is_not(self) -> None:
        """Envelope recipients and the bounce settings go with each message,
        not with the connection: mailboxes differing there share one."""
        delivery = make_spec(FakeImapServer(), FakeSmtpServer()).delivery
        other = replace(delivery, recipients=("ann@example.com",), bouncemail=True)
        assert KeptListeners.key(delivery, lmtp=False, helo="h") == KeptListeners.key(
            other, lmtp=False, helo="h"
        )
