"""A TCP proxy on loopback that cuts or stalls its connections at a chosen byte.

It stands between the engine and a real server (Dovecot, or the SMTP listener)
and watches one direction of the traffic for a marker, counting across every
connection it ever carried: at every ``every``-th occurrence it forwards the
bytes before the marker (``before``) or up to the end of the marker
(``after``) and then resets every open connection (``cut``) or stops
forwarding on this one, holding it open (``stall``), so that the engine's
timeout has to end it.

Markers used by the tests:

* ``b"Message-ID: <"`` from the server: the connection dies after N messages,
  in the middle of a listing, a fetch or a pipelined batch;
* ``b"\\r\\n.\\r\\n"`` to the listener, with ``after``: the listener has the
  whole message but its reply (the 250) never reaches the engine. ``lost``
  lists the Message-IDs whose reply was lost that way.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import threading
from dataclasses import dataclass, field
from typing import Literal

Action = Literal["cut", "stall"]
_MESSAGE_ID = re.compile(rb"Message-ID: <([^>\r\n]*)>", re.IGNORECASE)


@dataclass
class Trigger:
    marker: bytes
    every: int
    action: Action = "cut"
    from_server: bool = True  # watch what the server sends (else what it receives)
    after: bool = False  # act after forwarding the marker (else before it)
    fired: int = 0
    seen: int = 0
    lost: list[str] = field(default_factory=list)


class CuttingProxy:
    """Forward 127.0.0.1:``port`` to 127.0.0.1:``target``; see the module docstring."""

    def __init__(self, target: int, trigger: Trigger | None = None) -> None:
        self.target = target
        self.trigger = trigger
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._open: list[tuple[socket.socket, socket.socket]] = []
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self._listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._open.append((client, upstream))
            threading.Thread(
                target=self._pump, args=(client, upstream), daemon=True
            ).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        # The last bytes of each direction, so a marker split between two reads
        # is still seen once.
        tails = {id(client): b"", id(server): b""}
        last_ids = {id(client): "?", id(server): "?"}
        with contextlib.suppress(OSError, ValueError):
            while not self._stop.is_set():
                ready, _, _ = select.select([client, server], [], [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        self._close(client, server)
                        return
                    other = server if sock is client else client
                    key = id(sock)
                    forwarded = self._forward(
                        sock is server, data, other, tails[key], last_ids[key]
                    )
                    ids = _MESSAGE_ID.findall(tails[key] + data)
                    tails[key] = (tails[key] + data)[-256:]
                    if ids:
                        last_ids[key] = ids[-1].decode("latin-1")
                    if not forwarded:
                        self._act(client, server)
                        return

    def _forward(
        self,
        from_server: bool,
        data: bytes,
        other: socket.socket,
        tail: bytes,
        last_id: str,
    ) -> bool:
        """Send ``data`` on; False when the trigger fired (the rest is dropped)."""
        trigger = self.trigger
        if trigger is None or trigger.from_server != from_server:
            other.sendall(data)
            return True
        window = tail + data
        start = 0
        while (found := window.find(trigger.marker, start)) >= 0:
            start = found + len(trigger.marker)
            if found + len(trigger.marker) <= len(tail):
                continue  # counted with the previous read
            with self._lock:
                trigger.seen += 1
                fire = trigger.seen % trigger.every == 0
                if fire:
                    trigger.fired += 1
            if not fire:
                continue
            end = start if trigger.after else found
            if trigger.after:
                ids = _MESSAGE_ID.findall(window[:end])
                with self._lock:
                    trigger.lost.append(ids[-1].decode("latin-1") if ids else last_id)
            other.sendall(window[len(tail) : max(end, len(tail))])
            return False
        other.sendall(data)
        return True

    def _act(self, client: socket.socket, server: socket.socket) -> None:
        assert self.trigger is not None
        if self.trigger.action == "stall":
            with self._lock:
                self._held.extend((client, server))
            return
        self.cut()

    def _close(self, *socks: socket.socket) -> None:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()

    def cut(self) -> None:
        """Reset every open connection, as a dying network would."""
        with self._lock:
            pairs, self._open = self._open, []
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
        with self._lock:
            held, self._held = self._held, []
        self._close(*held)
