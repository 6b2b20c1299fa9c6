"""TLS options against fake servers: pins, CA paths, versions, client certificates.

Trust follows fetchmail: ``sslfingerprint`` is checked in addition to
certificate verification (``sslcertck``), never instead of it; a certificate
that does not verify passes only with verification off and a matching pin.
"""

from __future__ import annotations

import hashlib
import shutil
import ssl
import subprocess
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest

from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.report import ExitCode
from retrieval.engine.run import poll
from retrieval.engine.spec import MailProtocol, TlsMode
from tests.support.fake_servers import FakeImapServer, FakePop3Server, FakeSmtpServer

from .conftest import make_spec, message

if TYPE_CHECKING:
    from pathlib import Path

    import trustme

    from retrieval.engine.report import PollReport


def server_certificate(context: ssl.SSLContext, ca_file: str) -> bytes:
    """The DER certificate a fake server presents, read over a real handshake."""
    with FakePop3Server(tls=context) as server:
        client = ssl.create_default_context(cafile=ca_file)
        import socket

        with (
            socket.create_connection(("127.0.0.1", server.port)) as raw,
            client.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def md5_pin(der: bytes) -> str:
    """fetchmail's form: upper-case MD5 pairs joined by colons."""
    digest = hashlib.md5(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, 32, 2))


def tls_poll(
    server: FakePop3Server | FakeImapServer,
    listener: FakeSmtpServer | None,
    *,
    protocol: MailProtocol = MailProtocol.POP3,
    ca_file: str | None = None,
    **tls: Any,
) -> tuple[PollReport, ListTranscript]:
    spec = make_spec(
        server, listener, protocol=protocol, tls=TlsMode.IMPLICIT, ca_file=ca_file
    )
    spec = replace(
        spec, server=replace(spec.server, tls=replace(spec.server.tls, **tls))
    )
    transcript = ListTranscript()
    return poll(spec, ledger=MemoryLedger(), transcript=transcript), transcript


class FingerprintTests:
    def test_the_right_pin_passes_in_both_forms(
        self, listener: FakeSmtpServer, server_tls: ssl.SSLContext, ca_file: str
    ) -> None:
        der = server_certificate(server_tls, ca_file)
        for pin in (md5_pin(der), hashlib.sha256(der).hexdigest()):
            with FakePop3Server([message(1)], tls=server_tls) as server:
                report, _ = tls_poll(server, listener, ca_file=ca_file, fingerprint=pin)
            assert report.exit_code is ExitCode.SUCCESS, report.error

    def test_a_wrong_pin_ends_the_poll_before_the_greeting_is_answered(
        self, listener: FakeSmtpServer, server_tls: ssl.SSLContext, ca_file: str
    ) -> None:
        with FakePop3Server([message(1)], tls=server_tls) as server:
            report, _ = tls_poll(
                server, listener, ca_file=ca_file, fingerprint="00" * 16
            )
        assert report.exit_code is ExitCode.SOCKET
        assert "does not match the configured fingerprint" in report.error
        assert server.commands == []

    def test_a_pin_does_not_replace_verification(
        self,
        listener: FakeSmtpServer,
        server_tls: ssl.SSLContext,
        ca_file: str,
        other_ca_file: str,
    ) -> None:
        pin = md5_pin(server_certificate(server_tls, ca_file))
        with FakePop3Server([message(1)], tls=server_tls) as server:
            report, _ = tls_poll(
                server, listener, ca_file=other_ca_file, fingerprint=pin
            )
        assert report.exit_code is ExitCode.SOCKET
        assert "could not be verified" in report.error
        assert server.commands == []

    def test_with_verification_off_the_pin_is_the_trust(
        self,
        listener: FakeSmtpServer,
        server_tls: ssl.SSLContext,
        ca_file: str,
        other_ca_file: str,
    ) -> None:
        pin = md5_pin(server_certificate(server_tls, ca_file))
        with FakePop3Server([message(1)], tls=server_tls) as server:
            good, _ = tls_poll(
                server, listener, ca_file=other_ca_file, verify=False, fingerprint=pin
            )
            bad, _ = tls_poll(
                server,
                listener,
                ca_file=other_ca_file,
                verify=False,
                fingerprint="AB" * 32,
            )
        assert good.exit_code is ExitCode.SUCCESS, good.error
        assert bad.exit_code is ExitCode.SOCKET

    def test_a_malformed_pin_is_a_configuration_error(
        self, server_tls: ssl.SSLContext, ca_file: str
    ) -> None:
        with FakePop3Server([message(1)], tls=server_tls) as server:
            report, _ = tls_poll(server, None, ca_file=ca_file, fingerprint="12:34:zz")
        assert report.exit_code is ExitCode.SYNTAX
        assert "MD5 (32 hex digits" in report.error
        assert server.connections == 0


