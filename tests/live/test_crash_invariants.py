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

    from retrieval.engine.ports import PollStep
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
    )


class Crash:
    """An observer that calls ``action`` at the CRASH_ON-th time ``step`` comes."""

    def __init__(self, step: str, action: Any) -> None:
        self.step, self.action, self.seen = step, action, 0

    def __call__(self, step: PollStep, uid: str) -> None:
        if step == self.step:
            self.seen += 1
            if self.seen == CRASH_ON:
                self.action()


def drive(cfg: dict[str, Any]) -> None:
    """The driver: one poll with the idfile ledger, killed at ``crash_at``."""
    spec = build_spec(cfg)
    observe = None
    if cfg.get("crash_at"):
        observe = Crash(cfg["crash_at"], lambda: os.kill(os.getpid(), signal.SIGKILL))
    with IdFile.open(cfg["idfile"]) as idfile:
        ledger = idfile.ledger(mailbox_key(spec))
        report = poll(spec, ledger=ledger, transcript=ListTranscript(), observe=observe)
    sys.stdout.write(f"exit {int(report.exit_code)}: {report.error}\n")


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


if __name__ == "__main__":
    drive(json.loads(sys.argv[1]))
