"""The one place TLS settings become an ``ssl.SSLContext``.

poplib, imaplib and smtplib default to ``ssl._create_stdlib_context()``, which
verifies nothing; every connection here starts from ``ssl.create_default_context``.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from typing import TYPE_CHECKING

from retrieval.engine.errors import ConfigError, TlsError

if TYPE_CHECKING:
    from retrieval.engine.spec import TlsSpec

_VERSIONS = {
    "TLS1.2": ssl.TLSVersion.TLSv1_2,
    "TLS1.3": ssl.TLSVersion.TLSv1_3,
}


def client_context(tls: TlsSpec) -> ssl.SSLContext:
    """A verifying client context; TLS 1.2 at least, private CAs when configured."""
    try:
        # With cafile/capath given, only those CAs are trusted: a private CA
        # replaces the system store instead of widening it.
        context = ssl.create_default_context(cafile=tls.ca_file, capath=tls.ca_path)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"The CA certificates configured for this mailbox could not be read: {exc}"
        ) from exc
    wanted = (tls.min_version or "TLS1.2").upper().replace("V", "")
    if wanted not in _VERSIONS:
        raise ConfigError(
            f"Unknown minimum TLS version {tls.min_version!r}; use TLS1.2 or TLS1.3."
        )
    context.minimum_version = _VERSIONS[wanted]
    if not tls.verify:
        # An explicit, visible per-mailbox choice (fetchmail's "no sslcertck").
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert_file:
        try:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"The client certificate could not be loaded: {exc}"
            ) from exc
    return context


def check_fingerprint(der_cert: bytes | None, expected: str | None) -> None:
    """Compare the peer certificate with a pinned fingerprint, if one is set.

    Accepts fetchmail's MD5 colon form (``AB:CD:...``) and SHA-256 in hex, with or
    without colons; the algorithm is told apart by length.
    """
    if not expected:
        return
    if der_cert is None:
        raise TlsError(
            "The server sent no certificate to compare with the fingerprint."
        )
    wanted = expected.replace(":", "").strip().lower()
    algorithm = "md5" if len(wanted) == 32 else "sha256"
    actual = hashlib.new(algorithm, der_cert).hexdigest()
    if not hmac.compare_digest(actual, wanted):
        raise TlsError(
            "The server's certificate does not match the configured fingerprint "
            f"({algorithm} {actual})."
        )


def describe_ssl_error(exc: ssl.SSLError) -> str:
    """Plain words for a handshake failure, keeping OpenSSL's reason for experts."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or str(exc)
        return f"The server's certificate could not be verified: {reason}."
    reason = exc.reason or str(exc)
    return f"The secure (TLS) connection could not be set up: {reason}."
