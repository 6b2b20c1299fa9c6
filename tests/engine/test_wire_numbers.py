"""Numbers from the wire: one bounded parser, and what each session does with it."""

from __future__ import annotations

import pytest

from retrieval.engine.check import check
from retrieval.engine.errors import ParseError, ProtocolError
from retrieval.engine.fetch import imap_parse as parse
from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode
from retrieval.engine.run import poll
from retrieval.engine.spec import MailProtocol
from retrieval.engine.wire import numbers
from tests.support.fake_servers import FakeImapServer, FakePop3Server, FakeSmtpServer

from .conftest import make_spec, message, without_trace


@pytest.mark.parametrize(
    ("text", "bounds", "expected"),
    [
        ("42", numbers.UID, 42),
        (b"4294967295", numbers.UIDVALIDITY, 2**32 - 1),
        ("0", numbers.COUNT, 0),
        ("0", numbers.UID, None),  # nz-number
        ("4294967296", numbers.UIDVALIDITY, None),
        (str(2**64), numbers.UIDVALIDITY, None),
        ("\u00b2", numbers.COUNT, None),  # str.isdigit() says yes
        ("\u0663", numbers.COUNT, None),  # ARABIC-INDIC DIGIT THREE
        ("12345678901", numbers.SIZE, None),  # eleven digits
        ("-1", numbers.SIZE, None),
        ("+1", numbers.SIZE, None),
        (" 1", numbers.SIZE, None),
        ("1\n", numbers.SIZE, None),
        ("", numbers.SIZE, None),
        ("65536", numbers.PORT, None),
    ],
)
def test_it_accepts_only_bounded_ascii_digits(
    text: str | bytes, bounds: numbers.Bounds, expected: int | None
) -> None:
    assert numbers.wire_number_or_none(text, bounds) == expected
    if expected is None:
        with pytest.raises(ProtocolError, match=bounds.what):
            numbers.wire_number(text, bounds)


@pytest.mark.parametrize(
    "line",
    [
        "* SEARCH 1 \u00b2\r\n".encode(),
        b"* SEARCH 0\r\n",
        b"* SEARCH 4294967296\r\n",
    ],
)
def test_search_results_outside_the_uid_range_are_parse_errors(line: bytes) -> None:
    with pytest.raises(ParseError):
        parse.search_results(line)


def test_parse_errors_are_protocol_errors() -> None:
    assert issubclass(ParseError, ProtocolError)


@pytest.mark.parametrize(
    ("line", "uid"),
    [
        (b'* 1 FETCH (BODY[] "a UID 7 b" UID 101)\r\n', 101),
        (b'* 1 FETCH (FLAGS (\\Seen "UID 9") UID 101)\r\n', 101),
        (b"* 1 FETCH (BODY[HEADER.FIELDS (UID)] {3}\r\n UID 101)\r\n", 101),
        (b"* 1 FETCH (X-UID 7 UID 101)\r\n", 101),
        (b'* 1 FETCH (BODY[] "UID 7")\r\n', None),
    ],
)
def test_fetch_items_are_tokenized_not_searched(line: bytes, uid: int | None) -> None:
    assert parse.fetch_uid(line) == uid


@pytest.mark.parametrize(
    "line",
    [
        b"* 1 FETCH (UID 99999999999)\r\n",
        b"* 1 FETCH (UID 0)\r\n",
        b'* 1 FETCH (UID "101")\r\n',
        b"* 1 FETCH (UID 101\r\n",
        b'* 1 FETCH (BODY[] "open\r\n',
        b"* 1 FETCH (UID 1) trailing\r\n",
    ],
)
def test_malformed_fetch_responses_are_parse_errors(line: bytes) -> None:
    with pytest.raises(ParseError):
        parse.fetch_uid(line)


def test_only_the_body_item_itself_is_the_body_literal() -> None:
    assert not parse.is_body_literal(b'* 1 FETCH (BODY[] "x" X-BODY[] {3}\r\n')
    assert not parse.is_body_literal(b'* 1 FETCH (FLAGS ("BODY[]") X {3}\r\n')
    assert parse.is_body_literal(b'* 1 FETCH (X "BODY[] {3}" BODY[] {3}\r\n')


def run_imap(server: FakeImapServer, listener: FakeSmtpServer, **options: object):
    ledger = MemoryLedger()
    spec = make_spec(server, listener, protocol=MailProtocol.IMAP, **options)  # type: ignore[arg-type]
    report = poll(spec, ledger=ledger, transcript=ListTranscript())
    return report, ledger


def select_reply(uidvalidity: bytes) -> bytes:
    return (
        b"* 1 EXISTS\r\n* OK [UIDVALIDITY " + uidvalidity + b"] UIDs valid\r\n"
        b"{tag} OK [READ-WRITE] SELECT completed\r\n"
    )


