"""PIPELINING (RFC 2920): the envelope and DATA in one write, replies read in order.

A listener that offers PIPELINING gets RSET, MAIL, every RCPT and DATA in one
write, and from the second message on that write is the one that ends the
previous message's body (RFC 2920 3.1): one round trip a message. Every reply is
still judged on its own, so a refused MAIL, a refused RCPT among several, a DATA
refused because no RCPT was accepted, a listener that answers in the wrong
order or hangs up midway each end the way they would one command at a time:
nothing lost, each recipient's outcome right. Real listeners that offer it
(Postfix, Dovecot's LMTP) are in tests/live/test_smtp_pipelining_live.py.
"""

from __future__ import annotations

import pytest

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import MessageStatus
from retrieval.engine.run import MEANWHILE_BYTES, poll
from retrieval.engine.spec import (
    DeliveryKind,
    DeliverySpec,
    MailProtocol,
    MultidropSpec,
)
from tests.support.fake_servers import (
    ClientGone,
    FakeClient,
    FakeImapServer,
    FakePop3Server,
    FakeSmtpServer,
    wait_for,
)

from .conftest import make_spec, message

THREE = ("a@example.com", "b@example.com", "c@example.com")


def deliver(
    listener: FakeSmtpServer,
    server: FakePop3Server,
    recipients: tuple[str, ...] = ("joe@example.com",),
    delivery_options: dict[str, object] | None = None,
    **options: object,
):
    ledger = MemoryLedger()
    delivery = DeliverySpec(
        kind=DeliveryKind.LMTP if listener.lmtp else DeliveryKind.SMTP,
        hosts=(f"127.0.0.1/{listener.port}",),
        recipients=recipients,
        timeout=2.0,
        **(delivery_options or {}),  # type: ignore[arg-type]
    )
    spec = make_spec(server, delivery=delivery, **options)  # type: ignore[arg-type]
    report = poll(spec, ledger=ledger, transcript=ListTranscript())
    return report, ledger


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_a_message_costs_one_round_trip(lmtp: bool) -> None:
    """Greeting -> EHLO, EHLO -> envelope+DATA, 354 -> body, final dot and the
    next envelope+DATA -> 250 and 354 for it ... -> QUIT: 3 + 1 per message
    (two per message when each envelope waited for the previous reply)."""
    count = 5
    with (
        FakeSmtpServer(lmtp=lmtp) as listener,
        FakePop3Server([message(n) for n in range(1, count + 1)]) as server,
    ):
        report, _ = deliver(listener, server, THREE)
    assert [m.status for m in report.messages] == [MessageStatus.DELIVERED] * count
    assert len(listener.received) == count and server.mailbox == []
    assert listener.connections == 1
    assert listener.turns == 3 + count


def test_without_pipelining_each_command_waits_for_its_reply() -> None:
    with (
        FakeSmtpServer(overrides={"EHLO": b"250 fake.local\r\n"}) as listener,
        FakePop3Server([message(1), message(2)]) as server,
    ):
        deliver(listener, server, THREE)
    assert len(listener.received) == 2
    # per message: MAIL, 3 RCPT, DATA, body, plus RSET before the second
    assert listener.turns == 2 + (1 + 3 + 1 + 1) * 2 + 1


def test_the_envelope_and_data_leave_in_one_write() -> None:
    with (
        FakeSmtpServer() as listener,
        FakePop3Server([message(1)]) as server,
    ):
        report, _ = deliver(listener, server, THREE)
    assert report.messages[0].status is MessageStatus.DELIVERED
    assert listener.commands[1:6] == [
        "MAIL FROM:<sender1@example.org>",
        *(f"RCPT TO:<{r}>" for r in THREE),
        "DATA",
    ]


def test_one_refused_rcpt_of_three_gets_nothing_and_the_others_get_it() -> None:
    refused = {"RCPT:b@example.com": "550 5.1.1 no such user"}
    with (
        FakeSmtpServer(replies=refused) as listener,
        FakePop3Server([message(1), message(2)]) as server,
    ):
        report, ledger = deliver(listener, server, THREE)
    assert [r.recipients for r in listener.received] == [
        ["a@example.com", "c@example.com"]
    ] * 2
    # b@ refused for good: kept (softbounce) and said why; a@ and c@ have it,
    # on record per recipient, so a retry offers it to b@ alone.
    assert [m.status for m in report.messages] == [MessageStatus.REFUSED] * 2
    assert report.messages[0].listener_reply == "550 5.1.1 no such user"
    assert len(server.mailbox) == 2 and ledger.marks == []
    assert ledger.partial == {
        ("INBOX", None, uid): {"a@example.com", "c@example.com"}
        for uid in ("uid-1", "uid-2")
    }


