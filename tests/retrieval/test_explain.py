"""retrieval/explain.py: each common failure, from the sentences the engine writes.

The first table is sentences the engine produces on loopback here (a refused
port, a plain-text server answering a TLS handshake, a server that stays
silent); the second copies the engine's other sentences word for word (their
f-strings in retrieval/engine), with the exit code a poll records for them.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import TYPE_CHECKING

import pytest

from retrieval.engine.errors import EngineError
from retrieval.engine.memory import ListTranscript
from retrieval.engine.report import ExitCode
from retrieval.engine.wire.tls import describe_ssl_error
from retrieval.engine.wire.transport import Connection
from retrieval.explain import explain

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def plain_server() -> Iterator[tuple[socket.socket, int]]:
    """A loopback server that says a POP3 greeting to whoever connects."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except OSError:
                return
            client.sendall(b"+OK POP3 ready\r\n")
            client.recv(4096)
            client.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server, server.getsockname()[1]
    stop.set()
    server.close()


def _error(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(EngineError) as info:
        call()
    return str(info.value)


def test_refused_port_real_sentence() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # bound, never listening: the port refuses
    error = _error(
        lambda: Connection.open_tcp(
            "127.0.0.1", port, timeout=5, transcript=ListTranscript()
        )
    )
    found = explain(error, ExitCode.SOCKET)
    assert found is not None and found.key == "connection-refused", error


def test_tls_on_plain_port_real_sentence(
    plain_server: tuple[socket.socket, int],
) -> None:
    _, port = plain_server
    conn = Connection.open_tcp(
        "127.0.0.1", port, timeout=5, transcript=ListTranscript()
    )
    context = ssl.create_default_context()
    error = _error(lambda: conn.start_tls(context, "localhost"))
    found = explain(error, ExitCode.SOCKET, tls_mode="implicit", port=110)
    assert found is not None and found.key == "tls-on-plain-port", error


def test_silent_server_on_tls_port_is_starttls_there() -> None:
    """A STARTTLS mailbox on port 995 waits for a greeting that never comes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        conn = Connection.open_tcp(
            "127.0.0.1",
            server.getsockname()[1],
            timeout=0.2,
            transcript=ListTranscript(),
        )
        error = _error(lambda: conn.readline(512))
    finally:
        server.close()
    found = explain(error, ExitCode.SOCKET, tls_mode="starttls", port=995)
    assert found is not None and found.key == "starttls-on-tls-port", error
    plain = explain(error, ExitCode.SOCKET, tls_mode="starttls", port=110)
    assert plain is not None and plain.key == "timeout", error


def test_certificate_sentence_from_openssl() -> None:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_message = "self-signed certificate"
    error = describe_ssl_error(exc)
    found = explain(error, ExitCode.SOCKET)
    assert found is not None and found.key == "certificate", error


# (engine sentence, exit code recorded, tls_mode, port, expected key or None)
ENGINE_SENTENCES = [
    (
        "The server's certificate could not be verified: certificate has expired.",
        ExitCode.SOCKET,
        "implicit",
        993,
        "certificate",
    ),
    (
        "The server's certificate does not match the configured fingerprint "
        "(sha256 ab12).",
        ExitCode.SOCKET,
        "implicit",
        993,
        "certificate",
    ),
    (
        "The secure (TLS) connection could not be set up: WRONG_VERSION_NUMBER.",
        ExitCode.SOCKET,
        "implicit",
        143,
        "tls-on-plain-port",
    ),
    (
        "The secure (TLS) connection could not be set up: record layer failure.",
        ExitCode.SOCKET,
        "implicit",
        110,
        "tls-on-plain-port",
    ),
    (
        "The secure (TLS) connection could not be set up: "
        "TLSV1_ALERT_PROTOCOL_VERSION.",
        ExitCode.SOCKET,
        "implicit",
        993,
        "tls",
    ),
    (
        "The mail server did not answer within 30 seconds (waiting for an answer).",
        ExitCode.SOCKET,
        "starttls",
        993,
        "starttls-on-tls-port",
    ),
    (
        "The mail server closed the connection.",
        ExitCode.SOCKET,
        "none",
        995,
        "starttls-on-tls-port",
    ),
    ("The mail server closed the connection.", ExitCode.SOCKET, "none", 110, None),
    (
        "Wrong user name or password (the server said: [AUTHENTICATIONFAILED] "
        "Authentication failed.).",
        ExitCode.AUTHFAIL,
        "implicit",
        993,
        "wrong-password",
    ),
    (
        "Wrong user name or password (the server said: -ERR invalid login).",
        ExitCode.AUTHFAIL,
        "implicit",
        995,
        "wrong-password",
    ),
    (
        "The name imap.example.invalid could not be resolved "
        "([Errno -2] Name or service not known).",
        ExitCode.DNS,
        "implicit",
        993,
        "host-unknown",
    ),
    (
        "Could not connect to the mail server at mail.example.com:993: "
        "connection refused.",
        ExitCode.SOCKET,
        "implicit",
        993,
        "connection-refused",
    ),
    (
        "Local delivery is unavailable: Could not connect to the local listener at "
        "127.0.0.1:25: connection refused. Nothing was deleted from the server.",
        ExitCode.SMTP,
        "implicit",
        993,
        "listener-down",
    ),
    (
        "Connecting to the mail server at mail.example.com:993 timed out after "
        "30 seconds.",
        ExitCode.SOCKET,
        "implicit",
        993,
        "timeout",
    ),
    (
        "The secure (TLS) handshake with the mail server timed out after 30 seconds.",
        ExitCode.SOCKET,
        "implicit",
        993,
        "timeout",
    ),
    (
        "The mail server sent its answer too slowly: it did not all arrive within "
        "31.0 seconds (the timeout, plus one second for every 1024 bytes received).",
        ExitCode.SOCKET,
        "implicit",
        993,
        "timeout",
    ),
    # Not common failures: no explanation rather than a wrong one.
    (
        "The mailbox is in use by another session (the server said: [IN-USE]).",
        ExitCode.LOCKBUSY,
        "implicit",
        995,
        None,
    ),
    (
        "The server's greeting is not POP3: 'HTTP/1.1 400'",
        ExitCode.PROTOCOL,
        "implicit",
        995,
        None,
    ),
    # The exit code decides over a look-alike sentence.
    (
        "Wrong user name or password (the server said: x).",
        ExitCode.PROTOCOL,
        "implicit",
        993,
        None,
    ),
]


@pytest.mark.parametrize(("error", "code", "tls_mode", "port", "key"), ENGINE_SENTENCES)
def test_engine_sentences(
    error: str, code: ExitCode, tls_mode: str, port: int, key: str | None
) -> None:
    found = explain(error, code, tls_mode=tls_mode, port=port)
    assert (found.key if found else None) == key


def test_without_exit_code_the_sentence_decides() -> None:
    """A connection test records no exit code."""
    found = explain("Wrong user name or password (the server said: no).", None)
    assert found is not None and found.key == "wrong-password"


def test_success_and_empty_have_none() -> None:
    assert explain("", ExitCode.SOCKET) is None
    assert explain("anything", ExitCode.NOMAIL) is None
