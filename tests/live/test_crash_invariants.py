"""Crash a poll at every step of a message's journey, poll again, count.

The invariant (DESIGN.md, reliability.md 1, 5, 6): every message ends either
delivered exactly once or still on the server. The one duplicate allowed is a
crash after the listener took the message (it decides at the final dot) and
before the ledger commit: the steps "dot" and "replied".

Two kinds of crash, against a real Dovecot and the real aiosmtpd listener:

* the process dies: this module is also a driver (``python -m
  tests.live.test_crash_invariants CONFIG``) that polls with the command
  line's idfile ledger and SIGKILLs itself when the engine reaches the step;
* a connection dies: a proxy in front of Dovecot or of the listener cuts every
  connection when the engine reaches the step, and the process goes on.

The crash is placed on the second of three messages, so that the messages
before and after it are checked too.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from retrieval.cli.idfile import IdFile, mailbox_key
from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.run import poll
from retrieval.engine.spec import (
    DeliveryKind,
    DeliverySpec,
    MailboxSpec,
    MailProtocol,
    Secret,
    ServerSpec,
    TlsMode,
    TlsSpec,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime

    from retrieval.engine.ports import MessageKey, PollStep
    from tests.support.dovecot import Dovecot, MailUser
    from tests.support.smtp_listener import SmtpListener

pytestmark = pytest.mark.live

STEPS: list[PollStep] = ["fetched", "data", "dot", "replied", "recorded", "deleted"]
# The listener has the message but our ledger does not know yet.
DUPLICATE_WINDOW = {"dot", "replied"}
CRASH_ON = 2  # the second message
REPO = Path(__file__).resolve().parents[2]


def message(n: int) -> bytes:
    return (
        f"From: sender@example.net\r\nMessage-ID: <crash-{n}@example.net>\r\n"
        f"Subject: crash test {n}\r\n\r\nbody {n}\r\n.leading dot\r\n"
    ).encode()


def config(
    dovecot: Dovecot, user: MailUser, listener_port: int, protocol: str, port: int
) -> dict[str, Any]:
    return {
        "host": dovecot.host,
        "port": port,
        "protocol": protocol,
        "user": user.name,
        "password": user.password,
        "listener": f"127.0.0.1/{listener_port}",
    }


def build_spec(cfg: dict[str, Any]) -> MailboxSpec:
    return MailboxSpec(
        server=ServerSpec(
            host=cfg["host"],
            port=cfg["port"],
            protocol=MailProtocol(cfg["protocol"]),
            tls=TlsSpec(mode=TlsMode.NONE),
            timeout=10,
        ),
        username=cfg["user"],
        password=Secret(cfg["password"]),
        delivery=DeliverySpec(
            kind=DeliveryKind.SMTP,
            hosts=(cfg["listener"],),
            recipients=("joe@example.org",),
            timeout=10,
        ),
        name="crash",
        expunge=cfg.get("expunge", 0),
    )


class Crash:
    """An observer that calls ``action`` at the ``nth`` time ``step`` comes."""

    def __init__(self, step: str, action: Any, nth: int = CRASH_ON) -> None:
        self.step, self.action, self.nth, self.seen = step, action, nth, 0

    def __call__(self, step: PollStep, uid: str) -> None:
        if step == self.step:
            self.seen += 1
            if self.seen == self.nth:
                self.action()


class SyncedLedger:
    """An idfile ledger that knows how much of its journal ``sync`` made durable,
    so that the driver can play a power cut: what was written after the last
    sync is lost, as the page cache is."""

    def __init__(self, ledger: Any, journal: Path) -> None:
        self._ledger, self._journal, self.synced = ledger, journal, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    def sync(self) -> None:
        self._ledger.sync()
        self.synced = self._journal.stat().st_size if self._journal.exists() else 0

    def power_cut(self) -> None:
        if self._journal.exists():
            os.truncate(self._journal, self.synced)
        os.kill(os.getpid(), signal.SIGKILL)


def drive(cfg: dict[str, Any]) -> None:
    """The driver: one poll with the idfile ledger, killed at ``crash_at`` (the
    ``nth`` time; with ``power_cut`` the unsynced journal dies with it)."""
    spec = build_spec(cfg)
    with IdFile.open(cfg["idfile"]) as idfile:
        ledger = SyncedLedger(
            idfile.ledger(mailbox_key(spec)), Path(idfile.journal_path)
        )
        observe = None
        if cfg.get("crash_at"):
            die = ledger.power_cut if cfg.get("power_cut") else _sigkill
            observe = Crash(cfg["crash_at"], die, cfg.get("nth", CRASH_ON))
        report = poll(spec, ledger=ledger, transcript=ListTranscript(), observe=observe)
    sys.stdout.write(f"exit {int(report.exit_code)}: {report.error}\n")


def _sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def run_driver(cfg: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.live.test_crash_invariants", json.dumps(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ids(messages: list[bytes]) -> list[str]:
    found = []
    for data in messages:
        for line in data.split(b"\r\n"):
            if line.startswith(b"Message-ID: <crash-"):
                found.append(line.decode().split("<")[1].rstrip(">"))
    return found


def check(
    step: str,
    delivered: list[str],
    on_server: list[str],
    everything: set[str],
) -> None:
    """Exactly once or still there; one duplicate only inside the window."""
    assert set(delivered) | set(on_server) == everything, "a message was lost"
    duplicates = len(delivered) - len(set(delivered))
    assert duplicates <= (1 if step in DUPLICATE_WINDOW else 0), delivered


PATHS = [
    pytest.param("pop3", id="pop3"),
    pytest.param("imap", id="imap"),
]


def port_of(dovecot: Dovecot, protocol: str) -> int:
    return dovecot.pop3_port if protocol == "pop3" else dovecot.imap_port


@pytest.mark.parametrize("protocol", PATHS)
@pytest.mark.parametrize("step", STEPS)
def test_a_killed_poll_loses_nothing(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    tmp_path: Path,
    protocol: str,
    step: str,
) -> None:
    for n in (1, 2, 3):
        dovecot.put(mailuser.name, message(n))
    everything = {f"crash-{n}@example.net" for n in (1, 2, 3)}
    cfg = config(
        dovecot, mailuser, smtp_listener.port, protocol, port_of(dovecot, protocol)
    )
    cfg["idfile"] = str(tmp_path / "idfile")

    killed = run_driver({**cfg, "crash_at": step})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    check(
        step,
        ids([m.data for m in smtp_listener.messages]),
        ids(dovecot.messages(mailuser.name)),
        everything,
    )

    again = run_driver(cfg)
    assert again.returncode == 0 and again.stdout.startswith("exit 0"), again.stdout
    delivered = ids([m.data for m in smtp_listener.wait_for(3)])
    check(step, delivered, [], everything)
    assert set(delivered) == everything and dovecot.messages(mailuser.name) == []


@pytest.mark.parametrize("protocol", PATHS)
def test_a_poll_killed_reading_the_message_after_next_loses_nothing(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    tmp_path: Path,
    protocol: str,
) -> None:
    """The third "fetched" comes while the listener judges message 1 (after
    its final dot, before its reply is read): killed there, message 1 may be
    delivered again by the next poll, as after a kill at "dot"; never lost."""
    for n in (1, 2, 3):
        dovecot.put(mailuser.name, message(n))
    everything = {f"crash-{n}@example.net" for n in (1, 2, 3)}
    cfg = config(
        dovecot, mailuser, smtp_listener.port, protocol, port_of(dovecot, protocol)
    )
    cfg["idfile"] = str(tmp_path / "idfile")

    killed = run_driver({**cfg, "crash_at": "fetched", "nth": 3})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    check(
        "dot",
        ids([m.data for m in smtp_listener.messages]),
        ids(dovecot.messages(mailuser.name)),
        everything,
    )

    again = run_driver(cfg)
    assert again.returncode == 0 and again.stdout.startswith("exit 0"), again.stdout
    delivered = ids([m.data for m in smtp_listener.wait_for(3)])
    check("dot", delivered, [], everything)
    assert set(delivered) == everything and dovecot.messages(mailuser.name) == []


class Proxy:
    """TCP forwarding to ``target`` on 127.0.0.1 that can cut every connection."""

    def __init__(self, target: int) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(
                target=self._pump, args=(client, upstream), daemon=True
            ).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError):
            while True:
                ready, _, _ = select.select([a, b], [], [], 0.5)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)

    def cut(self) -> None:
        """Reset every open connection, as a dying network would."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0"
                    )
                    sock.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self.cut()


