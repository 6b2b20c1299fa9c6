"""ETRN against the ISP's real Postfix: a held queue is released on request.

Postfix keeps mail for held.example in its queue (``defer_transports``) until
someone asks with ETRN (``fast_flush_domains``); then it delivers the queue by
SMTP to the client's own mail server, here the suite's SMTP listener. No mail
passes through fetchweb.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode
from retrieval.engine.run import poll
from retrieval.engine.spec import (
    MailboxSpec,
    MailProtocol,
    ServerSpec,
    TlsMode,
    TlsSpec,
)
from tests.support.postfix import HELD_DOMAIN

if TYPE_CHECKING:
    from tests.support.postfix import Postfix
    from tests.support.smtp_listener import SmtpListener

pytestmark = pytest.mark.live


def etrn_spec(postfix: Postfix, *domains: str) -> MailboxSpec:
    return MailboxSpec(
        server=ServerSpec(
            host="mx.isp.example",
            via=postfix.host,
            port=postfix.port,
            protocol=MailProtocol.ETRN,
            tls=TlsSpec(mode=TlsMode.NONE),
            timeout=10,
        ),
        username="client",
        fetchdomains=domains,
    )


def wait_until(predicate: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def test_etrn_flushes_the_held_queue(
    postfix: Postfix, smtp_listener: SmtpListener
) -> None:
    postfix.hold_for(smtp_listener.host, smtp_listener.port)
    rcpts = [f"joe@{HELD_DOMAIN}", f"ann@{HELD_DOMAIN}"]
    for n, rcpt in enumerate(rcpts):
        postfix.send(
            f"Subject: held {n}\r\nMessage-ID: <h{n}@outside.example>\r\n\r\nx\r\n".encode(),
            mail_from="sam@outside.example",
            rcpt_tos=[rcpt],
        )
    # Postfix decided to hold both: nothing can have reached the listener.
    wait_until(lambda: sorted(postfix.held()) == sorted(rcpts), "mail held")
    assert smtp_listener.received == []

    transcript = ListTranscript()
    report = poll(
        etrn_spec(postfix, HELD_DOMAIN), ledger=MemoryLedger(), transcript=transcript
    )

    assert report.exit_code is ExitCode.SUCCESS, report.error
    assert any(f"ETRN {HELD_DOMAIN}: " in note for note in report.notes)
    assert report.greeting.startswith("mx.isp.example")
    got = smtp_listener.wait_for(2)
    assert sorted(r for m in got for r in m.rcpt_tos) == sorted(rcpts)
    postfix.wait_for_queue(0)
    assert "C: ETRN held.example" in transcript.text()


def test_etrn_for_a_domain_postfix_does_not_flush_is_refused(postfix: Postfix) -> None:
    report = poll(
        etrn_spec(postfix, "unrelated.example"),
        ledger=MemoryLedger(),
        transcript=ListTranscript(),
    )
    assert report.exit_code is ExitCode.AUTHFAIL  # 459: node not allowed
    assert "not allowed" in report.error
