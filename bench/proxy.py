"""A TCP proxy that adds a fixed one-way delay: a slow link on loopback.

Every chunk read from one side is written to the other ``--delay-ms`` later, in
order, so a round trip costs twice the delay and bandwidth is not limited. The
proxy itself must not add stalls of its own: it sets TCP_NODELAY and re-arms
TCP_QUICKACK after every read, so only the configured latency shows.

Run as a process: ``python -m bench.proxy --target 127.0.0.1:PORT --delay-ms 10``;
it prints ``READY <port>`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import socket
import sys
from typing import Any


def _tune(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


class _Half(asyncio.Protocol):
    """Reads one socket; what it reads goes to ``peer`` after the delay."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.peer: _Half | None = None
        self.transport: asyncio.Transport | None = None
        self._queue: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._pending: list[bytes | None] = []  # read before the peer existed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        _tune(transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        _tune(self.transport)
        self._push(data)

    def eof_received(self) -> bool:
        self._push(None)
        return True  # keep our writing side open until the peer's EOF arrives

    def connection_lost(self, exc: Exception | None) -> None:
        self._push(None)

    def _push(self, data: bytes | None) -> None:
        loop = asyncio.get_running_loop()
        self._queue.append((loop.time() + self.delay, data))
        if self._timer is None:
            self._timer = loop.call_at(self._queue[0][0], self._flush)

    def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = None
        while self._queue and self._queue[0][0] <= loop.time():
            _, data = self._queue.popleft()
            self._deliver(data)
        if self._queue:
            self._timer = loop.call_at(self._queue[0][0], self._flush)

    def _deliver(self, data: bytes | None) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self._pending.append(data)
            return
        if peer.transport.is_closing():
            return
        if data is None:
            if peer.transport.can_write_eof():
                peer.transport.write_eof()
            else:
                peer.transport.close()
            if self.transport is not None and self.transport.is_closing():
                peer.transport.close()
        else:
            peer.transport.write(data)

    def attach(self, peer: _Half) -> None:
        self.peer = peer
        for data in self._pending:
            self._deliver(data)
        self._pending.clear()


async def _serve(listen_port: int, target: tuple[str, int], delay: float) -> None:
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def accept() -> _Half:
        client = _Half(delay)

        async def connect() -> None:
            try:
                _, upstream = await loop.create_connection(
                    lambda: _Half(delay), *target
                )
            except OSError:
                if client.transport is not None:
                    client.transport.close()
                return
            upstream.attach(client)
            client.attach(upstream)

        tasks.add(task := loop.create_task(connect()))
        task.add_done_callback(tasks.discard)  # keep a reference until it is done
        return client

    server = await loop.create_server(accept, "127.0.0.1", listen_port)
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.proxy", description=__doc__)
    ap.add_argument("--target", required=True, help="HOST:PORT")
    ap.add_argument("--delay-ms", type=float, default=10.0, help="one-way delay")
    ap.add_argument("--port", type=int, default=0)
    args: Any = ap.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, (host, int(port)), args.delay_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
