"""Fixtures for the engine tests: TLS material, fake servers, spec builders.

No Django here: ``pytest tests/engine -p no:django`` must work.
"""

from __future__ import annotations

import ssl
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
import trustme

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.spec import (
    DeliveryKind,
    DeliverySpec,
    MailboxSpec,
    MailProtocol,
    Secret,
    ServerSpec,
    TlsMode,
    TlsSpec,
)
from tests.support.fake_servers import FakeServer, FakeSmtpServer

if TYPE_CHECKING:
    from collections.abc import Iterator

PASSWORD = "s3cr\u00e9t-Canary-7"


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="session")
def other_ca_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("otherca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def listener() -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer() as server:
        assert isinstance(server, FakeSmtpServer)
        yield server
        assert not server.errors


@pytest.fixture
def ledger() -> MemoryLedger:
    return MemoryLedger()


@pytest.fixture
def transcript() -> ListTranscript:
    return ListTranscript()


def make_spec(
    server: FakeServer,
    listener: FakeServer | None = None,
    *,
    protocol: MailProtocol = MailProtocol.POP3,
    tls: TlsMode = TlsMode.NONE,
    ca_file: str | None = None,
    timeout: float = 3.0,
    password: str = "secret",
    auth: str = "any",
    delivery: DeliverySpec | None = None,
    **options: object,
) -> MailboxSpec:
    """A spec pointing at ``server`` and delivering to ``listener`` over SMTP."""
    if delivery is None:
        hosts = (f"127.0.0.1/{listener.port}",) if listener is not None else ()
        delivery = DeliverySpec(
            kind=DeliveryKind.SMTP,
            hosts=hosts,
            recipients=("joe@example.com",),
            timeout=timeout,
        )
    spec = MailboxSpec(
        server=ServerSpec(
            host="localhost" if tls is not TlsMode.NONE else "127.0.0.1",
            via="127.0.0.1",
            port=server.port,
            protocol=protocol,
            tls=TlsSpec(mode=tls, ca_file=ca_file),
            timeout=timeout,
            auth=auth,
        ),
        username="joe",
        password=Secret(password),
        delivery=delivery,
    )
    return replace(spec, **options)  # type: ignore[arg-type]


def message(n: int, body: bytes = b"") -> bytes:
    """A small, distinct test message with CRLF line endings."""
    return (
        f"Return-Path: <sender{n}@example.org>\r\n"
        f"Message-ID: <m{n}@example.org>\r\n"
        f"Subject: test {n}\r\n\r\n".encode()
        + (body or f"body of message {n}\r\n".encode())
    )


def without_trace(data: bytes) -> bytes:
    """Strip our three-line Received header from a delivered message."""
    assert data.startswith(b"Received: from ")
    lines = data.split(b"\r\n")
    assert lines[1].startswith(b"\tby ") and lines[2].startswith(b"\t")
    return b"\r\n".join(lines[3:])