@pytest.fixture
def proxies() -> Iterator[list[Proxy]]:
    made: list[Proxy] = []
    yield made
    for proxy in made:
        proxy.close()


@pytest.mark.parametrize("protocol", PATHS)
@pytest.mark.parametrize("side", ["server", "listener"])
@pytest.mark.parametrize("step", STEPS)
def test_a_cut_connection_loses_nothing(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    proxies: list[Proxy],
    protocol: str,
    side: str,
    step: str,
) -> None:
    for n in (1, 2, 3):
        dovecot.put(mailuser.name, message(n))
    everything = {f"crash-{n}@example.net" for n in (1, 2, 3)}
    server_port, listener_port = port_of(dovecot, protocol), smtp_listener.port
    proxy = Proxy(server_port if side == "server" else listener_port)
    proxies.append(proxy)
    if side == "server":
        server_port = proxy.port
    else:
        listener_port = proxy.port
    spec = build_spec(config(dovecot, mailuser, listener_port, protocol, server_port))
    ledger = MemoryLedger()

    crash = Crash(step, proxy.cut)
    poll(spec, ledger=ledger, transcript=ListTranscript(), observe=crash)
    assert crash.seen >= CRASH_ON  # the connection was cut where it was meant to be
    check(
        step,
        ids([m.data for m in smtp_listener.messages]),
        ids(dovecot.messages(mailuser.name)),
        everything,
    )

    report = poll(spec, ledger=ledger, transcript=ListTranscript())
    assert report.error == "", report.error
    delivered = ids([m.data for m in smtp_listener.wait_for(3)])
    check(step, delivered, [], everything)
    assert set(delivered) == everything and dovecot.messages(mailuser.name) == []


