"""Broken listeners lose nothing (issue 10, item 9).

Only the reply to the final dot (LMTP: each recipient's reply after it)
accepts a message. Every other step has one reply that lets delivery go on
(220 greeting, 250 MAIL, 250/251 RCPT, 354 DATA); a well-formed reply that is
neither that nor a 4xx/5xx refusal ends the delivery as a temporary failure
and the message stays on the server. The listener here is scripted because
no real listener answers this way; the sources are the fakes the engine tests
use throughout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import MessageStatus
from retrieval.engine.run import poll
from retrieval.engine.spec import DeliveryKind, DeliverySpec, MailProtocol
from tests.support.fake_servers import FakeImapServer, FakePop3Server, FakeSmtpServer

from .conftest import make_spec, message

if TYPE_CHECKING:
    from retrieval.engine.report import PollReport
    from tests.support.fake_servers import FakeServer

MESSAGES = [message(1), message(2), message(3)]


def source(protocol: MailProtocol) -> FakeServer:
    if protocol is MailProtocol.IMAP:
        return FakeImapServer(MESSAGES)
    return FakePop3Server(MESSAGES)


def left_on(server: FakeServer) -> int:
    """Messages still on the server and not marked for deletion."""
    if isinstance(server, FakeImapServer):
        return sum("\\Deleted" not in m.flags for m in server.messages)
    assert isinstance(server, FakePop3Server)
    return len(server.mailbox)


def run(
    server: FakeServer,
    listener: FakeSmtpServer,
    protocol: MailProtocol,
    *recipients: str,
) -> tuple[PollReport, MemoryLedger]:
    delivery = DeliverySpec(
        kind=DeliveryKind.LMTP if listener.lmtp else DeliveryKind.SMTP,
        hosts=(f"127.0.0.1/{listener.port}",),
        recipients=recipients or ("joe@example.com",),
        timeout=2.0,
    )
    ledger = MemoryLedger()
    spec = make_spec(server, protocol=protocol, delivery=delivery)
    return poll(spec, ledger=ledger, transcript=ListTranscript()), ledger


PROTOCOLS = pytest.mark.parametrize("protocol", [MailProtocol.POP3, MailProtocol.IMAP])


@PROTOCOLS
@pytest.mark.parametrize(
    "faults",
    [
        # 250 instead of 354 to DATA, then the listener hangs up: nothing of
        # any message was ever accepted.
        {"hangup_after": {"DATA": b"250 2.0.0 ok\r\n"}},
        {"replies": {"DATA": "250 2.0.0 ok"}},
        {"replies": {"DATA": "334 go on"}},
        # 252 is a VRFY reply; to MAIL or RCPT it promises nothing.
        {"replies": {"MAIL": "252 2.1.0 maybe"}},
        {"replies": {"MAIL": "251 2.1.0 odd"}},
        {"replies": {"RCPT": "252 2.1.5 cannot verify"}},
        {"replies": {"RCPT": "354 odd"}},
        # After the dot only 250 accepts.
        {"replies": {"END": "251 2.0.0 forwarded?"}},
        {"replies": {"END": "354 more please"}},
    ],
    ids=[
        "data-250-then-drop",
        "data-250",
        "data-334",
        "mail-252",
        "mail-251",
        "rcpt-252",
        "rcpt-354",
        "dot-251",
        "dot-354",
    ],
)
def test_an_unexpected_reply_keeps_every_message(
    protocol: MailProtocol, faults: dict[str, object]
) -> None:
    with (
        FakeSmtpServer(**faults) as listener,  # type: ignore[arg-type]
        source(protocol) as server,
    ):
        report, ledger = run(server, listener, protocol)
    assert [m.status for m in report.messages] == [MessageStatus.DEFERRED] * 3
    assert not any(m.deleted for m in report.messages)
    assert left_on(server) == 3 and ledger.marks == []
    assert "where only" in report.messages[0].listener_reply


@PROTOCOLS
def test_lmtp_an_odd_reply_for_one_recipient_keeps_the_message_for_it(
    protocol: MailProtocol,
) -> None:
    replies = {"END:b@x.org": "252 2.0.0 maybe"}
    with (
        FakeSmtpServer(lmtp=True, replies=replies) as listener,
        source(protocol) as server,
    ):
        report, _ = run(server, listener, protocol, "a@x.org", "b@x.org")
    assert [m.status for m in report.messages] == [MessageStatus.DEFERRED] * 3
    assert left_on(server) == 3
    # a@x.org has it; only b@x.org is owed a delivery next time.
    assert any("accepted for a@x.org only" in n for n in report.notes), report.notes


def test_the_listener_still_works_after_an_odd_reply() -> None:
    # A listener that answers 252 to the first MAIL only: the connection is
    # dropped after it (its state is unknown) and the next message gets a
    # fresh one and is delivered.
    with (
        FakeSmtpServer() as listener,
        FakePop3Server(MESSAGES) as server,
    ):
        listener.replies["MAIL"] = "252 2.1.0 maybe"
        original = listener._reply

        def once(key: str, default: str) -> str:
            reply = original(key, default)
            if key == "MAIL":
                listener.replies.pop("MAIL", None)
            return reply

        listener._reply = once  # type: ignore[method-assign]
        report, _ = run(server, listener, MailProtocol.POP3)
    assert [m.status for m in report.messages] == [
        MessageStatus.DEFERRED,
        MessageStatus.DELIVERED,
        MessageStatus.DELIVERED,
    ]
    assert len(server.mailbox) == 1 and listener.connections == 2
