"""A real SMTP or LMTP listener on 127.0.0.1 (aiosmtpd), with scripted faults.

Every envelope whose data reached the final dot is captured as
:class:`Received`, with the bytes exactly as sent minus the dot-stuffing, and
the reply (SMTP) or replies (LMTP, one per recipient) the listener gave.

Faults are scripted per stage with :meth:`SmtpListener.fail_at`:

* ``"MAIL"``, ``"RCPT"``: reply with the given code to MAIL FROM / RCPT TO
  (optionally only for one recipient);
* ``"DATA"``: reply to the DATA command itself instead of 354;
* ``"DATA_END"``: reply after the final dot (LMTP: for every recipient, or for
  one when ``rcpt`` is given; the others get 250).

plus :meth:`~SmtpListener.drop_after_dot` (close the connection after the final
dot, before any reply) and :meth:`~SmtpListener.stall_after_dot` (never reply).
:meth:`~SmtpListener.hold_after` holds one message after its dot until the test
calls :meth:`~SmtpListener.release`: a poll stopped mid-way, deterministically.
Each fault applies to the next ``times`` matching events (all, by default).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from aiosmtpd.controller import Controller, UnixSocketController
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.ports import LOOPBACK, free_port

if TYPE_CHECKING:
    from pathlib import Path

Stage = Literal["MAIL", "RCPT", "DATA", "DATA_END"]
_STAGES: tuple[Stage, ...] = ("MAIL", "RCPT", "DATA", "DATA_END")
_DEFAULT_TEXT = {
    4: "4.3.0 Temporary failure (scripted by the test)",
    5: "5.7.1 Rejected (scripted by the test)",
}
# Large enough for any test message, small enough to catch a runaway sender.
DATA_SIZE_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class Received:
    """One envelope as the listener saw it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    """The message exactly as received, dot-stuffing removed, CRLF kept."""
    replies: tuple[str, ...]
    """What was answered after the dot: one line (SMTP), one per rcpt (LMTP);
    empty if the connection was dropped or stalled instead."""
    mail_options: list[str] = field(default_factory=list)
    rcpt_options: list[str] = field(default_factory=list)
    helo: str | None = None

    @property
    def accepted(self) -> bool:
        """Every reply after the dot was 2xx."""
        return bool(self.replies) and all(r.startswith("2") for r in self.replies)


@dataclass
class _Fault:
    stage: Stage | Literal["DROP", "STALL"]
    reply: str
    rcpt: str | None
    remaining: int | None  # None: every time


def _reply_text(reply: int | str) -> str:
    if isinstance(reply, int):
        return f"{reply} {_DEFAULT_TEXT.get(reply // 100, 'scripted reply')}"
    return reply


def _same_address(a: str | None, b: str) -> bool:
    return a is not None and a.strip("<>").lower() == b.strip("<>").lower()