# --- the batch: group commit of the ledger (issue 14, item 6) ---------------------
#
# Each delivery is written to the ledger before the next message; one sync makes
# them durable right before the server may commit deletions (POP3 QUIT, IMAP
# STORE \Deleted + EXPUNGE). A killed process keeps what it wrote: no duplicate
# beyond the one window. A power cut loses what was written since the last sync:
# that batch comes again, but none of it was deleted, so nothing is lost.

BATCH = 5
EVERY_BATCH = {f"crash-{n}@example.net" for n in range(1, BATCH + 1)}


def _batch(
    dovecot: Dovecot, mailuser: MailUser, listener: SmtpListener, protocol: str
) -> dict[str, Any]:
    """BATCH messages on the server; the poll's configuration."""
    for n in range(1, BATCH + 1):
        dovecot.put(mailuser.name, message(n))
    return config(
        dovecot, mailuser, listener.port, protocol, port_of(dovecot, protocol)
    )


def _durable_message_ids(idfile: str) -> set[str]:
    """What the idfile holds after the crash (opening it replays the journal)."""
    with IdFile.open(idfile) as ids:
        folders = ids.folders(next(iter(ids._mailboxes), "none"))
        return {
            message_id.strip("<>")
            for record in folders.values()
            for message_id in record["uids"].values()
        }