def test_a_refused_mail_sends_no_body_and_keeps_the_connection() -> None:
    with (
        FakeSmtpServer(
            replies={"MAIL": "451 4.3.0 later", "RCPT": "503 5.5.1 MAIL first"}
        ) as listener,
        FakePop3Server([message(1), message(2)]) as server,
    ):
        report, ledger = deliver(listener, server, THREE)
    assert [m.status for m in report.messages] == [MessageStatus.DEFERRED] * 2
    assert listener.received == [] and len(server.mailbox) == 2
    assert ledger.marks == []
    # DATA was refused (no recipient), so the connection stayed in step.
    assert listener.connections == 1 and listener.rsets == 1


def test_all_rcpts_refused_then_data_554_keeps_the_message() -> None:
    with (
        FakeSmtpServer(replies={"RCPT": "550 5.1.1 nobody"}) as listener,
        FakePop3Server([message(1)]) as server,
    ):
        report, _ = deliver(listener, server, THREE)
    assert report.messages[0].status is MessageStatus.REFUSED
    assert listener.received == [] and len(server.mailbox) == 1
    assert listener.commands[-2:] == ["DATA", "QUIT"]


def test_a_354_after_every_rcpt_was_refused_is_hung_up_on() -> None:
    """A listener that says 354 with no recipient waits for a body; an empty one
    would be a message. Closing the connection aborts it instead."""
    with (
        FakeSmtpServer(
            replies={"RCPT": "550 5.1.1 nobody", "DATA": "354 go on anyway"}
        ) as listener,
        FakePop3Server([message(1), message(2)]) as server,
    ):
        report, _ = deliver(listener, server, THREE)
    assert [m.status for m in report.messages] == [MessageStatus.REFUSED] * 2
    assert listener.received == [] and len(server.mailbox) == 2
    assert listener.connections == 2  # a fresh connection for the second message


def test_a_listener_dropping_after_the_rcpts_loses_nothing() -> None:
    with (
        FakeSmtpServer(drop_on="DATA") as listener,
        FakePop3Server([message(1), message(2)]) as server,
    ):
        report, ledger = deliver(listener, server, THREE)
    assert [m.status for m in report.messages] == [MessageStatus.DEFERRED] * 2
    assert listener.received == [] and len(server.mailbox) == 2
    assert ledger.marks == []


def test_replies_out_of_order_defer_the_message() -> None:
    """354 where the MAIL reply belongs: the listener is not in step with us."""
    with (
        FakeSmtpServer(overrides={"MAIL": b"354 go ahead\r\n"}) as listener,
        FakePop3Server([message(1)]) as server,
    ):
        report, ledger = deliver(listener, server, THREE)
    assert report.messages[0].status is MessageStatus.DEFERRED
    assert listener.received == [] and len(server.mailbox) == 1
    assert ledger.marks == []


def test_a_temporary_rcpt_refusal_sends_no_body_to_the_others() -> None:
    with (
        FakeSmtpServer(replies={"RCPT:c@example.com": "450 4.2.1 busy"}) as listener,
        FakePop3Server([message(1)]) as server,
    ):
        report, _ = deliver(listener, server, THREE)
    assert report.messages[0].status is MessageStatus.DEFERRED
    assert listener.received == [] and len(server.mailbox) == 1


def test_lmtp_reads_one_reply_per_accepted_recipient_after_the_dot() -> None:
    replies = {
        "RCPT:b@example.com": "550 5.1.1 no such user",
        "END:c@example.com": "452 4.2.2 over quota",
    }
    with (
        FakeSmtpServer(lmtp=True, replies=replies) as listener,
        FakePop3Server([message(1)]) as server,
    ):
        report, ledger = deliver(listener, server, THREE)
    assert report.messages[0].status is MessageStatus.DEFERRED
    # a@ has it: recorded per recipient, so the retry does not repeat it.
    assert ledger.partial == {("INBOX", None, "uid-1"): {"a@example.com"}}
    assert len(server.mailbox) == 1


