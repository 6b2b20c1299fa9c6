"""Arbitrary server bytes at every step of a poll end in an EngineError.

``poll()`` turns an :class:`EngineError` into the report and lets anything else
escape, so a poll that returns is the property: whatever a server says at the
greeting, CAPA/CAPABILITY, the login replies, the listings, SELECT, SEARCH,
FETCH or the delete replies, the poll ends with a report and never a stray
exception. And nothing is lost: each message is in the listener or still on
the server (one of them starts with "+OK", which a POP3 quirk used to eat).

One fake server serves all the examples of a test (a server per example would
spend the time on threads); the hostile step and its bytes change per example.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from retrieval.engine.errors import ProtocolError
from retrieval.engine.fetch import imap_parse as parse
from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import PollReport
from retrieval.engine.run import poll
from retrieval.engine.spec import MailProtocol
from retrieval.engine.wire import numbers
from tests.support.fake_servers import (
    ClientGone,
    FakeClient,
    FakeImapServer,
    FakePop3Server,
    FakeSmtpServer,
)

from .conftest import make_spec, message, without_trace

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

# Short, because a hostile answer that stops mid-line is ended by the timeout.
TIMEOUT = 0.3
BODIES = [message(1), b"+OK not a status line\r\n\r\nbody\r\n", message(3)]

# Pieces of real answers, and the numbers and bytes that used to escape.
TOKENS = [
    b"+OK",
    b"-ERR",
    b"+ ",
    b"* ",
    b"{tag} ",
    b"OK",
    b"NO",
    b"BAD",
    b"BYE",
    b"PREAUTH",
    b"CAPABILITY",
    b"IMAP4rev1",
    b"AUTH=PLAIN",
    b"STARTTLS",
    b"[UIDVALIDITY ",
    b"[READ-ONLY]",
    b"]",
    b"EXISTS",
    b"EXPUNGE",
    b"SEARCH",
    b"ESEARCH",
    b"ALL",
    b"FETCH",
    b"(",
    b")",
    b"UID",
    b"BODY[]",
    b"RFC822.SIZE",
    b"NIL",
    b'"',
    b"\\",
    b"{5}\r\n",
    b"{0}\r\n",
    b"{99999999999}\r\n",
    b"0",
    b"1",
    b"101",
    b"4294967295",
    b"4294967296",
    b"18446744073709551616",
    b"\xc2\xb2",
    b"\xd9\xa3",
    b"-1",
    b"1:*",
    b":",
    b",",
    b" ",
    b"\r\n",
    b"\n",
    b".\r\n",
    b"..",
    b"\x00",
    b"\xff",
    b"UIDL",
    b"SASL PLAIN",
    b"PIPELINING",
    b"TOP",
]

hostile_bytes = st.one_of(
    st.lists(st.sampled_from(TOKENS), max_size=40).map(b"".join),
    st.binary(max_size=200),
)


class Hostile:
    """What one example does: at ``step``, send ``data``; then hang up or not."""

    step = ""
    data = b""
    hang_up = True

    def apply(self, client: FakeClient, verb: str, tag: str) -> bool:
        if verb != self.step:
            return False
        client.send(self.data.replace(b"{tag}", tag.encode()))
        if self.hang_up:
            client.close()
            raise ClientGone
        return True


class HostilePop3(FakePop3Server):
    def __init__(self, hostile: Hostile, **kwargs: object) -> None:
        super().__init__(BODIES, **kwargs)  # type: ignore[arg-type]
        self.hostile = hostile

    def handle(self, client: FakeClient) -> None:
        if self.hostile.apply(client, "GREETING", ""):
            client.wait_until_gone()
            return
        super().handle(client)

    def _fault(self, client: FakeClient, verb: str, tag: str = "") -> bool:
        return self.hostile.apply(client, verb, tag) or super()._fault(
            client, verb, tag
        )


class HostileImap(FakeImapServer):
    def __init__(self, hostile: Hostile, **kwargs: object) -> None:
        super().__init__(BODIES, **kwargs)  # type: ignore[arg-type]
        self.hostile = hostile

    def handle(self, client: FakeClient) -> None:
        if self.hostile.apply(client, "GREETING", ""):
            client.wait_until_gone()
            return
        super().handle(client)

    def _fault(self, client: FakeClient, verb: str, tag: str = "") -> bool:
        return self.hostile.apply(client, verb, tag) or super()._fault(
            client, verb, tag
        )


@pytest.fixture(scope="module")
def quiet_listener() -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer() as server:
        yield server


def check(
    server: HostilePop3 | HostileImap, listener: FakeSmtpServer, *, keep: bool
) -> None:
    """One poll; it must return, and every message is somewhere.

    ``keep`` polls read-only: EXAMINE on IMAP, fastuidl (and so STAT) on POP3.
    """
    listener.received.clear()
    if isinstance(server, HostilePop3):
        server.mailbox = [(f"uid-{i + 1}", body) for i, body in enumerate(BODIES)]
        spec = make_spec(
            server, listener, timeout=TIMEOUT, keep=keep, fastuidl=int(keep)
        )
    else:
        server.messages = [
            server.messages[0].__class__(101 + i, body) for i, body in enumerate(BODIES)
        ]
        spec = make_spec(
            server, listener, protocol=MailProtocol.IMAP, timeout=TIMEOUT, keep=keep
        )
    report = poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())
    assert isinstance(report, PollReport)
    hostile = server.hostile
    if hostile.step in BODY_STEPS and not hostile.hang_up:
        return  # the server sent a message of its own: delivering it is right
    delivered = [without_trace(r.data) for r in listener.received]
    if isinstance(server, HostilePop3):
        left = [body for _, body in server.mailbox]
    else:
        left = [m.body for m in server.messages]
    for body in BODIES:
        assert body in delivered or body in left, report.error


BODY_STEPS = {"TOP", "UID FETCH BODY"}
POP3_STEPS = [
    "GREETING",
    "CAPA",
    "USER",
    "PASS",
    "STAT",
    "LIST",
    "UIDL",
    "TOP",
    "DELE",
    "QUIT",
]
IMAP_STEPS = [
    "GREETING",
    "CAPABILITY",
    "AUTHENTICATE",
    "SELECT",
    "EXAMINE",
    "UID SEARCH",
    "UID FETCH",
    "UID FETCH BODY",
    "UID STORE",
    "UID EXPUNGE",
    "LOGOUT",
]
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(
    step=st.sampled_from(POP3_STEPS),
    data=hostile_bytes,
    hang_up=st.booleans(),
    keep=st.booleans(),
)
@example(
    step="CAPA",
    data=b"+OK\r\nUSER\r\nUIDL\r\nTOP\r\n.\r\n",
    hang_up=False,
    keep=False,
)
def test_any_pop3_answer_ends_in_a_report(
    quiet_listener: FakeSmtpServer, step: str, data: bytes, hang_up: bool, keep: bool
) -> None:
    hostile = Hostile()
    hostile.step, hostile.data, hostile.hang_up = step, data, hang_up
    with HostilePop3(hostile) as server:
        check(server, quiet_listener, keep=keep)


@FUZZ
@given(
    step=st.sampled_from(IMAP_STEPS),
    data=hostile_bytes,
    hang_up=st.booleans(),
    keep=st.booleans(),
)
@example(
    step="SELECT",
    data=b"* 2 EXISTS\r\n* OK [UIDVALIDITY \xc2\xb2] x\r\n{tag} OK done\r\n",
    hang_up=False,
    keep=False,
)
@example(
    step="UID FETCH",
    data=b"* 1 FETCH (UID 101 RFC822.SIZE \xc2\xb2)\r\n{tag} OK done\r\n",
    hang_up=False,
    keep=False,
)
def test_any_imap_answer_ends_in_a_report(
    quiet_listener: FakeSmtpServer, step: str, data: bytes, hang_up: bool, keep: bool
) -> None:
    hostile = Hostile()
    hostile.step, hostile.data, hostile.hang_up = step, data, hang_up
    with HostileImap(hostile) as server:
        check(server, quiet_listener, keep=keep)


# -- the parsers alone, where many more examples are cheap -------------------------

PARSERS: list[Callable[[bytes], object]] = [
    parse.literal_size,
    parse.is_body_literal,
    parse.has_nil_body,
    parse.parse_tagged,
    parse.untagged_status,
    parse.untagged_number,
    parse.capabilities,
    parse.search_results,
    parse.fetch_uid,
    parse.fetch_size,
    parse.quoted_body,
    parse.fetch_attributes,
    lambda line: parse.fetch_pairs(line, partial=True),
    lambda line: parse.esearch_all(line, limit=50),
    lambda line: parse.response_code(line),
]
response_lines = st.one_of(
    hostile_bytes,
    st.tuples(
        st.sampled_from([b"* 1 FETCH (", b"* SEARCH ", b"* ESEARCH ", b"* 3 "]),
        hostile_bytes,
    ).map(b"".join),
)


@settings(max_examples=600, deadline=None)
@given(line=response_lines)
def test_imap_parsers_raise_nothing_but_protocol_errors(line: bytes) -> None:
    for parser in PARSERS:
        with contextlib.suppress(ProtocolError):
            parser(line)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=14), st.binary(max_size=14)))
def test_wire_numbers_are_in_range_or_none(text: str | bytes) -> None:
    for bounds in (numbers.UID, numbers.COUNT, numbers.SIZE, numbers.PORT):
        value = numbers.wire_number_or_none(text, bounds)
        assert value is None or bounds.low <= value <= bounds.high