@pytest.mark.parametrize("protocol", PATHS)
@pytest.mark.parametrize(
    ("step", "nth", "power_cut", "expunge", "duplicates"),
    [
        # Killed after writing the 4th record: written is enough, no duplicate.
        pytest.param("recorded", 4, False, 0, 0, id="kill-after-4th-write"),
        # Power cut there: nothing was synced, nothing deleted; 1-4 come again.
        pytest.param("recorded", 4, True, 0, 4, id="power-cut-unsynced-batch"),
        # expunge 2: the first QUIT/EXPUNGE synced 1-2 first; only 3-4 come again.
        pytest.param("recorded", 4, True, 2, 2, id="power-cut-after-a-commit"),
        # Between the sync and the QUIT/EXPUNGE it guards: nothing comes again.
        pytest.param("synced", 1, True, 2, 0, id="power-cut-after-sync"),
        pytest.param("synced", 2, False, 2, 0, id="kill-after-second-sync"),
        # The end of a poll: everything synced, the closing QUIT/EXPUNGE not sent.
        pytest.param("synced", 1, True, 0, 0, id="power-cut-before-the-end"),
    ],
)
def test_a_crashed_batch_is_never_deleted_before_its_records_are_durable(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    tmp_path: Path,
    protocol: str,
    step: str,
    nth: int,
    power_cut: bool,
    expunge: int,
    duplicates: int,
) -> None:
    cfg = _batch(dovecot, mailuser, smtp_listener, protocol)
    cfg |= {"idfile": str(tmp_path / "idfile"), "expunge": expunge}

    crashed = run_driver({**cfg, "crash_at": step, "nth": nth, "power_cut": power_cut})
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    delivered = ids([m.data for m in smtp_listener.messages])
    on_server = ids(dovecot.messages(mailuser.name))
    assert set(delivered) | set(on_server) == EVERY_BATCH, "a message was lost"
    # The point of the sync: a message gone from the server has a durable record.
    gone = EVERY_BATCH - set(on_server)
    assert gone <= _durable_message_ids(cfg["idfile"]), (gone, on_server)

    again = run_driver(cfg)
    # exit 1 (no mail) when everything was delivered and only the deletes remain
    assert again.returncode == 0 and again.stdout in ("exit 0: \n", "exit 1: \n")
    delivered = ids([m.data for m in smtp_listener.wait_for(BATCH + duplicates)])
    assert set(delivered) == EVERY_BATCH and dovecot.messages(mailuser.name) == []
    assert len(delivered) - len(set(delivered)) == duplicates, delivered


class _Ordered:
    """One list of what the ledger did and what the client sent, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []


class _OrderLedger(MemoryLedger):
    def __init__(self, order: _Ordered) -> None:
        super().__init__()
        self.order = order

    def mark_delivered(
        self, key: MessageKey, message_id: str = "", at: datetime | None = None
    ) -> None:
        super().mark_delivered(key, message_id, at)
        self.order.events.append(("mark", key.uid))

    def sync(self) -> None:
        super().sync()
        self.order.events.append(("sync", ""))


class _OrderTranscript(ListTranscript):
    def __init__(self, order: _Ordered) -> None:
        super().__init__()
        self.order = order

    def record(self, direction: Any, text: str) -> None:
        super().record(direction, text)
        if direction == "C":  # recorded before the line is written to the socket
            self.order.events.append(("sent", text))


def _commits_deletions(protocol: str, line: str) -> bool:
    if protocol == "pop3":
        return line == "QUIT"
    words = line.split()
    return words[1:3] == ["UID", "STORE"] or "EXPUNGE" in words[1:3]


@pytest.mark.parametrize("protocol", PATHS)
@pytest.mark.parametrize("expunge", [0, 2], ids=["at-the-end", "expunge-2"])
def test_the_ledger_is_synced_before_the_server_may_commit_a_deletion(
    dovecot: Dovecot,
    mailuser: MailUser,
    smtp_listener: SmtpListener,
    protocol: str,
    expunge: int,
) -> None:
    cfg = _batch(dovecot, mailuser, smtp_listener, protocol)
    order = _Ordered()
    ledger = _OrderLedger(order)

    report = poll(
        build_spec({**cfg, "expunge": expunge}),
        ledger=ledger,
        transcript=_OrderTranscript(order),
    )

    assert report.error == "" and dovecot.messages(mailuser.name) == []
    commits = [
        i
        for i, (kind, text) in enumerate(order.events)
        if kind == "sent" and _commits_deletions(protocol, text)
    ]
    assert commits, order.events
    for at in commits:
        # Right before it: a sync, with no record written since.
        before = [kind for kind, _ in order.events[:at] if kind != "sent"]
        assert before[-1] == "sync", order.events
    marks = [i for i, (kind, _) in enumerate(order.events) if kind == "mark"]
    assert len(marks) == BATCH
    # Group commit: fewer syncs than records (one per QUIT/EXPUNGE).
    assert ledger.syncs < BATCH and ledger.durable_marks == BATCH
    # Every record, the last one too, was synced before the last commit.
    assert all(m < commits[-1] for m in marks)


if __name__ == "__main__":
    drive(json.loads(sys.argv[1]))
