"""The benchmark's SMTP/LMTP listener: accepts everything, checks and counts it.

Written on plain sockets, one thread per connection, so the benchmark controls
the one thing that decides how a line-by-line client fares: acknowledgements.

* ``--ack quick``: TCP_NODELAY on, and TCP_QUICKACK set again after every
  ``recv`` (Linux drops back to delayed ACKs on its own, so once is not enough).
  A client that writes small segments with Nagle's algorithm on never waits.
* ``--ack delayed``: a plain socket, the kernel's ordinary delayed ACKs, as most
  real MTAs have. A client that writes a line, then another, with Nagle on,
  waits up to 40 ms for the ACK of the first before the second may leave.

Each message is checked against the manifest (see :mod:`bench.verify`) and one
JSON line per message is appended to the records file *before* the final reply,
so when a client has exited every message it saw accepted is on disk. The
harness truncates the file between runs (the fd is O_APPEND, so writes then land
at the new end).

Run as a process: ``python -m bench.listener --ack quick --manifest M --records R``;
it prints ``READY <port>`` once it listens.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import threading
import time
from itertools import count
from pathlib import Path

from bench.verify import Manifest, check

MAX_LINE = 4096
CHUNK = 1 << 18
_MAX_KEPT_FAILURES = 20


class Listener:
    def __init__(
        self,
        *,
        lmtp: bool,
        quickack: bool,
        manifest: Manifest,
        records: Path,
        failures: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.lmtp = lmtp
        self.quickack = quickack
        self.manifest = manifest
        self.failures = failures
        self._records = os.open(records, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._kept = count()
        self._ids = count(1)
        self.sock = socket.create_server((host, port), backlog=256)
        self.port: int = self.sock.getsockname()[1]

    def serve_forever(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        # a client that hangs up mid-way is its own problem
        with conn, contextlib.suppress(OSError):
            _Session(self, conn).run()

    def record(self, raw: bytes | bytearray, rcpts: int) -> None:
        verdict = check(raw, self.manifest)
        row = {
            "t": time.time(),
            "mid": verdict.mid,
            "ok": verdict.ok,
            "size": len(raw),
            "rcpts": rcpts,
        }
        if verdict.why:
            row["why"] = verdict.why
        if not verdict.ok:
            n = next(self._kept)
            if self.failures is not None and n < _MAX_KEPT_FAILURES:
                (self.failures / f"failed-{os.getpid()}-{n}.eml").write_bytes(raw)
        os.write(self._records, (json.dumps(row) + "\n").encode())

    def next_id(self) -> int:
        return next(self._ids)


class _Session:
    """One SMTP or LMTP conversation. Replies are collected and sent just before
    the next read, so a pipelining client gets its replies in one segment."""

    def __init__(self, server: Listener, conn: socket.socket) -> None:
        self.server = server
        self.conn = conn
        self.buf = bytearray()
        self.out = bytearray()
        self.rcpts: list[bytes] = []
        self.mail = False
        if server.quickack:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._quickack()

    def _quickack(self) -> None:
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    def _recv(self) -> bytes:
        if self.out:
            self.conn.sendall(self.out)
            self.out.clear()
        data = self.conn.recv(CHUNK)
        if self.server.quickack:
            self._quickack()
        return data

    def _line(self) -> bytes | None:
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                line = bytes(self.buf[:end]).rstrip(b"\r")
                del self.buf[: end + 1]
                return line
            if len(self.buf) > MAX_LINE:
                return None
            data = self._recv()
            if not data:
                return None
            self.buf += data

    def reply(self, text: str) -> None:
        self.out += text.encode() + b"\r\n"

    def run(self) -> None:
        name = "LMTP" if self.server.lmtp else "ESMTP"
        self.reply(f"220 bench.example.org {name} benchmark listener")
        while (line := self._line()) is not None:
            verb, _, arg = line.partition(b" ")
            verb = verb.upper()
            if verb in (b"EHLO", b"LHLO", b"HELO"):
                self._hello(verb)
            elif verb == b"MAIL":
                self.mail, self.rcpts = True, []
                self.reply("250 2.1.0 Ok")
            elif verb == b"RCPT":
                if not self.mail:
                    self.reply("503 5.5.1 MAIL first")
                    continue
                self.rcpts.append(arg)
                self.reply("250 2.1.5 Ok")
            elif verb == b"DATA":
                if not self.rcpts:
                    self.reply("503 5.5.1 RCPT first")
                    continue
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                if not self._data():
                    return
            elif verb == b"RSET":
                self.mail, self.rcpts = False, []
                self.reply("250 2.0.0 Ok")
            elif verb == b"NOOP":
                self.reply("250 2.0.0 Ok")
            elif verb == b"QUIT":
                self.reply("221 2.0.0 Bye")
                self.conn.sendall(self.out)
                return
            else:
                self.reply("502 5.5.2 Command not implemented")
        if self.out:
            self.conn.sendall(self.out)

    def _hello(self, verb: bytes) -> None:
        if verb == b"HELO":
            self.reply("250 bench.example.org")
            return
        self.reply("250-bench.example.org")
        self.reply("250-PIPELINING")
        self.reply("250-8BITMIME")
        self.reply("250-SIZE")
        self.reply("250 ENHANCEDSTATUSCODES")

    def _data(self) -> bool:
        """Read up to the lone dot, unstuff, check, record, reply. Scans only new
        bytes for the terminator, so a 200 MB message costs one pass."""
        # A leading CRLF makes "end of data right after DATA" and "line starting
        # with a dot on the first line" ordinary cases of the CRLF patterns.
        data = bytearray(b"\r\n")
        data += self.buf
        self.buf.clear()
        scan = 0
        while (end := data.find(b"\r\n.\r\n", scan)) < 0:
            scan = max(0, len(data) - 4)
            chunk = self._recv()
            if not chunk:
                return False
            data += chunk
        self.buf += data[end + 5 :]
        del data[end + 2 :]
        raw = data.replace(b"\r\n..", b"\r\n.")
        del data  # a 200 MB message: keep at most two copies alive
        del raw[:2]
        self.server.record(raw, len(self.rcpts))
        queued = self.server.next_id()
        # LMTP answers once per recipient, SMTP once per message
        for _ in range(len(self.rcpts) if self.server.lmtp else 1):
            self.reply(f"250 2.0.0 Ok: queued as B{queued}")
        self.mail, self.rcpts = False, []
        return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.listener", description=__doc__)
    ap.add_argument("--protocol", choices=("smtp", "lmtp"), default="smtp")
    ap.add_argument("--ack", choices=("quick", "delayed"), default="quick")
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--records", type=Path, required=True)
    ap.add_argument("--failures", type=Path, help="keep up to 20 failed messages here")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    server = Listener(
        lmtp=args.protocol == "lmtp",
        quickack=args.ack == "quick",
        manifest=Manifest.load(args.manifest),
        records=args.records,
        failures=args.failures,
        port=args.port,
    )
    print(f"READY {server.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