def test_multidrop_one_refused_recipient_of_three() -> None:
    multidrop = MultidropSpec(
        names=(("alice", "alice"), ("bob", "bob"), ("carol", "carol")),
        envelope=None,  # from To/Cc
        localdomains=("client.example",),
    )
    raw = (
        b"From: x@example.org\r\nMessage-ID: <md@example.org>\r\n"
        b"To: alice@client.example, bob@client.example\r\n"
        b"Cc: carol@client.example\r\nSubject: to three\r\n\r\nhello\r\n"
    )
    with (
        FakeSmtpServer(
            replies={"RCPT:bob@client.example": "550 5.1.1 unknown"}
        ) as listener,
        FakePop3Server([raw]) as server,
    ):
        report, ledger = deliver(listener, server, (), multidrop=multidrop)
    assert [r.recipients for r in listener.received] == [
        ["alice@client.example", "carol@client.example"]
    ]
    assert report.messages[0].status is MessageStatus.REFUSED
    assert report.messages[0].listener_reply == "550 5.1.1 unknown"
    assert len(server.mailbox) == 1  # kept for bob (softbounce): nothing lost
    assert ledger.partial == {
        ("INBOX", None, "uid-1"): {"alice@client.example", "carol@client.example"}
    }


def test_the_next_envelope_leaves_with_the_final_dot() -> None:
    """Same commands as one message at a time, in fewer writes: the second
    envelope was sent before the first message's final reply was read, and
    each message still arrives once, with its own sender and body."""
    with (
        FakeSmtpServer() as listener,
        FakePop3Server([message(n) for n in (1, 2, 3)]) as server,
    ):
        report, ledger = deliver(listener, server, THREE)
    assert [m.status for m in report.messages] == [MessageStatus.DELIVERED] * 3
    envelope = [*(f"RCPT TO:<{r}>" for r in THREE), "DATA"]
    assert listener.commands[1:] == [
        "MAIL FROM:<sender1@example.org>",
        *envelope,
        "RSET",
        "MAIL FROM:<sender2@example.org>",
        *envelope,
        "RSET",
        "MAIL FROM:<sender3@example.org>",
        *envelope,
        "QUIT",
    ]
    assert [(r.mail_from, b"Subject: test" in r.data) for r in listener.received] == [
        (f"sender{n}@example.org", True) for n in (1, 2, 3)
    ]
    assert [r.data.split(b"Subject: ")[1][:6] for r in listener.received] == [
        b"test 1",
        b"test 2",
        b"test 3",
    ]
    assert len(ledger.marks) == 3 and server.mailbox == []


def test_a_bounce_between_two_messages_cancels_the_early_envelope() -> None:
    """The next message's DATA was answered 354 already when a bounce must go
    out first: hanging up is the only way to take that DATA back, and the
    next message goes on a new connection; no body lands in the wrong place."""
    refused = {"END:b@example.com": "550 5.1.1 gone"}
    with (
        FakeSmtpServer(lmtp=True, replies=refused) as listener,
        FakePop3Server([message(n) for n in (1, 2, 3)]) as server,
    ):
        report, _ = deliver(
            listener,
            server,
            ("a@example.com", "b@example.com"),
            {"softbounce": False, "bouncemail": True},
        )
    got = [(r.mail_from, r.recipients) for r in listener.received]
    both = ["a@example.com", "b@example.com"]
    assert got == [
        ("sender1@example.org", both),
        ("", ["sender1@example.org"]),
        ("sender2@example.org", both),
        ("", ["sender2@example.org"]),
        ("sender3@example.org", both),
        ("", ["sender3@example.org"]),
    ]
    for n in (1, 2, 3):
        assert f"Subject: test {n}".encode() in listener.received[2 * n - 2].data
    # One new connection for each bounce that found an envelope in flight.
    assert listener.connections == 3
    assert [m.status for m in report.messages] == [MessageStatus.REFUSED] * 3


def test_a_listener_closing_after_a_final_dot_gets_the_next_message_anew() -> None:
    """It took the message, then answered the early RSET with 421 (closing):
    the next message goes on a fresh connection, and arrives once."""
    with (
        FakeSmtpServer(overrides={"RSET": b"421 4.3.2 closing\r\n"}) as listener,
        FakePop3Server([message(n) for n in (1, 2, 3)]) as server,
    ):
        report, ledger = deliver(listener, server)
    assert [m.status for m in report.messages] == [MessageStatus.DELIVERED] * 3
    assert [r.mail_from for r in listener.received] == [
        f"sender{n}@example.org" for n in (1, 2, 3)
    ]
    assert listener.connections == 3 and listener.rsets == 0
    assert len(ledger.marks) == 3 and server.mailbox == []


def test_no_early_envelope_crosses_the_batch_limit() -> None:
    with (
        FakeSmtpServer() as listener,
        FakePop3Server([message(n) for n in (1, 2, 3)]) as server,
    ):
        report, _ = deliver(listener, server, batchlimit=2)
    assert [m.status for m in report.messages] == [MessageStatus.DELIVERED] * 3
    assert listener.connections == 2
    # Each connection ends with QUIT after its last final dot, not RSET.
    assert listener.commands.count("QUIT") == 2 and listener.rsets == 1