class UidvalidityTests:
    @pytest.mark.parametrize(
        "value", [str(2**64).encode(), b"0", "\u00b2".encode(), b"12x"]
    )
    def test_it_refuses_a_bad_uidvalidity_before_delivering(
        self, listener: FakeSmtpServer, value: bytes
    ) -> None:
        overrides = {"SELECT": select_reply(value)}
        with FakeImapServer([message(1)], overrides=overrides) as server:
            report, ledger = run_imap(server, listener)
        assert report.exit_code is ExitCode.PROTOCOL, report.error
        assert "UIDVALIDITY" in report.error
        assert listener.received == [] and ledger.marks == []
        assert len(server.messages) == 1


class BracesInArgumentsTests:
    @pytest.mark.parametrize(
        ("user", "password"),
        [("jo{}e", "secret"), ("joe", "se{}cr{}et"), ("jo{}e", "p\u00e4{}ss")],
    )
    def test_braces_in_user_or_password_do_not_break_login(
        self, listener: FakeSmtpServer, user: str, password: str
    ) -> None:
        with FakeImapServer(
            [message(1)], user=user, password=password, capabilities=["IMAP4rev1"]
        ) as server:
            report, _ = run_imap(server, listener, username=user, password=password)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert any(" LOGIN " in c for c in server.commands)
        assert [without_trace(r.data) for r in listener.received] == [message(1)]

    def test_a_wrong_password_with_braces_is_authfail(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakeImapServer([message(1)], capabilities=["IMAP4rev1"]) as server:
            report, _ = run_imap(server, listener, password="{}{}{}")
        assert report.exit_code is ExitCode.AUTHFAIL, report.error
        assert "{}{}{}" not in report.error

    def test_braces_in_a_folder_name_are_sent_quoted(
        self, listener: FakeSmtpServer
    ) -> None:
        with FakeImapServer([message(1)]) as server:
            server.folders.add("a{}b")
            report, _ = run_imap(server, listener, folders=("a{}b",))
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert any(c.endswith('SELECT "a{}b"') for c in server.commands)


def run_pop3(server: FakePop3Server, listener: FakeSmtpServer, **options: object):
    ledger = MemoryLedger()
    spec = make_spec(server, listener, **options)  # type: ignore[arg-type]
    return poll(spec, ledger=ledger, transcript=ListTranscript()), ledger


class Pop3NumbersTests:
    @pytest.mark.parametrize(
        "listing",
        [
            b"+OK\r\n0 zero\r\n1 uid-1\r\n.\r\n",  # message numbers start at 1
        ],
    )
    def test_a_listing_with_an_impossible_message_number_is_refused(
        self, listener: FakeSmtpServer, listing: bytes
    ) -> None:
        with FakePop3Server([message(1)], overrides={"UIDL": listing}) as server:
            report, _ = run_pop3(server, listener)
        assert report.exit_code is ExitCode.PROTOCOL, report.error
        assert listener.received == [] and len(server.mailbox) == 1

    def test_a_size_of_more_than_ten_digits_is_refused(
        self, listener: FakeSmtpServer
    ) -> None:
        listing = b"+OK\r\n1 12345678901\r\n.\r\n"
        with FakePop3Server([message(1)], overrides={"LIST": listing}) as server:
            report, _ = run_pop3(server, listener)
        assert report.exit_code is ExitCode.PROTOCOL, report.error
        assert listener.received == [] and len(server.mailbox) == 1


class ListenerSizeTests:
    @pytest.mark.parametrize("value", ["\u00b2", "\u0663\u0663"])
    def test_an_unreadable_size_extension_is_no_known_limit(self, value: str) -> None:
        ehlo = f"250-fake.local\r\n250 SIZE {value}\r\n".encode()
        with (
            FakeSmtpServer(overrides={"EHLO": ehlo}) as listener,
            FakePop3Server([message(1)]) as server,
        ):
            report, _ = run_pop3(server, listener)
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert len(listener.received) == 1 and server.mailbox == []


def test_the_connection_check_survives_braces_in_a_password() -> None:
    """The test-connection page runs this check: it answered 500 (and, with
    DEBUG on, showed the password in the traceback) for a password with {}."""
    with FakeImapServer(
        [message(1)], password="p{}w", capabilities=["IMAP4rev1"]
    ) as server:
        spec = make_spec(server, protocol=MailProtocol.IMAP, password="p{}w")
        report = check(spec, ledger=MemoryLedger(), transcript=ListTranscript())
    assert report.exit_code is ExitCode.SUCCESS, report.error
    assert report.waiting == 1
