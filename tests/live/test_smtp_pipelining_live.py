"""PIPELINING against real listeners that offer it: Dovecot's LMTP and Postfix.

The transcript shows the envelope and DATA leaving before any reply is read
(RFC 2920), and every message arrives once, with each recipient's outcome right:
Dovecot's LMTP refuses an unknown user at RCPT and takes the message for the
others. The wrong answers no real listener gives are in
tests/engine/test_smtp_pipelining.py.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import MessageStatus
from retrieval.engine.run import poll
from retrieval.engine.spec import DeliveryKind, DeliverySpec
from tests.live.test_crash_invariants import build_spec, config, ids, message
from tests.support.dovecot import MailUser
from tests.support.postfix import CLIENT_DOMAIN

if TYPE_CHECKING:
    from retrieval.engine.report import PollReport
    from tests.support.dovecot import Dovecot
    from tests.support.postfix import Postfix

pytestmark = pytest.mark.live


def _pipelined_envelopes(transcript: ListTranscript) -> int:
    """How many envelopes went out as MAIL ... DATA before any reply was read."""
    lines = transcript.lines
    count = 0
    for i, (direction, text) in enumerate(lines):
        if direction == "C" and text.startswith("MAIL FROM:"):
            replied = next(j for j in range(i, len(lines)) if lines[j][0] == "S")
            sent = [t for d, t in lines[i:replied] if d == "C"]
            assert sent[-1] == "DATA", lines[i : replied + 1]
            count += 1
    return count


def _stored(dovecot: Dovecot, user: str) -> list[str]:
    """Message-IDs in ``user``'s mailbox (Dovecot stores LF line ends)."""
    return ids(
        [
            m.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            for m in dovecot.messages(user)
        ]
    )


def _poll_three(
    dovecot: Dovecot,
    mailuser: MailUser,
    protocol: str,
    kind: DeliveryKind,
    port: int,
    recipients: tuple[str, ...],
) -> tuple[PollReport, MemoryLedger, ListTranscript]:
    """Three messages on the server, polled into the listener at ``port``."""
    for n in (1, 2, 3):
        dovecot.put(mailuser.name, message(n))
    server_port = dovecot.pop3_port if protocol == "pop3" else dovecot.imap_port
    spec = build_spec(config(dovecot, mailuser, port, protocol, server_port))
    delivery = DeliverySpec(
        kind=kind, hosts=(f"127.0.0.1/{port}",), recipients=recipients, timeout=10
    )
    ledger, transcript = MemoryLedger(), ListTranscript()
    report = poll(
        replace(spec, delivery=delivery), ledger=ledger, transcript=transcript
    )
    return report, ledger, transcript


def _user(dovecot: Dovecot) -> MailUser:
    user = MailUser(
        name=f"user{secrets.token_hex(5)}", password=secrets.token_urlsafe(12)
    )
    dovecot.add_user(user.name, user.password)
    return user


def test_dovecot_lmtp_gets_envelope_and_data_in_one_write(
    dovecot: Dovecot, mailuser: MailUser
) -> None:
    first, second = _user(dovecot), _user(dovecot)
    # the one in the middle does not exist: 550 at RCPT, in the pipeline
    nobody = "nosuchuser" + secrets.token_hex(3)
    report, ledger, transcript = _poll_three(
        dovecot,
        mailuser,
        "pop3",
        DeliveryKind.LMTP,
        dovecot.lmtp_port,
        (first.name, nobody, second.name),
    )

    assert _pipelined_envelopes(transcript) == 3, transcript.text()
    assert [m.status for m in report.messages] == [MessageStatus.REFUSED] * 3
    expected = [f"crash-{n}@example.net" for n in (1, 2, 3)]
    assert _stored(dovecot, first.name) == expected
    assert _stored(dovecot, second.name) == expected
    # Kept for the refused one (softbounce), the others on record per recipient.
    assert _stored(dovecot, mailuser.name) == expected
    assert {frozenset(r) for r in ledger.partial.values()} == {
        frozenset({first.name, second.name})
    }


def test_postfix_gets_envelope_and_data_in_one_write(
    dovecot: Dovecot, mailuser: MailUser, postfix: Postfix, catchall: MailUser
) -> None:
    report, _, transcript = _poll_three(
        dovecot,
        mailuser,
        "imap",
        DeliveryKind.SMTP,
        postfix.port,
        (f"alice@{CLIENT_DOMAIN}", f"bob@{CLIENT_DOMAIN}"),
    )

    assert report.error == "", report.error
    assert _pipelined_envelopes(transcript) == 3, transcript.text()
    assert dovecot.messages(mailuser.name) == []
    postfix.wait_for_queue(0)
    # One copy per recipient in the catch-all (see tests/support/postfix.py).
    delivered = _stored(dovecot, catchall.name)
    assert sorted(delivered) == sorted(
        f"crash-{n}@example.net" for n in (1, 2, 3) for _ in range(2)
    )
