"""Delivery kind IMAP against destinations that answer wrongly (issue 16 item 3).

A real Dovecot accepts, refuses over quota and creates folders
(tests/live/test_append_dovecot.py); what no real server does is scripted here:
a destination that hangs up mid-APPEND, answers with the wrong tag, says BAD,
or announces success for a command it was never sent. In every case the source
keeps each message that the destination did not take with a tagged OK.
"""

from __future__ import annotations

from typing import Any

import pytest

from retrieval.engine.append import check_target, imap_date
from retrieval.engine.errors import ConfigError
from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode, MessageStatus, PollReport
from retrieval.engine.run import poll
from retrieval.engine.spec import (
    AppendTarget,
    DeliveryKind,
    DeliverySpec,
    MailboxSpec,
    MailProtocol,
    Secret,
    ServerSpec,
    TlsMode,
    TlsSpec,
)
from tests.support.fake_servers import FakeImapServer

MESSAGES = [
    b"Subject: one\r\nDate: Wed, 2 Dec 2026 08:00:00 -0500\r\n\r\nfirst\r\n",
    b"Subject: two\r\n\r\nsecond\r\n",
]


def plain(port: int) -> ServerSpec:
    return ServerSpec(
        host="127.0.0.1",
        port=port,
        protocol=MailProtocol.IMAP,
        tls=TlsSpec(mode=TlsMode.NONE),
        timeout=5,
    )


def poll_into(source: FakeImapServer, destination: FakeImapServer) -> PollReport:
    spec = MailboxSpec(
        server=plain(source.port),
        username="joe",
        password=Secret("secret"),
        delivery=DeliverySpec(
            kind=DeliveryKind.IMAP,
            mailbox=AppendTarget(
                server=plain(destination.port),
                username="joe",
                password=Secret("secret"),
            ),
        ),
    )
    return poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())


def remaining(source: FakeImapServer) -> list[bytes]:
    return [m.body for m in source.messages]  # expunged ones are gone


def test_a_tagged_ok_deletes_the_source_copy() -> None:
    with (
        FakeImapServer(MESSAGES) as source,
        FakeImapServer(
            overrides={"APPEND": b"{tag} OK [APPENDUID 7 1] done\r\n"}
        ) as dest,
    ):
        report = poll_into(source, dest)

    assert report.exit_code is ExitCode.SUCCESS, report.error
    assert [m.status for m in report.messages] == [MessageStatus.DELIVERED] * 2
    assert remaining(source) == []
    appends = [c for c in dest.commands if " APPEND " in c]
    assert len(appends) == 2
    # The Date: header became the internal date; no header, no date.
    assert '"02-Dec-2026 08:00:00 -0500"' in appends[0]
    assert appends[1].split('"INBOX" ')[1].startswith('"Subject: two')


@pytest.mark.parametrize(
    ("faults", "what"),
    [
        pytest.param({"drop_on": "APPEND"}, "hangs up", id="hangup"),
        pytest.param(
            {"hangup_after": {"APPEND": b"* OK still thinking\r\n"}},
            "hangs up after an untagged line",
            id="hangup-after-untagged",
        ),
        pytest.param(
            {"overrides": {"APPEND": b"Z999 OK [APPENDUID 1 1] done\r\n"}},
            "answers another tag",
            id="wrong-tag",
        ),
        pytest.param(
            {"overrides": {"APPEND": b"what is this\r\n"}}, "talks nonsense", id="junk"
        ),
        pytest.param(
            {"overrides": {"APPEND": b"{tag} NO [OVERQUOTA] full\r\n"}},
            "is over quota",
            id="no",
        ),
        pytest.param(
            {"overrides": {"APPEND": b"{tag} BAD message not accepted\r\n"}},
            "says BAD",
            id="bad",
        ),
    ],
)
def test_a_destination_that_does_not_say_ok_keeps_every_message(
    faults: dict[str, Any], what: str
) -> None:
    with FakeImapServer(MESSAGES) as source, FakeImapServer(**faults) as dest:
        report = poll_into(source, dest)

    assert not any(m.status is MessageStatus.DELIVERED for m in report.messages), what
    assert remaining(source) == MESSAGES, what


def test_an_ok_before_the_literal_is_sent_is_not_a_delivery() -> None:
    """A server that answers OK instead of "+": the message never left us."""
    with (
        FakeImapServer(MESSAGES) as source,
        FakeImapServer() as dest,
    ):
        dest.overrides["APPEND"] = b"{tag} OK [APPENDUID 1 1] sure\r\n"
        # The fake inlines literals itself; answer before it asks for one.
        dest._read_command = _answer_before_literal(dest)  # type: ignore[method-assign]
        report = poll_into(source, dest)

    assert remaining(source) == MESSAGES, report.messages


def _answer_before_literal(server: FakeImapServer):  # type: ignore[no-untyped-def]
    def read(client):  # type: ignore[no-untyped-def]
        line = client.readline().rstrip(b"\r\n")
        if b" APPEND " in line and line.endswith(b"}"):
            tag = line.split(b" ", 1)[0]
            client.send(tag + b" OK [APPENDUID 1 1] sure\r\n")
            client.close()
        return line

    return read


def test_a_destination_that_refuses_the_login_ends_the_poll() -> None:
    with (
        FakeImapServer(MESSAGES) as source,
        FakeImapServer(password="another") as dest,
    ):
        report = poll_into(source, dest)

    assert report.exit_code is ExitCode.SMTP
    assert "destination mailbox joe at 127.0.0.1" in report.error
    assert remaining(source) == MESSAGES


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"Date: Tue, 03 Mar 2026 10:11:12 +0100", "03-Mar-2026 10:11:12 +0100"),
        (b"Date: 3 Mar 2026 10:11 -0000", "03-Mar-2026 10:11:00 +0000"),
        (b"Date: yesterday", None),
        (b"Date: Tue, 03 Mar 10000 10:11:12 +0100", None),
        (b"X-Date: Tue, 03 Mar 2026 10:11:12 +0100", None),
    ],
)
def test_the_internal_date_comes_from_the_date_header(
    header: bytes, expected: str | None
) -> None:
    assert imap_date(b"Subject: s\r\n" + header + b"\r\n\r\nbody\r\n") == expected


@pytest.mark.parametrize(
    "target",
    [
        AppendTarget(server=plain(1), username="u", flags=("\\Recent",)),
        AppendTarget(server=plain(1), username="u", flags=("two words",)),
        AppendTarget(server=plain(1), username="u", flags=(")\\Seen",)),
        AppendTarget(server=plain(1), username="u", folder=""),
        AppendTarget(server=plain(1), username="u", folder="a\r\nb"),
        AppendTarget(
            server=ServerSpec(host="h", protocol=MailProtocol.POP3), username="u"
        ),
    ],
)
def test_a_destination_that_can_never_work_is_refused_before_polling(
    target: AppendTarget,
) -> None:
    with pytest.raises(ConfigError):
        check_target(target)
