import socket
import subprocess
import sys
import threading
import time

import pytest


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


def test_a_round_trip_costs_twice_the_delay_and_data_arrive_intact(proxy):
    with socket.create_connection(("127.0.0.1", proxy)) as s:
        began = time.monotonic()
        s.sendall(b"ping")
        assert s.recv(10) == b"ping"
        assert time.monotonic() - began >= 0.045  # 2 x 25 ms, never less
        payload = bytes(range(256)) * 4096  # 1 MiB
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = bytearray()
        while data := s.recv(65536):
            got += data
    assert got == payload
