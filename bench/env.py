"""Everything a benchmark invocation runs besides the clients: Dovecot, the mail
store, the bench listeners (one per ACK mode) and latency proxies.

Helper servers are separate Python processes, so that neither competes with the
harness (or with each other) for one interpreter lock; each prints
``READY <port>`` when it listens.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.cases import messages_for
from bench.mailstore import MailStore
from bench.tools import REPO
from tests.support.dovecot import Dovecot

if TYPE_CHECKING:
    from pathlib import Path

    from bench.cases import Case

SINK = "sink"  # the Dovecot user that LMTP delivers to
PASSWORD = "bench-secret"  # every Dovecot user's
# PLAIN and LOGIN only, like most providers: every client logs in the same way
# (fetchmail would pick CRAM-MD5, which the tests' Dovecot also offers).
AUTH_MECHANISMS = "plain login"


@dataclass(frozen=True)
class Sizes:
    messages: int | None  # None: each case's default (see bench.cases)
    users: int
    per_user: int
    big_mb: int


@dataclass(frozen=True)
class Plan:
    """What one case loads: user -> number of messages."""

    case: Case
    loads: dict[str, int]

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(self.loads)


def plan(case: Case, sizes: Sizes) -> Plan:
    if case.many:
        return Plan(case, {f"bench{i:04d}": sizes.per_user for i in range(sizes.users)})
    if case.big:
        return Plan(case, {"big0000": 1})
    return Plan(case, {"bench0000": messages_for(case, sizes.messages)})


class _Helper:
    def __init__(self, argv: list[str], log: Path) -> None:
        with log.open("ab") as err:
            # from the repository, so that "-m bench.x" works wherever we were run
            self.proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                text=True,
                cwd=REPO,
            )
        assert self.proc.stdout is not None
        try:
            line = self.proc.stdout.readline().split()
        except BaseException:
            self.stop()  # a SIGTERM while it starts: nobody else can stop it
            raise
        if line[:1] != ["READY"]:
            self.stop()
            raise RuntimeError(f"{argv[2]} did not start; see {log}")
        self.port = int(line[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Bench:
    def __init__(self, root: Path, *, seed: str, delay_ms: float) -> None:
        self.root = root
        self.delay_ms = delay_ms
        # The test suite's launcher, in our work dir: it stays after stop()
        # (cli.py removes it, or keeps it for the logs of an invalid run).
        self.dovecot = Dovecot(
            root / "dovecot", label="bench", auth_mechanisms=AUTH_MECHANISMS
        )
        self.store = MailStore(self.dovecot, root / "store", seed)
        self._listeners: dict[str, tuple[_Helper, Path]] = {}
        self._proxies: dict[int, _Helper] = {}
        self._manifest_file = root / "manifest.json"

    def start(self, plans: list[Plan], big_mb: int) -> None:
        """Start Dovecot and fill the store for every planned case (all of it
        before any listener starts: listeners read the manifest once)."""
        users = sorted({u for p in plans for u in p.users} | {SINK})
        self.dovecot.launch()
        for user in users:
            self.dovecot.add_user(user, PASSWORD)
        for p in plans:
            for user, count in p.loads.items():
                if p.case.big:
                    self.store.fill_big(user, big_mb * 1_000_000)
                else:
                    self.store.fill(user, count)
        self.store.manifest.dump(self._manifest_file)

    def listener(self, ack: str) -> tuple[int, Path]:
        """The bench SMTP listener for this ACK mode: (port, records file)."""
        if ack not in self._listeners:
            records = self.root / f"records-{ack}.jsonl"
            failures = self.root / "failed"
            failures.mkdir(exist_ok=True)
            helper = _Helper(
                [
                    sys.executable,
                    "-m",
                    "bench.listener",
                    "--ack",
                    ack,
                    "--manifest",
                    str(self._manifest_file),
                    "--records",
                    str(records),
                    "--failures",
                    str(failures),
                ],
                self.root / f"listener-{ack}.log",
            )
            self._listeners[ack] = (helper, records)
        helper, records = self._listeners[ack]
        return helper.port, records

    def proxy(self, port: int) -> int:
        """A latency proxy in front of 127.0.0.1:port."""
        if port not in self._proxies:
            self._proxies[port] = _Helper(
                [
                    sys.executable,
                    "-m",
                    "bench.proxy",
                    "--target",
                    f"127.0.0.1:{port}",
                    "--delay-ms",
                    str(self.delay_ms),
                ],
                self.root / "proxy.log",
            )
        return self._proxies[port].port

    def server_port(self, case: Case) -> int:
        d = self.dovecot
        if case.protocol == "pop3":
            port = d.pop3s_port if case.tls else d.pop3_port
        else:
            port = d.imaps_port if case.tls else d.imap_port
        return self.proxy(port) if case.slow else port

    def stop(self) -> None:
        for helper, _ in self._listeners.values():
            helper.stop()
        for proxy in self._proxies.values():
            proxy.stop()
        with contextlib.suppress(Exception):
            self.dovecot.stop()
