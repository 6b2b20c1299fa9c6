"""``fetchall`` after a cut, stall or listener fault delivers nothing twice (issue 10.1).

Most rcfiles say ``fetchall``. A session that ends before its deletes are
committed (POP3 commits DELE at QUIT, IMAP at EXPUNGE) leaves on the server
messages the ledger records as delivered. Without ``keep`` those are deleted at
the next poll, never delivered again, ``fetchall`` or not: the only duplicates
left are messages whose 250 the listener sent and we never read.

A real Dovecot and the real aiosmtpd listener, with a proxy
(tests/support/cutting_proxy.py) that cuts or stalls the connection to the
server after every N messages, or drops or stalls the listener's connection
right after the final dot. The mailbox is polled until it is empty; copies are
counted per Message-ID at the listener.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from retrieval.cli.idfile import IdFile, mailbox_key
from retrieval.engine.check import check
from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.run import poll
from tests.live.test_crash_invariants import Crash, build_spec, config, ids, message
from tests.support.cutting_proxy import Action, CuttingProxy, Trigger

if TYPE_CHECKING:
    from collections.abc import Iterator

    from retrieval.engine.ports import Ledger
    from retrieval.engine.report import PollReport
    from retrieval.engine.spec import MailboxSpec
    from tests.support.dovecot import Dovecot, MailUser
    from tests.support.smtp_listener import SmtpListener

pytestmark = pytest.mark.live

COUNT = 12
EVERY = 5  # messages between two faults
STALL_TIMEOUT = 2  # seconds; a stalled connection must end the poll
MAX_POLLS = 30
REPO = Path(__file__).resolve().parents[2]

# fault: (which connection, marker, action, act after the marker)
FAULTS: dict[str, tuple[bool, bytes, Action, bool]] = {
    "server-cut": (True, b"Message-ID: <", "cut", False),
    "server-stall": (True, b"Message-ID: <", "stall", False),
    "listener-drop-after-dot": (False, b"\r\n.\r\n", "cut", True),
    "listener-stall-after-dot": (False, b"\r\n.\r\n", "stall", True),
}


@pytest.fixture
def proxies() -> Iterator[list[CuttingProxy]]:
    made: list[CuttingProxy] = []
    yield made
    for proxy in made:
        proxy.close()


def faulty_spec(
    dovecot: Dovecot,
    user: MailUser,
    listener: SmtpListener,
    proxies: list[CuttingProxy],
    protocol: str,
    fault: str,
    **options: Any,
) -> tuple[MailboxSpec, Trigger]:
    to_server, marker, action, after = FAULTS[fault]
    trigger = Trigger(marker, EVERY, action, from_server=to_server, after=after)
    server_port = dovecot.pop3_port if protocol == "pop3" else dovecot.imap_port
    listener_port = listener.port
    proxy = CuttingProxy(server_port if to_server else listener_port, trigger)
    proxies.append(proxy)
    if to_server:
        server_port = proxy.port
    else:
        listener_port = proxy.port
    spec = build_spec(config(dovecot, user, listener_port, protocol, server_port))
    spec = replace(
        spec,
        server=replace(spec.server, timeout=STALL_TIMEOUT),
        delivery=replace(spec.delivery, timeout=STALL_TIMEOUT),
        **options,
    )
    return spec, trigger


def fill(dovecot: Dovecot, user: MailUser, count: int = COUNT) -> set[str]:
    for n in range(1, count + 1):
        dovecot.put(user.name, message(n))
    return {f"crash-{n}@example.net" for n in range(1, count + 1)}


def until_empty(
    spec: MailboxSpec, ledger: Ledger, dovecot: Dovecot, user: MailUser
) -> list[PollReport]:
    reports = []
    for _ in range(MAX_POLLS):
        reports.append(poll(spec, ledger=ledger, transcript=ListTranscript()))
        if not dovecot.messages(user.name):
            return reports
    raise AssertionError(f"still {len(dovecot.messages(user.name))} on the server")


def copies(listener: SmtpListener) -> Counter[str]:
    """Copies per Message-ID of every message the listener got to the final dot
    of: one whose reply was lost is a delivery all the same."""
    return Counter(ids([r.data for r in listener.received]))


def assert_duplicates_only_where_a_250_was_lost(
    got: Counter[str], everything: set[str], trigger: Trigger
) -> None:
    assert set(got) == everything, "a message was lost"
    duplicated = {mid: n for mid, n in got.items() if n > 1}
    lost = Counter(trigger.lost)
    for mid, n in duplicated.items():
        assert n - 1 <= lost[mid], (
            f"{mid} delivered {n} times but its reply was lost {lost[mid]} times; "
            f"all duplicates: {duplicated}"
        )


@pytest.mark.parametrize("fetchall", [True, False], ids=["fetchall", "no-fetchall"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_faults_redeliver_only_what_lost_its_250(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    proxies: list[CuttingProxy],
    protocol: str,
    fault: str,
    fetchall: bool,
) -> None:
    everything = fill(dovecot, mailuser)
    spec, trigger = faulty_spec(
        dovecot, mailuser, smtp_listener, proxies, protocol, fault, fetchall=fetchall
    )

    until_empty(spec, MemoryLedger(), dovecot, mailuser)

    assert trigger.fired >= 2  # the faults did happen, more than once
    got = copies(smtp_listener)
    assert_duplicates_only_where_a_250_was_lost(got, everything, trigger)
    if FAULTS[fault][0]:  # the server's connection: no 250 can be lost there
        assert max(got.values()) == 1, got


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_the_idfile_ledger_forgets_nothing_with_fetchall(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    proxies: list[CuttingProxy],
    protocol: str,
    tmp_path: Path,
) -> None:
    everything = fill(dovecot, mailuser)
    spec, trigger = faulty_spec(
        dovecot, mailuser, smtp_listener, proxies, protocol, "server-cut", fetchall=True
    )
    for _ in range(MAX_POLLS):
        # Each poll opens the file again, as each run of the command line does.
        with IdFile.open(str(tmp_path / "idfile")) as idfile:
            poll(
                spec,
                ledger=idfile.ledger(mailbox_key(spec)),
                transcript=ListTranscript(),
            )
        if not dovecot.messages(mailuser.name):
            break
    assert trigger.fired >= 2
    got = copies(smtp_listener)
    assert set(got) == everything and max(got.values()) == 1, got


def drive(cfg: dict[str, Any]) -> None:
    """A poll with the idfile ledger and fetchall, SIGKILLed at ``crash_at``."""
    spec = replace(build_spec(cfg), fetchall=True)
    observe = None
    if cfg.get("crash_at"):
        observe = Crash(cfg["crash_at"], lambda: os.kill(os.getpid(), signal.SIGKILL))
    with IdFile.open(cfg["idfile"]) as idfile:
        poll(
            spec,
            ledger=idfile.ledger(mailbox_key(spec)),
            transcript=ListTranscript(),
            observe=observe,
        )


@pytest.mark.parametrize("step", ["recorded", "deleted"])
@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_a_killed_fetchall_poll_redelivers_nothing(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    tmp_path: Path,
    protocol: str,
    step: str,
) -> None:
    everything = fill(dovecot, mailuser, 3)
    port = dovecot.pop3_port if protocol == "pop3" else dovecot.imap_port
    cfg = config(dovecot, mailuser, smtp_listener.port, protocol, port)
    cfg["idfile"] = str(tmp_path / "idfile")

    def run(extra: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tests.live.test_fetchall_cuts", json.dumps(extra)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    killed = run({**cfg, "crash_at": step})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    again = run(cfg)
    assert again.returncode == 0, again.stderr
    got = copies(smtp_listener)
    assert set(got) == everything and max(got.values()) == 1, got
    assert dovecot.messages(mailuser.name) == []


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_with_keep_cuts_redeliver_nothing_without_fetchall(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    proxies: list[CuttingProxy],
    protocol: str,
) -> None:
    everything = fill(dovecot, mailuser)
    spec, trigger = faulty_spec(
        dovecot, mailuser, smtp_listener, proxies, protocol, "server-cut", keep=True
    )
    ledger = MemoryLedger()
    for _ in range(MAX_POLLS):
        poll(spec, ledger=ledger, transcript=ListTranscript())
        if set(copies(smtp_listener)) == everything:
            break
    poll(spec, ledger=ledger, transcript=ListTranscript())
    got = copies(smtp_listener)
    assert trigger.fired >= 2
    assert set(got) == everything and max(got.values()) == 1, got
    assert len(dovecot.messages(mailuser.name)) == COUNT


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_with_keep_fetchall_fetches_everything_again_as_fetchmail_does(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    protocol: str,
) -> None:
    everything = fill(dovecot, mailuser, 3)
    port = dovecot.pop3_port if protocol == "pop3" else dovecot.imap_port
    spec = replace(
        build_spec(config(dovecot, mailuser, smtp_listener.port, protocol, port)),
        keep=True,
        fetchall=True,
    )
    ledger = MemoryLedger()
    poll(spec, ledger=ledger, transcript=ListTranscript())
    poll(spec, ledger=ledger, transcript=ListTranscript())
    got = copies(smtp_listener)
    assert set(got) == everything and set(got.values()) == {2}, got


if __name__ == "__main__":
    drive(json.loads(sys.argv[1]))


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_check_with_fetchall_does_not_count_what_was_delivered(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    tmp_path: Path,
    protocol: str,
) -> None:
    fill(dovecot, mailuser, 3)
    port = dovecot.pop3_port if protocol == "pop3" else dovecot.imap_port
    cfg = config(dovecot, mailuser, smtp_listener.port, protocol, port)
    cfg["idfile"] = str(tmp_path / "idfile")
    killed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.live.test_fetchall_cuts",
            json.dumps({**cfg, "crash_at": "recorded"}),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(dovecot.messages(mailuser.name)) == 3  # nothing was committed

    spec = replace(build_spec(cfg), fetchall=True)
    with IdFile.open(cfg["idfile"]) as idfile:
        checked = check(
            spec, ledger=idfile.ledger(mailbox_key(spec)), transcript=ListTranscript()
        )
    assert (checked.total, checked.waiting) == (3, 1), checked.error