class _GoneAtMessageTwo(FakePop3Server):
    """Hangs up when asked for message 2: the session breaks mid-poll."""

    def _transaction(
        self, client: FakeClient, verb: str, arg: str, deleted: set[int]
    ) -> None:
        if verb in ("RETR", "TOP") and arg.split()[0] == "2":
            client.close()
            raise ClientGone
        super()._transaction(client, verb, arg, deleted)


def test_a_server_gone_while_the_next_message_is_read_delivers_this_one() -> None:
    """Message 2 is read before message 1 goes to the listener; the server
    hanging up then must not keep message 1 from it: delivered and recorded
    (the next poll deletes it without a second delivery), the error after."""
    with (
        FakeSmtpServer() as listener,
        _GoneAtMessageTwo([message(1), message(2)]) as server,
    ):
        report, ledger = deliver(listener, server)
    assert [r.mail_from for r in listener.received] == ["sender1@example.org"]
    assert report.messages[0].status is MessageStatus.DELIVERED
    assert not report.messages[0].deleted and len(server.mailbox) == 2
    assert [uid for _, _, uid in ledger.marks] == ["uid-1"]
    assert "closed the connection" in report.error


def test_a_message_the_server_will_not_send_is_reported_in_its_turn() -> None:
    with (
        FakeSmtpServer() as listener,
        FakePop3Server([message(n) for n in (1, 2, 3)], retr_errors=[2]) as server,
    ):
        report, _ = deliver(listener, server)
    assert [m.status for m in report.messages] == [
        MessageStatus.DELIVERED,
        MessageStatus.FAILED,
        MessageStatus.DELIVERED,
    ]
    assert [r.mail_from for r in listener.received] == [
        "sender1@example.org",
        "sender3@example.org",
    ]
    assert server.mailbox[0][0] == "uid-2" and len(server.mailbox) == 1


# -- the message after next is read while the listener judges this one -------------


class _JudgesAfterTheServerWasAsked(FakeSmtpServer):
    """Answers the first final dot only once the POP3 server has been asked
    for message 3 (or gives up well before the client's timeout): proof that
    the client reads ahead while it waits for this verdict."""

    def __init__(self, server: FakePop3Server) -> None:
        super().__init__()
        self.server = server
        self.asked_first: bool | None = None

    def _fault(self, client: FakeClient, verb: str, tag: str = "") -> bool:
        if verb == "END" and self.asked_first is None:
            self.asked_first = wait_for(self._message_3_asked, timeout=1.0)
        return super()._fault(client, verb, tag)

    def _message_3_asked(self) -> bool:
        return any(
            c.split()[:2] in (["RETR", "3"], ["TOP", "3"]) for c in self.server.commands
        )


def test_the_message_after_next_is_asked_for_before_the_verdict_is_read() -> None:
    server = FakePop3Server([message(n) for n in (1, 2, 3, 4)])
    with server, _JudgesAfterTheServerWasAsked(server) as listener:
        report, ledger = deliver(listener, server)
    assert listener.asked_first is True
    assert [m.status for m in report.messages] == [MessageStatus.DELIVERED] * 4
    assert [r.mail_from for r in listener.received] == [
        f"sender{n}@example.org" for n in (1, 2, 3, 4)
    ]
    assert len(ledger.marks) == 4 and server.mailbox == []


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_steps_come_in_the_order_that_bounds_a_crash_to_one_duplicate(
    protocol: str,
) -> None:
    """Message N+2 is read between N's final dot and N's reply, never after
    N+1's data began: a crash while reading it can cost N's duplicate only."""
    steps: list[tuple[str, str]] = []
    bodies = [message(n) for n in (1, 2, 3, 4)]
    server = FakePop3Server(bodies) if protocol == "pop3" else FakeImapServer(bodies)
    with server, FakeSmtpServer() as listener:
        spec = make_spec(
            server,
            listener,
            protocol=MailProtocol.POP3 if protocol == "pop3" else MailProtocol.IMAP,
        )
        report = poll(
            spec,
            ledger=MemoryLedger(),
            transcript=ListTranscript(),
            observe=lambda step, uid: steps.append((step, uid)),
        )
    assert [m.status for m in report.messages] == [MessageStatus.DELIVERED] * 4
    uids = [m.uid for m in report.messages]
    fetched = [uid for step, uid in steps if step == "fetched"]
    assert fetched == uids
    for n in (0, 1):  # messages 3 and 4, read during 1's and 2's verdicts
        later = steps.index(("fetched", uids[n + 2]))
        assert steps.index(("dot", uids[n])) < later < steps.index(("replied", uids[n]))
    # Nothing but message 2 is read before message 1's body goes out.
    assert steps.index(("fetched", uids[1])) < steps.index(("data", uids[0]))


