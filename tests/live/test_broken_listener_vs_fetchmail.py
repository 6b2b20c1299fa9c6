"""Broken listeners lose nothing (issue 10, item 9): real Dovecot as the
source (POP3S and IMAPS), a scripted listener that answers what no real one
does, and fetchmail 6.4 run with the same rcfile alongside.

* 250 instead of 354 to DATA, then the listener hangs up. Before the fix we
  took the 250 as acceptance and deleted every message; fetchmail sends the
  message, loses the connection before the final reply and keeps it. Both
  keep everything now.
* 252 to MAIL FROM (a VRFY reply, RFC 5321 3.5.3, not one 4.3.2 lists for
  MAIL). Before the fix we counted the 252 as the listener's acceptance and
  deleted messages that were never sent anywhere. fetchmail reads any 2xx as
  "go on" and delivers; we, deliberately stricter, keep the messages and say
  why (exit 10): only the reply the step requires lets a delivery go on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.live.test_cli_vs_fetchmail import CONTENT, Comparison, fetchmail_home
from tests.support.dovecot import MailUser
from tests.support.fake_servers import FakeSmtpServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.rcfile.oracle import Oracle
    from tests.support.dovecot import Dovecot

pytestmark = [pytest.mark.live, pytest.mark.fetchmail]
__all__ = ["fetchmail_home"]  # the fixture, shared


class ScriptedListener:
    """The face :class:`Comparison` expects, on a scripted fake listener."""

    host = "127.0.0.1"

    def __init__(self, server: FakeSmtpServer) -> None:
        self.server = server
        self.port = server.port

    @property
    def messages(self) -> list[Any]:
        return list(self.server.received)

    def clear(self) -> None:
        self.server.received.clear()


def comparison(
    faults: dict[str, Any],
    dovecot: Dovecot,
    home: Oracle,
    tmp_path: Path,
    user: MailUser,
) -> Iterator[Comparison]:
    imap_user = MailUser(f"{user.name}i", user.password + "i")
    dovecot.add_user(imap_user.name, imap_user.password)
    with FakeSmtpServer(**faults) as server:
        yield Comparison(
            dovecot,
            ScriptedListener(server),  # type: ignore[arg-type]
            home,
            tmp_path,
            [user, imap_user],
        )


@pytest.fixture
def data_250_then_drop(
    dovecot: Dovecot, fetchmail_home: Oracle, tmp_path: Path, mailuser: MailUser
) -> Iterator[Comparison]:
    yield from comparison(
        {"hangup_after": {"DATA": b"250 2.0.0 ok\r\n"}},
        dovecot,
        fetchmail_home,
        tmp_path,
        mailuser,
    )


@pytest.fixture
def mail_252(
    dovecot: Dovecot, fetchmail_home: Oracle, tmp_path: Path, mailuser: MailUser
) -> Iterator[Comparison]:
    yield from comparison(
        {"replies": {"MAIL": "252 2.1.0 cannot verify, will try"}},
        dovecot,
        fetchmail_home,
        tmp_path,
        mailuser,
    )


def test_250_to_data_then_a_hangup_keeps_everything_in_both(
    data_250_then_drop: Comparison,
) -> None:
    compare = data_250_then_drop
    theirs, ours = compare.both(compare.rcfile(), CONTENT)

    assert theirs.left == ours.left == [2, 2], (theirs, ours)
    assert theirs.delivered == ours.delivered == []
    assert ours.code == 10, ours
    assert "where only 354" in ours.output


def test_252_to_mail_from_keeps_everything_in_ours(mail_252: Comparison) -> None:
    compare = mail_252
    theirs, ours = compare.both(compare.rcfile(), CONTENT)

    # fetchmail takes 252 as "go on" and delivers for real (no loss there).
    assert theirs.left == [0, 0] and len(theirs.delivered) == 4, theirs
    # We do not go on without the reply the step requires; nothing is lost.
    assert ours.left == [2, 2] and ours.delivered == [], ours
    assert ours.code == 10 and "252" in ours.output, ours
