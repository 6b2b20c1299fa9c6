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
from retrieval.engine.run import poll
from retrieval.engine.spec import DeliveryKind, DeliverySpec, MultidropSpec
from tests.support.fake_servers import (
    ClientGone,
    FakeClient,
    FakePop3Server,
    FakeSmtpServer,
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