def test_a_large_message_after_next_waits_for_the_verdict() -> None:
    """Reading it would keep the window in which a crash duplicates message 1
    open long: message 3 (over MEANWHILE_BYTES) is read after 1's reply."""
    steps: list[tuple[str, str]] = []
    big = message(3, b"x" * 100 + b"\r\n" * (MEANWHILE_BYTES // 2))
    with (
        FakePop3Server([message(1), message(2), big]) as server,
        FakeSmtpServer() as listener,
    ):
        report = poll(
            make_spec(server, listener),
            ledger=MemoryLedger(),
            transcript=ListTranscript(),
            observe=lambda step, uid: steps.append((step, uid)),
        )
    assert [m.status for m in report.messages] == [MessageStatus.DELIVERED] * 3
    assert steps.index(("replied", "uid-1")) < steps.index(("fetched", "uid-3"))
    assert steps.index(("fetched", "uid-3")) < steps.index(("data", "uid-2"))


class _RefusesTheFirst(FakeSmtpServer):
    """Answers the first final dot with ``refusal``, the others with 250."""

    def __init__(self, refusal: str) -> None:
        super().__init__()
        self.refusal = refusal
        self.dots = 0

    def _reply(self, key: str, default: str) -> str:
        if key == "END":
            self.dots += 1
            if self.dots == 1:
                return self.refusal + "\r\n"
        return super()._reply(key, default)


@pytest.mark.parametrize("refusal", ["451 4.3.0 try later", "554 5.7.1 no"])
@pytest.mark.parametrize("pipelining", [False, True], ids=["lockstep", "pipelined"])
def test_a_message_refused_while_the_next_ones_are_read_is_never_deleted(
    refusal: str, pipelining: bool
) -> None:
    """Messages 2 and 3 are read while the listener judges message 1: its
    refusal keeps it on the server, no DELE of it is ever sent (also not in
    a pipelined window with the later RETRs), and the others are delivered."""
    capabilities = ["USER", "UIDL", "TOP"] + (["PIPELINING"] if pipelining else [])
    with (
        _RefusesTheFirst(refusal) as listener,
        FakePop3Server(
            [message(n) for n in (1, 2, 3, 4)], capabilities=capabilities
        ) as server,
    ):
        report, ledger = deliver(listener, server)
    statuses = [m.status for m in report.messages]
    assert statuses[0] in (MessageStatus.DEFERRED, MessageStatus.REFUSED)
    assert statuses[1:] == [MessageStatus.DELIVERED] * 3
    assert not report.messages[0].deleted
    assert "DELE 1" not in server.commands
    assert [uid for uid, _ in server.mailbox] == ["uid-1"]
    assert [uid for _, _, uid in ledger.marks] == ["uid-2", "uid-3", "uid-4"]


class _GoneAtMessageThree(FakePop3Server):
    """Hangs up when asked for message 3: read while message 1 is judged."""

    def _transaction(
        self, client: FakeClient, verb: str, arg: str, deleted: set[int]
    ) -> None:
        if verb in ("RETR", "TOP") and arg.split()[0] == "3":
            client.close()
            raise ClientGone
        super()._transaction(client, verb, arg, deleted)


def test_a_server_gone_while_the_message_after_next_is_read() -> None:
    """Messages 1 and 2 were read already: both reach the listener and the
    ledger (the next poll deletes them without a second delivery); nothing is
    deleted by a session that broke, and the error comes at message 3's turn."""
    with (
        FakeSmtpServer() as listener,
        _GoneAtMessageThree([message(n) for n in (1, 2, 3)]) as server,
    ):
        report, ledger = deliver(listener, server)
    assert [r.mail_from for r in listener.received] == [
        "sender1@example.org",
        "sender2@example.org",
    ]
    assert [m.status for m in report.messages[:2]] == [MessageStatus.DELIVERED] * 2
    assert not any(m.deleted for m in report.messages)
    assert len(server.mailbox) == 3 and not any(
        c.startswith("DELE") for c in server.commands
    )
    assert [uid for _, _, uid in ledger.marks] == ["uid-1", "uid-2"]
    assert "closed the connection" in report.error
