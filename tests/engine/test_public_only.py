"""Mailboxes of non-superusers reach only public addresses, checked at connect time."""

from __future__ import annotations

import socket

import pytest

from retrieval.engine.errors import ConfigError
from retrieval.engine.memory import ListTranscript
from retrieval.engine.wire.transport import NOT_PUBLIC, Connection, is_public_address


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.0.0.5", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("::1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("fe80::1%eth0", False),
        ("not an address", False),
    ],
)
def test_is_public_address(address, public):
    assert is_public_address(address) is public


def test_a_private_address_is_refused_before_connecting():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.settimeout(0.2)
    try:
        with pytest.raises(ConfigError, match="not allowed"):
            Connection.open_tcp(
                "127.0.0.1",
                port,
                timeout=2,
                transcript=ListTranscript(),
                public_only=True,
            )
        with pytest.raises(TimeoutError):  # nothing ever knocked
            listener.accept()
    finally:
        listener.close()
    assert "public mail server" in NOT_PUBLIC


def test_without_the_flag_loopback_still_works():
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        connection = Connection.open_tcp(
            "127.0.0.1",
            listener.getsockname()[1],
            timeout=2,
            transcript=ListTranscript(),
        )
        connection.close()
    finally:
        listener.close()
