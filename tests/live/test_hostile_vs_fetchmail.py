"""Hostile POP3 servers (issue 10, item 9) through fetchmail 6.4 and through
``python -m retrieval.engine``, from the same rcfile and the same fake server.

* a body trickled a few bytes at a time, each piece inside the timeout but
  a line taking longer: fetchmail's ``timeout`` (which bounds each line) ends
  it with exit 2, and so does ours (which bounds the whole message); both keep
  it. With short lines, each inside the timeout, fetchmail reads on to the end
  and delivers; we still stop once the whole message is late (exit 2), keeping
  it: stricter on purpose, or a server could hold a session for ever;
* a message whose first line is ``+OK ...`` (with ``bad-header accept``, so
  that both tools deliver a message without a header): both deliver it whole;
* a CAPA answer without end: fetchmail reads and forgets it line by line and
  goes on; we stop at the CAPA size bound with a protocol error (exit 4),
  keeping the message. A difference on purpose: a bounded answer is the rule.

The servers are the engine's fakes on loopback; no Dovecot is needed.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from tests.engine.conftest import message
from tests.engine.test_hostile_servers import (
    PIECE,
    STATUS_LIKE,
    TRICKLED,
    EndlessPop3,
    SlowPop3,
)
from tests.live.test_cli_dovecot import run_cli, without_received, write_rcfile
from tests.rcfile.oracle import FETCHMAIL, Oracle, have_fetchmail
from tests.support.fake_servers import FakePop3Server, FakeSmtpServer, dot_stuff

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

pytestmark = [pytest.mark.live, pytest.mark.fetchmail]

TIMEOUT = 2
LONG_LINE = b"Subject: slow\r\n\r\n" + b"x" * 320 + b"\r\n"


@pytest.fixture(scope="module")
def fetchmail_home() -> Iterator[Oracle]:
    if not have_fetchmail():
        pytest.skip("the fetchmail binary is not installed")
    home = Oracle()
    yield home
    home.close()


@dataclass
class Outcome:
    code: int
    delivered: list[bytes]
    left: int
    output: str


def rcfile(server: FakePop3Server, listener: FakeSmtpServer) -> str:
    return (
        f"poll 127.0.0.1 proto pop3 port {server.port} timeout {TIMEOUT} "
        "bad-header accept\n"
        f'    user "joe" pass "secret" sslproto "" '
        f"smtphost 127.0.0.1/{listener.port}\n"
    )


def fetchmail(home: Oracle, rc: str, name: str) -> subprocess.CompletedProcess[str]:
    path = home.write(rc.encode(), f"{name}.rc")
    kwargs: dict[str, Any] = {}
    if home.as_root:
        kwargs = {"user": home.pw.pw_uid, "group": home.pw.pw_gid, "extra_groups": []}
    return subprocess.run(
        [
            FETCHMAIL,
            "-f",
            str(path),
            "--nosyslog",
            "-d0",
            "-i",
            f"{home.dir}/{name}.ids",
        ],
        cwd=home.dir,
        env=home.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kwargs,
    )


def both(
    make: Callable[[], FakePop3Server], home: Oracle, tmp_path: Path
) -> tuple[Outcome, Outcome]:
    outcomes: list[Outcome] = []
    for tool in ("fetchmail", "ours"):
        with FakeSmtpServer() as listener, make() as server:
            rc = rcfile(server, listener)
            if tool == "fetchmail":
                done = fetchmail(home, rc, tool)
            else:
                path = write_rcfile(tmp_path / "ours.rc", rc)
                done = run_cli("-f", str(path), "-i", str(tmp_path / "ours.ids"))
            outcomes.append(
                Outcome(
                    done.returncode,
                    [without_received(r.data) for r in listener.received],
                    len(server.mailbox),
                    done.stdout + done.stderr,
                )
            )
    return outcomes[0], outcomes[1]


def test_a_trickled_body_is_ended_by_the_timeout_in_both(
    fetchmail_home: Oracle, tmp_path: Path
) -> None:
    rest = dot_stuff(LONG_LINE) + b".\r\n"  # the long line takes 10 s
    slow = {verb: (b"+OK\r\n", rest, PIECE) for verb in ("RETR", "TOP")}
    theirs, ours = both(
        lambda: SlowPop3([LONG_LINE], slow=slow), fetchmail_home, tmp_path
    )
    assert theirs.code == 2, theirs.output
    assert ours.code == 2, ours.output
    assert theirs.delivered == ours.delivered == []
    assert theirs.left == ours.left == 1


def test_short_lines_trickled_are_read_by_fetchmail_and_cut_off_by_us(
    fetchmail_home: Oracle, tmp_path: Path
) -> None:
    rest = dot_stuff(TRICKLED) + b".\r\n"  # a short line every half second
    slow = {verb: (b"+OK\r\n", rest, PIECE) for verb in ("RETR", "TOP")}
    theirs, ours = both(
        lambda: SlowPop3([TRICKLED], slow=slow), fetchmail_home, tmp_path
    )
    assert theirs.code == 0 and theirs.delivered == [TRICKLED], theirs.output
    assert ours.code == 2, ours.output
    assert ours.delivered == [] and ours.left == 1


def test_a_message_starting_with_ok_arrives_whole_in_both(
    fetchmail_home: Oracle, tmp_path: Path
) -> None:
    bodies = [STATUS_LIKE, b"Subject: two\r\n\r\nbody\r\n"]
    theirs, ours = both(lambda: FakePop3Server(bodies), fetchmail_home, tmp_path)
    assert theirs.code == ours.code == 0, (theirs.output, ours.output)
    assert theirs.delivered == ours.delivered == bodies
    assert theirs.left == ours.left == 0


def test_an_endless_capa_is_bounded_by_us_and_read_through_by_fetchmail(
    fetchmail_home: Oracle, tmp_path: Path
) -> None:
    theirs, ours = both(
        lambda: EndlessPop3([message(1)], endless="CAPA", cap=32 << 20),
        fetchmail_home,
        tmp_path,
    )
    assert theirs.code == 0 and theirs.left == 0, theirs.output
    assert ours.code == 4, ours.output
    assert "CAPA is longer than" in ours.output
    assert ours.delivered == [] and ours.left == 1
