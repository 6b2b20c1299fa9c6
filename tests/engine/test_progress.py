"""The Progress port: the steps of a poll and of a connection test, in order,
against the suite's real Dovecot (POP3 and IMAP, implicit TLS and STARTTLS), and
the thinning of message counts (a clock the test moves)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from retrieval.engine import progress as progress_module
from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.probe import check_login
from retrieval.engine.progress import ProgressTicker
from retrieval.engine.report import ExitCode
from retrieval.engine.run import poll
from retrieval.engine.spec import MailboxSpec, MailProtocol, Secret, TlsMode
from tests.live.test_engine_protocols_dovecot import spec_for

from .conftest import message

if TYPE_CHECKING:
    from retrieval.engine.ports import ProgressStep
    from tests.support.dovecot import Dovecot, MailUser
    from tests.support.smtp_listener import SmtpListener


class Steps:
    """A Progress port that keeps what it is told."""

    def __init__(self) -> None:
        self.told: list[tuple[str, int, int, str]] = []

    def __call__(
        self, step: ProgressStep, *, done: int = 0, total: int = 0, folder: str = ""
    ) -> None:
        self.told.append((step, done, total, folder))

    @property
    def names(self) -> list[str]:
        return [step for step, *_ in self.told]

    @property
    def counts(self) -> list[tuple[int, int]]:
        return [(d, t) for s, d, t, _ in self.told if s == "messages"]


def _spec(
    dovecot: Dovecot,
    mailuser: MailUser,
    listener: SmtpListener,
    protocol: MailProtocol,
    tls: TlsMode,
) -> MailboxSpec:
    return spec_for(dovecot, mailuser, listener, protocol=protocol, tls=tls)


SESSION = ["connecting", "connected", "tls", "logged_in"]

CASES = [
    (MailProtocol.POP3, TlsMode.IMPLICIT),
    (MailProtocol.POP3, TlsMode.STARTTLS),
    (MailProtocol.IMAP, TlsMode.IMPLICIT),
    (MailProtocol.IMAP, TlsMode.STARTTLS),
]


@pytest.mark.live
class PollProgressTests:
    @pytest.mark.parametrize(("protocol", "tls"), CASES)
    def test_a_poll_tells_each_step_in_order(
        self, dovecot, mailuser, smtp_listener, monkeypatch, protocol, tls
    ) -> None:
        monkeypatch.setattr(progress_module, "EVERY", 0.0)  # every count passes
        for n in range(1, 6):
            dovecot.put(mailuser.name, message(n))
        steps = Steps()
        report = poll(
            _spec(dovecot, mailuser, smtp_listener, protocol, tls),
            ledger=MemoryLedger(),
            transcript=ListTranscript(),
            progress=steps,
        )
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert steps.names == [*SESSION] + ["messages"] * 6 + ["logging_out"]
        assert steps.counts == [(n, 5) for n in range(6)]
        assert {folder for s, _, _, folder in steps.told if s == "messages"} == {
            "INBOX"
        }

    def test_an_empty_mailbox_says_none_of_none(
        self, dovecot, mailuser, smtp_listener
    ) -> None:
        steps = Steps()
        spec = _spec(
            dovecot, mailuser, smtp_listener, MailProtocol.IMAP, TlsMode.IMPLICIT
        )
        report = poll(
            spec, ledger=MemoryLedger(), transcript=ListTranscript(), progress=steps
        )
        assert report.exit_code is ExitCode.NOMAIL
        assert steps.names == [*SESSION, "messages", "logging_out"]
        assert steps.counts == [(0, 0)]

    def test_without_tls_there_is_no_tls_step(
        self, dovecot, mailuser, smtp_listener
    ) -> None:
        steps = Steps()
        spec = _spec(dovecot, mailuser, smtp_listener, MailProtocol.IMAP, TlsMode.NONE)
        poll(spec, ledger=MemoryLedger(), transcript=ListTranscript(), progress=steps)
        assert steps.names[:3] == ["connecting", "connected", "logged_in"]

    def test_a_refused_password_ends_the_steps_before_logged_in(
        self, dovecot, mailuser, smtp_listener
    ) -> None:
        steps = Steps()
        spec = _spec(
            dovecot, mailuser, smtp_listener, MailProtocol.POP3, TlsMode.IMPLICIT
        )
        spec = replace(spec, password=Secret("wrong-one-7"))
        report = poll(
            spec, ledger=MemoryLedger(), transcript=ListTranscript(), progress=steps
        )
        assert report.exit_code is ExitCode.AUTHFAIL
        assert steps.names == ["connecting", "connected", "tls"]

    @pytest.mark.parametrize(("protocol", "tls"), CASES)
    def test_a_connection_test_tells_its_steps_in_order(
        self, dovecot, mailuser, smtp_listener, protocol, tls
    ) -> None:
        steps = Steps()
        result = check_login(
            _spec(dovecot, mailuser, smtp_listener, protocol, tls), progress=steps
        )
        assert result.ok, result.error
        assert steps.names == [*SESSION, "logging_out"]


class TickerTests:
    def test_counts_between_the_first_and_last_pass_at_most_every_interval(
        self,
    ) -> None:
        now = [100.0]
        steps = Steps()
        ticker = ProgressTicker(steps, every=0.5, clock=lambda: now[0])
        ticker.messages(0, 10, "INBOX")
        for done in range(1, 11):
            now[0] += 0.2  # a message every 0.2 s
            ticker.messages(done, 10, "INBOX")
        # 0 always; then whenever 0.5 s passed since the last told; 10 always.
        assert steps.counts == [(0, 10), (3, 10), (6, 10), (9, 10), (10, 10)]

    def test_session_steps_always_pass(self) -> None:
        steps = Steps()
        ticker = ProgressTicker(steps, every=60.0, clock=lambda: 0.0)
        for name in ("connecting", "connected", "tls", "logged_in"):
            ticker.step(name)  # type: ignore[arg-type]
        assert steps.names == ["connecting", "connected", "tls", "logged_in"]

    def test_without_a_port_nothing_is_read_not_even_the_clock(self) -> None:
        def clock() -> float:
            raise AssertionError("the clock was read")

        ticker = ProgressTicker(None, clock=clock)
        ticker.messages(1, 2, "INBOX")
        ticker.step("connecting")