class SmtpListener:
    """A threaded aiosmtpd server; see the module docstring for fault scripting.

    Use :meth:`start` and :meth:`stop`, or the ``smtp_listener`` /
    ``lmtp_listener`` fixtures.
    """

    host: str
    port: int
    """0 when listening on a unix socket."""
    unix_socket: Path | None
    lmtp: bool

    def __init__(self, *, lmtp: bool = False, unix_socket: Path | None = None) -> None:
        self.host = LOOPBACK
        self.port = 0
        self.unix_socket = unix_socket
        self.lmtp = lmtp
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._faults: list[_Fault] = []
        self._connections = 0
        self._probed = False
        self._hold_at = 0  # 1-based number of the message held after its dot
        self._holding = threading.Event()
        self._released = threading.Event()
        self._controller: Controller | UnixSocketController | None = None

    # -- lifecycle --------------------------------------------------------------

    @classmethod
    def start(
        cls, *, lmtp: bool = False, unix_socket: Path | None = None
    ) -> SmtpListener:
        """Listen on a free 127.0.0.1 port, or on ``unix_socket`` if given."""
        listener = cls(lmtp=lmtp, unix_socket=unix_socket)
        kwargs: dict[str, Any] = {
            "server_hostname": "listener.test",
            "decode_data": False,
            "data_size_limit": DATA_SIZE_LIMIT,
            "ready_timeout": 10.0,
        }
        if unix_socket is not None:
            controller: Controller | UnixSocketController = _UnixController(
                listener, unix_socket=str(unix_socket), **kwargs
            )
            controller.start()
        else:
            for attempt in range(3):
                port = free_port()
                controller = _InetController(
                    listener, hostname=LOOPBACK, port=port, **kwargs
                )
                try:
                    controller.start()
                except OSError:  # the port went to someone else meanwhile
                    if attempt == 2:
                        raise
                    continue
                listener.port = port
                break
        listener._controller = controller
        return listener

    def stop(self) -> None:
        self._released.set()
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    # -- what was received ------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        """Every envelope that reached the final dot, whatever was answered."""
        with self._lock:
            return list(self._received)

    @property
    def messages(self) -> list[Received]:
        """The envelopes the listener accepted (2xx after the dot, for every rcpt)."""
        return [r for r in self.received if r.accepted]

    @property
    def connections(self) -> int:
        """How many client connections were opened so far."""
        with self._lock:
            return self._connections

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until at least ``count`` envelopes were received; return them all."""
        deadline = time.monotonic() + timeout
        while len(received := self.received) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(received)} of {count} messages received")
            time.sleep(0.02)
        return received

    def clear(self) -> None:
        """Forget captures and faults (fixtures hand out a fresh listener anyway)."""
        with self._lock:
            self._received.clear()
            self._faults.clear()

    # -- scripting faults -------------------------------------------------------

    def fail_at(
        self,
        stage: Stage,
        reply: int | str,
        *,
        rcpt: str | None = None,
        times: int | None = None,
    ) -> None:
        """Answer ``reply`` at ``stage`` instead of accepting.

        Args:
            stage: "MAIL", "RCPT", "DATA" (the command) or "DATA_END" (after
                the final dot).
            reply: a code (451, 550...; a standard text is added) or a whole
                reply line such as ``"452 4.2.2 Mailbox full"``.
            rcpt: for "RCPT" and "DATA_END", only this recipient. With LMTP,
                "DATA_END" replies are per recipient; in SMTP mode "DATA_END"
                with ``rcpt`` fails the whole message if that rcpt is in it.
            times: apply to this many events, then accept again (None: always).
        """
        if stage not in _STAGES:
            raise ValueError(f"stage must be one of {_STAGES}, not {stage!r}")
        if rcpt is not None and stage not in ("RCPT", "DATA_END"):
            raise ValueError("rcpt only applies to RCPT and DATA_END")
        with self._lock:
            self._faults.append(_Fault(stage, _reply_text(reply), rcpt, times))

    def drop_after_dot(self, *, times: int | None = None) -> None:
        """Close the connection after the final dot, before replying."""
        with self._lock:
            self._faults.append(_Fault("DROP", "", None, times))

    def stall_after_dot(self, *, times: int | None = None) -> None:
        """Never reply after the final dot (the client must time out)."""
        with self._lock:
            self._faults.append(_Fault("STALL", "", None, times))

    def hold_after(self, count: int) -> None:
        """Hold the message after the first ``count`` (no reply after its final
        dot) until :meth:`release`: a poll that stops mid-way, for as long as a
        test looks at it."""
        self._hold_at = count + 1
        self._holding.clear()
        self._released.clear()

    def wait_held(self, timeout: float = 10.0) -> None:
        """Wait until the listener holds the message named by :meth:`hold_after`."""
        if not self._holding.wait(timeout):
            raise TimeoutError(f"no message {self._hold_at} to hold came")

    def release(self) -> None:
        """Let the held message (and every later one) through."""
        self._released.set()

    def _take(self, stage: str, rcpt: str | None = None) -> str | None:
        """The scripted reply for this event, consuming one use of the fault."""
        with self._lock:
            for fault in self._faults:
                if fault.stage != stage or fault.remaining == 0:
                    continue
                if fault.rcpt is not None and not _same_address(rcpt, fault.rcpt):
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault.reply
        return None

    # -- called from the server thread -----------------------------------------

    def _connected(self) -> None:
        with self._lock:
            # The first connection is the controller's own readiness probe.
            if not self._probed:
                self._probed = True
                return
            self._connections += 1

    def _record(
        self, session: Session, envelope: Envelope, replies: tuple[str, ...]
    ) -> None:
        data = envelope.original_content or b""
        with self._lock:
            self._received.append(
                Received(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=list(envelope.rcpt_tos),
                    data=data,
                    replies=replies,
                    mail_options=list(envelope.mail_options),
                    rcpt_options=list(envelope.rcpt_options),
                    helo=session.host_name,
                )
            )


class _Handler:
    """aiosmtpd handler hooks that consult the listener's script."""

    def __init__(self, listener: SmtpListener) -> None:
        self.listener = listener

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if reply := self.listener._take("MAIL"):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if reply := self.listener._take("RCPT", address):
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        listener = self.listener
        if listener._hold_at and len(listener.received) + 1 == listener._hold_at:
            listener._holding.set()
            while not listener._released.is_set():
                await asyncio.sleep(0.01)
        if listener._take("DROP") is not None:
            listener._record(session, envelope, ())
            transport = server.transport
            assert isinstance(transport, asyncio.Transport)
            transport.abort()
            return "421 4.4.2 dropped"  # never reaches the client: it is gone
        if listener._take("STALL") is not None:
            listener._record(session, envelope, ())
            # Until the client gives up or the listener stops (cancelling us).
            await asyncio.Event().wait()
        if listener.lmtp:
            replies = tuple(
                listener._take("DATA_END", rcpt) or "250 2.0.0 OK delivered"
                for rcpt in envelope.rcpt_tos
            )
        else:
            reply = None
            for rcpt in envelope.rcpt_tos:
                reply = reply or listener._take("DATA_END", rcpt)
            replies = (reply or "250 2.0.0 OK queued",)
        listener._record(session, envelope, replies)
        # aiosmtpd sends this string followed by CRLF: LMTP's per-recipient
        # replies go out as consecutive lines.
        return "\r\n".join(replies)