class TrustStoreTests:
    @pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")
    def test_a_hashed_ca_directory_is_trusted(
        self,
        listener: FakeSmtpServer,
        server_tls: ssl.SSLContext,
        ca_file: str,
        tmp_path: Path,
    ) -> None:
        directory = tmp_path / "certs"
        directory.mkdir()
        shutil.copy(ca_file, directory / "ca.pem")
        subprocess.run(["openssl", "rehash", str(directory)], check=True)
        with FakePop3Server([message(1)], tls=server_tls) as server:
            report, _ = tls_poll(server, listener, ca_path=str(directory))
        assert report.exit_code is ExitCode.SUCCESS, report.error

    def test_an_unreadable_ca_file_is_a_configuration_error(
        self, tmp_path: Path
    ) -> None:
        with FakePop3Server([message(1)]) as server:
            report, _ = tls_poll(server, None, ca_file=str(tmp_path / "missing.pem"))
        assert report.exit_code is ExitCode.SYNTAX
        assert server.connections == 0


def capped(
    ca: trustme.CA, lowest: ssl.TLSVersion, highest: ssl.TLSVersion
) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    context.minimum_version, context.maximum_version = lowest, highest
    return context


class VersionTests:
    def test_a_minimum_the_server_cannot_meet_ends_the_poll(
        self, listener: FakeSmtpServer, ca: trustme.CA, ca_file: str
    ) -> None:
        tls12 = capped(ca, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)
        for value in ("TLS1.3", "tls1.3+"):
            with FakePop3Server([message(1)], tls=tls12) as server:
                report, _ = tls_poll(
                    server, listener, ca_file=ca_file, min_version=value
                )
            assert report.exit_code is ExitCode.SOCKET, value
            assert server.commands == []

    def test_an_exact_version_is_held_to(
        self, listener: FakeSmtpServer, ca: trustme.CA, ca_file: str
    ) -> None:
        tls13 = capped(ca, ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3)
        with FakePop3Server([message(1)], tls=tls13) as server:
            exact, _ = tls_poll(
                server, listener, ca_file=ca_file, min_version="=TLS1.2"
            )
            minimum, transcript = tls_poll(
                server, listener, ca_file=ca_file, min_version="TLS1.2"
            )
        assert exact.exit_code is ExitCode.SOCKET
        assert minimum.exit_code is ExitCode.SUCCESS, minimum.error
        assert any("TLSv1.3" in t for _, t in transcript.lines)

    def test_outdated_fetchmail_versions_become_tls_1_2_with_a_note(
        self, listener: FakeSmtpServer, server_tls: ssl.SSLContext, ca_file: str
    ) -> None:
        with FakePop3Server([message(1)], tls=server_tls) as server:
            report, transcript = tls_poll(
                server, listener, ca_file=ca_file, min_version="tls1"
            )
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert any("older than TLS 1.2" in t for _, t in transcript.lines)

    def test_an_unknown_version_is_a_configuration_error(self) -> None:
        with FakePop3Server([message(1)]) as server:
            report, _ = tls_poll(server, None, min_version="TLS9")
        assert report.exit_code is ExitCode.SYNTAX and server.connections == 0


