import asyncio
import socket
import subprocess
import sys
import threading

import pytest

from bench import proxy as proxy_module


@pytest.fixture
def echo_port():
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            conn, _ = server.accept()
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn):
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


@pytest.fixture
def proxy(echo_port):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.proxy",
            "--target",
            f"127.0.0.1:{echo_port}",
            "--delay-ms",
            "25",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    yield int(proc.stdout.readline().split()[1])
    proc.terminate()
    proc.wait()


def test_data_arrive_intact_both_ways(proxy):
    with socket.create_connection(("127.0.0.1", proxy)) as s:
        s.sendall(b"ping")
        assert s.recv(10) == b"ping"
        payload = bytes(range(256)) * 4096  # 1 MiB
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = bytearray()
        while data := s.recv(65536):
            got += data
    assert got == payload


class _Recorder(asyncio.Transport):
    """The peer's socket: what the proxy wrote to it, and when (loop time)."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__()
        self.clock = clock
        self.writes: list[tuple[float, bytes]] = []

    def write(self, data) -> None:
        self.writes.append((self.clock[0], bytes(data)))

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name, default=None):
        return default  # no socket to tune


def test_each_chunk_is_held_for_the_delay_and_passed_on_in_order():
    """The delay as the proxy schedules it, on a clock the test moves: one
    direction costs exactly ``--delay-ms`` (a round trip twice that), whatever
    the machine's speed."""

    async def scenario() -> list[tuple[float, bytes]]:
        loop = asyncio.get_running_loop()
        clock = [100.0]
        loop.time = lambda: clock[0]  # type: ignore[method-assign]
        # Times a binary fraction holds exactly: the sums compare equal.
        reader, peer = proxy_module._Half(0.25), proxy_module._Half(0.25)
        reader.connection_made(_Recorder(clock))
        peer.connection_made(received := _Recorder(clock))
        reader.attach(peer)
        reader.data_received(b"ping")
        clock[0] = 100.125
        reader.data_received(b"pong")
        for now in (100.2, 100.25, 100.3, 100.375):
            clock[0] = now
            reader._flush()  # what the loop's timer would run at that time
        if reader._timer is not None:
            reader._timer.cancel()
        return received.writes

    assert asyncio.run(scenario()) == [(100.25, b"ping"), (100.375, b"pong")]