class _ScriptedMixin:
    """Makes DATA itself refusable, and counts connections."""

    listener: SmtpListener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.listener._connected()
        super().connection_made(transport)  # type: ignore[misc]

    async def smtp_DATA(self, arg: str) -> None:
        envelope = self.envelope  # type: ignore[attr-defined]
        # Only a DATA that would otherwise get 354: keep aiosmtpd's 503/501 checks.
        if envelope.rcpt_tos and not arg:
            reply = self.listener._take("DATA")
            if reply is not None:
                await self.push(reply)  # type: ignore[attr-defined]
                return
        await super().smtp_DATA(arg)  # type: ignore[misc]


class _ScriptedSMTP(_ScriptedMixin, SMTP):
    pass


class _ScriptedLMTP(_ScriptedMixin, LMTP):
    pass


def _factory(controller: Any, listener: SmtpListener) -> SMTP:
    cls = _ScriptedLMTP if listener.lmtp else _ScriptedSMTP
    server = cls(controller.handler, **controller.SMTP_kwargs)
    server.listener = listener
    return server


class _InetController(Controller):
    def __init__(self, listener: SmtpListener, **kwargs: Any) -> None:
        self._listener = listener
        super().__init__(_Handler(listener), **kwargs)

    def factory(self) -> SMTP:
        return _factory(self, self._listener)


class _UnixController(UnixSocketController):
    def __init__(self, listener: SmtpListener, **kwargs: Any) -> None:
        self._listener = listener
        super().__init__(_Handler(listener), **kwargs)

    def factory(self) -> SMTP:
        return _factory(self, self._listener)
