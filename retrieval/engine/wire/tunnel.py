"""``plugin`` / ``plugout``: speak the protocol over a program's standard input
and output instead of a TCP connection.

fetchmail's recipes work as written, without the shell::

    plugin "ssh -C %h /usr/sbin/imapd"          # a preauthenticated IMAP server
    plugin "openssl s_client -quiet -connect %h:%p -verify_return_error"
    plugout "ssh mailhub /usr/sbin/sendmail -bs"

The program's standard input and output are pipes, relayed (by two small
threads) to one end of a socket pair whose other end is the connection, so
everything above the socket (the bounded line reader, the deadline on every
read, TLS, the transcript) works unchanged on the :class:`TunnelConnection`.
fetchmail gives the program the socket itself; pipes are what ``ssh`` gives a
remote command, and some servers refuse a socket on standard input when
started as root (Dovecot's ``imap`` takes it for inetd). ``%h`` is the host and ``%p`` the port that a TCP
connection would have used; both are checked before they are put into an
argument (see :mod:`retrieval.engine.wire.commands`). What the program writes to
standard error is kept (bounded) and written to the transcript when the
connection closes, with its exit status; a program that dies early has both
in the error that ends the poll. Closing the connection closes our end (the
program reads end of file), waits a moment, then stops the program and its
process group.

TLS is still decided by the mailbox: a program that encrypts by itself
(``ssh``, ``openssl s_client``) needs ``sslproto ''`` (no STARTTLS over the
tunnel), exactly as in fetchmail 6.4, where STARTTLS is otherwise mandatory.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
from typing import IO, TYPE_CHECKING

from retrieval.engine.errors import ConfigError, EngineError, TransportError
from retrieval.engine.wire.commands import (
    expand,
    program_environment,
    safe_host,
    shown,
    stop,
)
from retrieval.engine.wire.transport import DEFAULT_MAX_LINE, Connection

if TYPE_CHECKING:
    from collections.abc import Sequence

    from retrieval.engine.ports import Transcript
    from retrieval.engine.spec import ServerSpec
    from retrieval.engine.wire.transport import Budget

MAX_STDERR = 4096  # bytes of the program's standard error kept
MAX_STDERR_LINES = 20
EXIT_WAIT = 0.5  # seconds to let a program that closed its output finish
RELAY_SIZE = 64 * 1024


def connect_server(server: ServerSpec, transcript: Transcript) -> Connection:
    """The connection to the mail server: through ``plugin`` when one is set."""
    host = server.via or server.host
    port = server.effective_port
    if server.plugin:
        return open_tunnel(
            server.plugin,
            host=host,
            port=port,
            timeout=server.timeout,
            transcript=transcript,
            label="plugin",
            inherit_env=server.inherit_env,
        )
    return Connection.open_tcp(
        host,
        port,
        timeout=server.timeout,
        transcript=transcript,
        public_only=server.public_only,
    )


def open_tunnel(
    template: Sequence[str],
    *,
    host: str,
    port: int,
    timeout: float,
    transcript: Transcript,
    label: str,
    inherit_env: bool,
    side: str = "",
    error: type[EngineError] = TransportError,
) -> TunnelConnection:
    """Start the program ``template`` (``%h``/``%p`` filled in) as the far end,
    with :func:`~retrieval.engine.wire.commands.program_environment`."""
    if not safe_host(host):
        raise ConfigError(
            f"The host name {host!r} cannot be given to the {label} command; "
            "nothing was run."
        )
    argv = expand(template, {"h": host, "p": str(port)})
    try:
        process = subprocess.Popen(
            argv,
            bufsize=0,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=program_environment(inherit=inherit_env),
        )
    except OSError as exc:
        raise error(
            f"The {label} command {shown(argv)} could not be started: "
            f"{exc.strerror or exc}."
        ) from exc
    transcript.record("*", f"{label}: started {shown(argv)} (process {process.pid})")
    ours, relay = socket.socketpair()
    return TunnelConnection(
        ours,
        _Relay(relay, process),
        process,
        label=label,
        timeout=timeout,
        transcript=transcript,
        peer=f"{label} {argv[0]}",
        side=side or f"the {label} command ({argv[0]})",
        error=error,
    )


class TunnelConnection(Connection):
    """A :class:`Connection` whose far end is a program we started."""

    def __init__(
        self,
        sock: socket.socket,
        relay: _Relay,
        process: subprocess.Popen[bytes],
        *,
        label: str,
        timeout: float,
        transcript: Transcript,
        peer: str,
        side: str,
        error: type[EngineError],
    ) -> None:
        super().__init__(
            sock,
            timeout=timeout,
            transcript=transcript,
            peer=peer,
            side=side,
            error=error,
        )
        self.process = process
        self._relay = relay
        self._label = label
        self._log = transcript
        self._stderr: list[bytes] = []
        assert process.stderr is not None
        self._reader = threading.Thread(
            target=_drain, args=(process.stderr, self._stderr), daemon=True
        )
        self._reader.start()

    def readline(
        self,
        max_line: int = DEFAULT_MAX_LINE,
        *,
        record: bool = True,
        budget: Budget | None = None,
    ) -> bytes:
        """As :meth:`Connection.readline`; a program that ended says why."""
        try:
            return super().readline(max_line, record=record, budget=budget)
        except EngineError as exc:
            raise self._explained(exc) from exc

    def _explained(self, exc: EngineError) -> EngineError:
        try:
            status = self.process.wait(EXIT_WAIT)
        except subprocess.TimeoutExpired:
            return exc
        self._reader.join(EXIT_WAIT)
        said = self.stderr_text()
        detail = f"{self._label} {_status_words(status)}"
        if said:
            detail += f"; it said: {said[-500:]}"
        try:
            return type(exc)(f"{exc} (The {detail}.)")
        except TypeError:  # an error type that takes more than a message
            return exc

    def stderr_text(self) -> str:
        return b"".join(self._stderr).decode("utf-8", "replace").strip()

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        status = stop(self.process, patience=EXIT_WAIT * 4)
        self._relay.close()
        self._reader.join(EXIT_WAIT)
        lines = self.stderr_text().splitlines()
        for line in lines[:MAX_STDERR_LINES]:
            self._log.record("*", f"{self._label} stderr: {line}")
        if len(lines) > MAX_STDERR_LINES:
            self._log.record("*", f"{self._label} stderr: (more not kept)")
        self._log.record("*", f"{self._label}: {_status_words(status)}")


class _Relay:
    """Bytes between the program's pipes and our end of the socket pair."""

    def __init__(self, sock: socket.socket, process: subprocess.Popen[bytes]) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._sock = sock
        self._threads = [
            threading.Thread(
                target=self._to_program, args=(process.stdin,), daemon=True
            ),
            threading.Thread(
                target=self._from_program, args=(process.stdout,), daemon=True
            ),
        ]
        for thread in self._threads:
            thread.start()

    def _to_program(self, stdin: IO[bytes]) -> None:
        try:
            while data := self._sock.recv(RELAY_SIZE):
                view = memoryview(data)
                while view:
                    view = view[os.write(stdin.fileno(), view) :]
        except OSError:
            pass  # the program stopped reading, or we closed our end
        finally:
            stdin.close()  # the program reads end of file

    def _from_program(self, stdout: IO[bytes]) -> None:
        try:
            while data := os.read(stdout.fileno(), RELAY_SIZE):
                self._sock.sendall(data)
        except OSError:
            pass
        finally:
            stdout.close()
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)  # we read end of file

    def close(self) -> None:
        """After the program ended (its pipes are closed): drop our socket."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(EXIT_WAIT)
        self._sock.close()


def _status_words(status: int) -> str:
    if status < 0:
        return f"command was ended by signal {-status}"
    return f"command exited with status {status}"


def _drain(stream: IO[bytes], into: list[bytes]) -> None:
    kept = 0
    while data := os.read(stream.fileno(), 4096):
        if kept < MAX_STDERR:
            into.append(data[: MAX_STDERR - kept])
            kept += len(data)
    stream.close()
