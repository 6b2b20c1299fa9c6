"""TCP and TLS connections with a deadline on every wait and a bound on every line.

All protocol sessions (POP3, IMAP, SMTP, LMTP) sit on :class:`Connection`. It owns
the receive buffer, so that nothing a server sends can be read unbounded, and it
writes each command and each reply line to the transcript (bodies are not written).
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from typing import TYPE_CHECKING

from retrieval.engine.errors import (
    CertificateError,
    ConfigError,
    DnsError,
    EngineError,
    HostUnknown,
    ProtocolError,
    TimeoutFault,
    TlsError,
    TransportError,
)
from retrieval.engine.ports import keeps_lines
from retrieval.engine.wire.netaddrs import is_public_address
from retrieval.engine.wire.tls import describe_ssl_error

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from retrieval.engine.ports import Transcript

RECV_SIZE = 64 * 1024
# POP3 and SMTP reply lines (poplib's _MAXLINE); IMAP raises it per call.
DEFAULT_MAX_LINE = 2048
# The slowest a server may send a response or a message once it has started:
# a 100 MB message at this rate takes under three hours, and a server sending
# one byte every few seconds is cut off after about one timeout.
MIN_RATE = 10 * 1024  # bytes per second


NOT_PUBLIC = (
    "This server address is not allowed: use a public mail server on a mail port."
)


class Budget:
    """The time one whole response or message may take: a :class:`Connection`
    read given a budget waits no longer than ``timeout + received / MIN_RATE``
    after the budget began.

    The timeout alone bounds each wait, so a server trickling a byte just
    inside it would never be cut off; the budget bounds the sum. It grows with
    what arrived, not with a declared size a server could inflate, so a large
    message is given time in proportion to the bytes it really delivers.
    """

    def __init__(self, timeout: float, min_rate: float = MIN_RATE) -> None:
        self.started = time.monotonic()
        self.timeout = timeout
        self.min_rate = min_rate
        self.received = 0

    def deadline(self) -> float:
        return self.started + self.timeout + self.received / self.min_rate

    def allowed(self) -> float:
        return self.deadline() - self.started


class Connection:
    """A socket plus a bounded receive buffer; every wait ends by ``timeout``.

    ``peer`` is a label used in messages ("mail.example.org:995"). ``side`` names
    the far end for error messages ("the mail server", "the local mail listener").
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        timeout: float,
        transcript: Transcript,
        peer: str,
        side: str = "the mail server",
        error: type[EngineError] = TransportError,
    ) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self._timeout = timeout
        self._transcript = transcript
        self._kept_all = False  # the transcript said it keeps nothing more
        self._error = error
        self.peer = peer
        self.side = side
        self.closed = False

    # -- construction -------------------------------------------------------

    @classmethod
    def open_tcp(
        cls,
        host: str,
        port: int,
        *,
        timeout: float,
        transcript: Transcript,
        side: str = "the mail server",
        error: type[EngineError] = TransportError,
        public_only: bool = False,
    ) -> Connection:
        """Resolve and connect, trying each address until one answers.

        With ``public_only``, every resolved address must be globally routable;
        otherwise nothing is connected to at all.
        """
        label = f"{host}:{port}"
        try:
            addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            unknown = HostUnknown if _name_does_not_exist(exc) else DnsError
            raise unknown(f"The name {host} could not be resolved ({exc}).") from exc
        except (OSError, OverflowError, ValueError) as exc:
            raise ConfigError(f"The address {label} cannot be used: {exc}.") from exc
        if public_only and not all(is_public_address(a[4][0]) for a in addresses):
            raise ConfigError(NOT_PUBLIC)
        deadline = time.monotonic() + timeout
        last: OSError | None = None
        for family, kind, proto, _name, address in addresses:
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                sock.connect(address)
                # Commands are small writes awaiting a reply: Nagle plus delayed
                # ACKs would add tens of milliseconds to each round trip.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as exc:
                sock.close()
                last = exc
                continue
            transcript.record("*", f"connected to {label} ({address[0]})")
            return cls(
                sock,
                timeout=timeout,
                transcript=transcript,
                peer=label,
                side=side,
                error=error,
            )
        if isinstance(last, TimeoutError):
            raise error(
                f"Connecting to {side} at {label} timed out after {timeout:g} seconds."
            )
        reason = _reason(last) if last else "no address"
        raise error(f"Could not connect to {side} at {label}: {reason}.")

    @classmethod
    def open_unix(
        cls,
        path: str,
        *,
        timeout: float,
        transcript: Transcript,
        side: str,
        error: type[EngineError] = TransportError,
    ) -> Connection:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise error(
                f"Could not connect to {side} at {path}: {_reason(exc)}."
            ) from exc
        transcript.record("*", f"connected to {path}")
        return cls(
            sock,
            timeout=timeout,
            transcript=transcript,
            peer=path,
            side=side,
            error=error,
        )

    def start_tls(self, context: ssl.SSLContext, server_name: str) -> None:
        """Wrap the socket in TLS, verifying ``server_name``; used for both modes.

        Bytes already buffered when a STARTTLS upgrade begins were sent in
        cleartext after the server's go-ahead and could be an injected reply
        (the "NO STARTTLS" attacks): refuse them instead of reading them as if
        they had come over TLS.
        """
        if self._buffer:
            raise TlsError(
                f"{self.side.capitalize()} sent unexpected data before the secure "
                "connection started; the connection was closed."
            )
        self._sock.settimeout(self._timeout)
        try:
            self._sock = context.wrap_socket(self._sock, server_hostname=server_name)
        except ssl.SSLCertVerificationError as exc:
            raise CertificateError(describe_ssl_error(exc)) from exc
        except ssl.SSLError as exc:
            raise TlsError(describe_ssl_error(exc)) from exc
        except TimeoutError as exc:
            raise TlsError(
                f"The secure (TLS) handshake with {self.side} timed out after "
                f"{self._timeout:g} seconds."
            ) from exc
        except OSError as exc:
            raise TlsError(
                f"The secure (TLS) connection to {self.side} failed: {_reason(exc)}."
            ) from exc
        assert isinstance(self._sock, ssl.SSLSocket)
        self._transcript.record(
            "*", f"TLS established: {self._sock.version()} {self._cipher_name()}"
        )

    def _cipher_name(self) -> str:
        if isinstance(self._sock, ssl.SSLSocket):
            cipher = self._sock.cipher()
            if cipher:
                return cipher[0]
        return ""

    def peer_certificate(self) -> bytes | None:
        if isinstance(self._sock, ssl.SSLSocket):
            return self._sock.getpeercert(binary_form=True)
        return None

    def peer_address(self) -> str:
        try:
            address = self._sock.getpeername()
        except OSError:
            return ""
        return str(address[0]) if isinstance(address, tuple) else str(address)

    @property
    def is_tls(self) -> bool:
        return isinstance(self._sock, ssl.SSLSocket)

    # -- writing ------------------------------------------------------------

    def send_line(self, line: str | bytes, *, shown: str | None = None) -> None:
        """Send one command line (CRLF added); the transcript gets ``shown`` if set."""
        self.send_lines([(line, shown)])

    def send_lines(
        self, lines: Sequence[tuple[str | bytes, str | None]], *, before: bytes = b""
    ) -> None:
        """Send command lines in one write (pipelining), each recorded as sent;
        ``before`` goes first in the same write, untranscribed (a body's end)."""
        if not lines:
            self.send_raw(before)
            return
        data = bytearray(before)
        for line, shown in lines:
            encoded = line.encode() if isinstance(line, str) else line
            if b"\r" in encoded or b"\n" in encoded or b"\0" in encoded:
                # Protocol arguments must never carry a line break (catalogue 18/43).
                raise ValueError("a protocol line must not contain CR, LF or NUL")
            if self._keeps:
                text = (
                    shown if shown is not None else encoded.decode("utf-8", "replace")
                )
                self._transcript.record("C", text)
            data += encoded + b"\r\n"
        self.send_raw(bytes(data))

    def send_raw(self, data: bytes) -> None:
        """Send bytes without transcribing them (message bodies, literals)."""
        self._sock.settimeout(self._timeout)
        try:
            self._sock.sendall(data)
        except TimeoutError as exc:
            raise self._timeout_error("sending") from exc
        except OSError as exc:
            raise self._error(
                f"The connection to {self.side} failed while sending: {_reason(exc)}."
            ) from exc

    # -- reading ------------------------------------------------------------

    def budget(self) -> Budget:
        """A budget for one response or message read from now on."""
        return Budget(self._timeout)

    def readline(
        self,
        max_line: int = DEFAULT_MAX_LINE,
        *,
        record: bool = True,
        budget: Budget | None = None,
    ) -> bytes:
        """One line including its LF; more than ``max_line`` bytes is a fault.

        The whole line must arrive within one timeout: a server trickling a byte
        every few seconds cannot keep us waiting forever. A line of a longer
        response also counts against that response's ``budget``.
        """
        deadline = self._deadline(budget)
        scanned = 0
        while True:
            end = self._buffer.find(b"\n", scanned)
            if end >= 0:
                if end + 1 > max_line:
                    break
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                if budget is not None:
                    budget.received += len(line)
                if record and self._keeps:
                    self._transcript.record("S", _show(line))
                return line
            if len(self._buffer) > max_line:
                break
            scanned = len(self._buffer)
            self._fill(deadline, budget)
        raise ProtocolError(
            f"{self.side.capitalize()} sent a line longer than {max_line} bytes; "
            "the connection was closed."
        )

    def read_fragment(self, max_bytes: int, *, budget: Budget | None = None) -> bytes:
        """Up to ``max_bytes`` bytes ending at the first LF: for long body lines.

        A result without a final LF means the line continues in the next fragment.
        """
        deadline = self._deadline(budget)
        while True:
            end = self._buffer.find(b"\n", 0, max_bytes)
            if end >= 0:
                cut = end + 1
                break
            if len(self._buffer) >= max_bytes:
                cut = max_bytes
                break
            self._fill(deadline, budget)
        data = bytes(self._buffer[:cut])
        del self._buffer[:cut]
        if budget is not None:
            budget.received += len(data)
        return data

    def read_exact(
        self, size: int, chunk: int = RECV_SIZE, *, budget: Budget | None = None
    ) -> Iterator[bytes]:
        """Yield exactly ``size`` bytes in pieces of at most ``chunk``."""
        remaining = size
        while remaining > 0:
            if self._buffer:
                take = min(remaining, chunk, len(self._buffer))
                data = bytes(self._buffer[:take])
                del self._buffer[:take]
            else:
                # Straight from the socket: no trip through the buffer.
                data = self._recv_bulk(self._deadline(budget), budget)
                take = min(remaining, chunk)
                if len(data) > take:
                    self._buffer += data[take:]
                    data = data[:take]
            remaining -= len(data)
            if budget is not None:
                budget.received += len(data)
            yield data

    def read_chunk(self, *, budget: Budget | None = None) -> bytes:
        """Whatever has arrived (waiting up to the timeout for something).

        For a reader that finds its own end in the stream, such as a POP3 body;
        it hands back what lies beyond that end with :meth:`unread`.
        """
        if not self._buffer:
            data = self._recv_bulk(self._deadline(budget), budget)
        else:
            data = bytes(self._buffer)
            self._buffer.clear()
        if budget is not None:
            budget.received += len(data)
        return data

    def unread(self, data: bytes, *, budget: Budget | None = None) -> None:
        """Put ``data`` back in front of what is buffered (and off ``budget``)."""
        if data:
            self._buffer[:0] = data
            if budget is not None:
                budget.received -= len(data)

    def _deadline(self, budget: Budget | None) -> float:
        deadline = time.monotonic() + self._timeout
        return deadline if budget is None else min(deadline, budget.deadline())

    def wait_for_data(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for bytes from the far end (an IMAP IDLE wait).

        True once data is buffered; False after silence. Only application data
        counts: a TLS record without any (a session ticket) is consumed quietly.
        """
        if self._buffer:
            return True
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            remaining = deadline - time.monotonic()
            pending = isinstance(self._sock, ssl.SSLSocket) and self._sock.pending()
            if not pending:
                try:
                    ready, _, _ = select.select([self._sock], [], [], max(0, remaining))
                except (OSError, ValueError) as exc:
                    raise self._error(
                        f"The connection to {self.side} failed while waiting."
                    ) from exc
                if not ready:
                    return False
            if self._fill_nowait():
                return True
            if remaining <= 0:
                return False

    def _fill_nowait(self) -> bool:
        """Read what is there without blocking; True when data arrived."""
        self._sock.settimeout(0)
        try:
            data = self._recv_nowait(RECV_SIZE)
        finally:
            self._sock.settimeout(self._timeout)
        if data is None:
            return False
        self._buffer += data
        return True

    def _recv_nowait(self, size: int) -> bytes | None:
        """One read on a non-blocking socket; None when nothing is ready."""
        try:
            data = self._sock.recv(size)
        except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            raise self._read_error(exc) from exc
        return self._received(data)

    def _recv_bulk(self, deadline: float, budget: Budget | None = None) -> bytes:
        """One read, then, over TLS, the records that have already arrived.

        A TLS read returns one record (servers often send 4-16 KB ones); taking
        the waiting ones in the same call spares the body readers a trip each.
        """
        data = self._recv(deadline, budget)
        if len(data) >= RECV_SIZE or not isinstance(self._sock, ssl.SSLSocket):
            return data
        pieces = [data]
        size = len(data)
        self._sock.settimeout(0)
        try:
            while size < RECV_SIZE:
                try:
                    more = self._recv_nowait(RECV_SIZE - size)
                except EngineError:
                    break  # the next read meets it again, after these bytes
                if more is None:
                    break
                pieces.append(more)
                size += len(more)
        finally:
            self._sock.settimeout(self._timeout)
        return b"".join(pieces)

    def _fill(self, deadline: float, budget: Budget | None = None) -> None:
        self._buffer += self._recv(deadline, budget)

    def _recv(self, deadline: float, budget: Budget | None = None) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._slow_error(budget)
        self._sock.settimeout(remaining)
        try:
            data = self._sock.recv(RECV_SIZE)
        except TimeoutError as exc:
            raise self._slow_error(budget) from exc
        except OSError as exc:
            raise self._read_error(exc) from exc
        return self._received(data)

    def _read_error(self, exc: OSError) -> EngineError:
        """A read that failed: the TLS layer's reason, or the socket's."""
        if isinstance(exc, ssl.SSLError):
            return self._error(
                f"The secure connection to {self.side} failed: {exc.reason or exc}."
            )
        return self._error(f"The connection to {self.side} failed: {_reason(exc)}.")

    def _received(self, data: bytes) -> bytes:
        """What one read returned; nothing at all means the peer has closed."""
        if not data:
            raise self._error(f"{self.side.capitalize()} closed the connection.")
        return data

    def _slow_error(self, budget: Budget | None) -> EngineError:
        """A wait that ended: the per-wait timeout, or the whole answer's budget."""
        if budget is None or budget.deadline() > time.monotonic() + 0.001:
            return self._timeout_error("waiting for an answer")
        error: type[EngineError] = (
            TimeoutFault if self._error is TransportError else self._error
        )
        return error(
            f"{self.side.capitalize()} sent its answer too slowly: it did not all "
            f"arrive within {budget.allowed():.1f} seconds (the timeout, plus one "
            f"second for every {budget.min_rate:g} bytes received)."
        )

    def _timeout_error(self, doing: str) -> EngineError:
        error: type[EngineError] = (
            TimeoutFault if self._error is TransportError else self._error
        )
        return error(
            f"{self.side.capitalize()} did not answer within {self._timeout:g} "
            f"seconds ({doing})."
        )

    def transcribe(self, line: bytes) -> None:
        """Record a received line that was read with ``record=False``."""
        if self._keeps:
            self._transcript.record("S", _show(line))

    def note(self, text: str) -> None:
        self._transcript.record("*", text)

    def rebind(self, transcript: Transcript) -> None:
        """Record into ``transcript`` from now on: a kept session's next poll."""
        self._transcript = transcript
        self._kept_all = False

    @property
    def keeps_transcript(self) -> bool:
        """False when nothing recorded here is kept: notes need not be written."""
        return self._keeps

    @property
    def _keeps(self) -> bool:
        # Without -v the command line keeps no transcript, and the service's
        # stops keeping once full: no line is decoded or formatted for it then
        # (most of a message's lines are transcript lines). Asked line by line
        # until it says no, which it never takes back.
        if self._kept_all:
            return False
        if keeps_lines(self._transcript):
            return True
        self._kept_all = True
        return False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            self._sock.close()


def _show(line: bytes) -> str:
    return line.rstrip(b"\r\n").decode("utf-8", "replace")


def _reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    return exc.strerror or str(exc) or type(exc).__name__


# getaddrinfo's answers that say the name itself is wrong, not the resolver.
_NO_SUCH_NAME = frozenset(
    code
    for code in (
        getattr(socket, "EAI_NONAME", None),
        getattr(socket, "EAI_NODATA", None),
        getattr(socket, "EAI_ADDRFAMILY", None),
    )
    if code is not None
)


def _name_does_not_exist(exc: Exception) -> bool:
    """True for "no such host" (or a name no DNS can hold): asking again won't help."""
    if isinstance(exc, UnicodeError):
        return True  # the name cannot even be encoded (IDNA)
    return isinstance(exc, socket.gaierror) and exc.errno in _NO_SUCH_NAME