@pytest.fixture
def client_cert(ca: trustme.CA, tmp_path: Path) -> tuple[str, str]:
    cert = ca.issue_cert("joe@example.org")
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    return str(cert_file), str(key_file)


@pytest.fixture
def demanding_tls(ca: trustme.CA, ca_file: str) -> ssl.SSLContext:
    """A server that wants a client certificate from our CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca_file)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    context.verify_mode = ssl.CERT_REQUIRED
    # TLS 1.2: a refused client certificate then fails the handshake itself.
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


class ClientCertificateTests:
    def test_a_server_demanding_a_certificate_gets_ours(
        self,
        listener: FakeSmtpServer,
        demanding_tls: ssl.SSLContext,
        ca_file: str,
        client_cert: tuple[str, str],
    ) -> None:
        cert_file, key_file = client_cert
        with FakePop3Server([message(1)], tls=demanding_tls) as server:
            with_cert, _ = tls_poll(
                server,
                listener,
                ca_file=ca_file,
                cert_file=cert_file,
                key_file=key_file,
            )
            without, _ = tls_poll(server, listener, ca_file=ca_file)
        assert with_cert.exit_code is ExitCode.SUCCESS, with_cert.error
        assert without.exit_code is ExitCode.SOCKET

    def test_external_authentication_uses_the_certificate(
        self,
        listener: FakeSmtpServer,
        demanding_tls: ssl.SSLContext,
        ca_file: str,
        client_cert: tuple[str, str],
    ) -> None:
        cert_file, key_file = client_cert
        caps = ["IMAP4rev1", "AUTH=EXTERNAL", "AUTH=PLAIN", "SASL-IR"]
        with FakeImapServer(
            [message(1)], tls=demanding_tls, capabilities=caps
        ) as server:
            spec = make_spec(
                server,
                listener,
                protocol=MailProtocol.IMAP,
                tls=TlsMode.IMPLICIT,
                ca_file=ca_file,
                auth="any",
            )
            spec = replace(
                spec,
                server=replace(
                    spec.server,
                    tls=replace(
                        spec.server.tls, cert_file=cert_file, key_file=key_file
                    ),
                ),
            )
            report = poll(spec, ledger=MemoryLedger(), transcript=ListTranscript())
        assert report.exit_code is ExitCode.SUCCESS, report.error
        assert "A0002 AUTHENTICATE EXTERNAL =" in server.commands
        assert not any("PLAIN" in c or "LOGIN" in c for c in server.commands)

    def test_an_unreadable_client_key_is_a_configuration_error(
        self, tmp_path: Path, client_cert: tuple[str, str]
    ) -> None:
        with FakePop3Server([message(1)]) as server:
            report, _ = tls_poll(
                server, None, cert_file=client_cert[0], key_file=str(tmp_path / "nokey")
            )
        assert report.exit_code is ExitCode.SYNTAX and server.connections == 0


class TestSharedContexts:
    """One context per distinct setting, rebuilt when it has aged."""

    def test_the_same_settings_share_one_context(
        self, ca: trustme.CA, tmp_path: Path
    ) -> None:
        from retrieval.engine.spec import TlsSpec
        from retrieval.engine.wire import tls

        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        spec = TlsSpec(ca_file=str(ca_file))
        first = tls.client_context(spec)
        assert tls.client_context(replace(spec, server_name="x")) is first
        assert tls.client_context(replace(spec, fingerprint="AB" * 32)) is first
        for other in (
            replace(spec, verify=False),
            replace(spec, min_version="TLS1.3"),
            TlsSpec(),
        ):
            assert tls.client_context(other) is not first
        assert first.verify_mode is ssl.CERT_REQUIRED and first.check_hostname

    def test_an_aged_context_is_built_again(
        self, ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from retrieval.engine.spec import TlsSpec
        from retrieval.engine.wire import tls

        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        first = tls.client_context(TlsSpec(ca_file=str(ca_file)))
        monkeypatch.setattr(tls, "_CONTEXT_SECONDS", -1.0)  # every entry has aged
        assert tls.client_context(TlsSpec(ca_file=str(ca_file))) is not first
