"""Running the IDLE supervisor in a thread, and a scripted fake IMAP server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import socketserver
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from retrieval.push.supervisor import Supervisor

WAIT = 30.0  # seconds: generous; the waits end on the event, not the clock


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {predicate}")
        time.sleep(0.05)


class Running:
    """A supervisor's loop in a thread; ``call`` reads its state on the loop."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        self._ready.set()
        await self.supervisor.run(self.stop)

    def call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            value = fn()
            if asyncio.iscoroutine(value):
                value = await value
            return value

        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(WAIT)

    def state(self, pk: int) -> str | None:
        w = self.call(lambda: self.supervisor.watches.get(pk))
        return None if w is None else w.state

    def rounds(self) -> int:
        return int(self.call(lambda: self.supervisor.rounds))

    def idling(self) -> set[int]:
        return set(self.call(self.supervisor.idling))

    def __enter__(self) -> Running:
        self._thread.start()
        assert self._ready.wait(WAIT)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.stop.set)
        self._thread.join(WAIT)
        assert not self._thread.is_alive()


class FakeImap:
    """A cleartext IMAP server on 127.0.0.1 that logs in anybody.

    ``idle``: offer IDLE. ``script(n)``: what to do once the n-th connection
    (from 1) is in IDLE: "drop" closes it, "exists" sends ``* 4 EXISTS``,
    "flood" a 70 kB line,
    anything else waits. Records every line received and the connections.
    """

    def __init__(
        self, *, idle: bool, script: Callable[[int], str] = lambda n: ""
    ) -> None:
        self.idle = idle
        self.script = script
        self.lines: list[bytes] = []
        self.connections = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                with outer.lock:
                    outer.connections += 1
                    number = outer.connections
                with contextlib.suppress(OSError):
                    outer._talk(self.rfile, self.wfile, number, self.connection)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def seen(self, text: bytes) -> int:
        with self.lock:
            return sum(1 for line in self.lines if text in line)

    def _talk(self, rfile: Any, wfile: Any, number: int, sock: socket.socket) -> None:
        caps = b"IMAP4rev1 AUTH=PLAIN" + (b" IDLE" if self.idle else b"")
        wfile.write(b"* OK [CAPABILITY " + caps + b"] fake ready\r\n")
        while True:
            line = rfile.readline(65536)
            if not line:
                return
            with self.lock:
                self.lines.append(line)
            tag, _, rest = line.strip().partition(b" ")
            command = rest.split(b" ")[0].upper()
            if command == b"AUTHENTICATE":
                wfile.write(b"+ \r\n")
                with self.lock:
                    self.lines.append(rfile.readline(65536))
                wfile.write(tag + b" OK [CAPABILITY " + caps + b"] logged in\r\n")
            elif command == b"CAPABILITY":
                wfile.write(b"* CAPABILITY " + caps + b"\r\n" + tag + b" OK done\r\n")
            elif command == b"EXAMINE":
                wfile.write(
                    b"* 3 EXISTS\r\n* 0 RECENT\r\n" + tag + b" OK [READ-ONLY] done\r\n"
                )
            elif command == b"IDLE":
                wfile.write(b"+ idling\r\n")
                action = self.script(number)
                if action == "drop":
                    wfile.flush()
                    sock.shutdown(socket.SHUT_RDWR)
                    return
                if action == "exists":
                    wfile.write(b"* 4 EXISTS\r\n")
                if action == "flood":  # a line past the client's bound
                    wfile.write(b"* OK " + b"x" * 70000 + b"\r\n")
                wfile.flush()
                done = rfile.readline(65536)
                if not done:
                    return
                with self.lock:
                    self.lines.append(done)
                wfile.write(tag + b" OK IDLE done\r\n")
            elif command == b"LOGOUT":
                wfile.write(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                return
            else:
                wfile.write(tag + b" BAD unknown\r\n")
            wfile.flush()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def fake_imap(**kwargs: Any) -> Iterator[FakeImap]:
    server = FakeImap(**kwargs)
    try:
        yield server
    finally:
        server.close()
