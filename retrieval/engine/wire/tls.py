"""The one place TLS settings become an ``ssl.SSLContext``.

poplib, imaplib and smtplib default to ``ssl._create_stdlib_context()``, which
verifies nothing; every connection here starts from ``ssl.create_default_context``.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
import threading
import time
from typing import TYPE_CHECKING

from retrieval.engine.errors import CertificateError, ConfigError, TlsError

if TYPE_CHECKING:
    from retrieval.engine.spec import TlsSpec

_TLS12 = ssl.TLSVersion.TLSv1_2
_TLS13 = ssl.TLSVersion.TLSv1_3
# Our names and fetchmail's ``sslproto`` words -> (minimum, maximum or None).
# Nothing older than TLS 1.2 is ever offered: the words that ask for SSLv3,
# TLS 1.0 or 1.1 get TLS 1.2 or newer instead (see :func:`version_note`).
_VERSIONS: dict[str, tuple[ssl.TLSVersion, ssl.TLSVersion | None]] = {
    "tls1.2": (_TLS12, None),  # our own spelling: a minimum
    "tls1.3": (_TLS13, None),
    "tls1.2+": (_TLS12, None),
    "tls1.3+": (_TLS13, None),
    "auto": (_TLS12, None),
    "ssl23": (_TLS12, None),
    "tls1+": (_TLS12, None),
    "tls1.1+": (_TLS12, None),
    "ssl3+": (_TLS12, None),
    "tls1": (_TLS12, None),
    "tls1.1": (_TLS12, None),
    "ssl3": (_TLS12, None),
}
# fetchmail's exact-version words, honoured as exact where still possible.
_EXACT = {"=tls1.2": (_TLS12, _TLS12), "=tls1.3": (_TLS13, _TLS13)}
_OUTDATED = {"tls1", "tls1.1", "ssl3", "tls1+", "tls1.1+", "ssl3+", "ssl23", "auto"}


def _version_key(value: str | None) -> str:
    return (value or "tls1.2").strip().lower().replace("tlsv", "tls")


def version_range(value: str | None) -> tuple[ssl.TLSVersion, ssl.TLSVersion | None]:
    """The TLS versions allowed for ``min_version`` (ours or fetchmail's words).

    ``TLS1.2``/``TLS1.3`` (and ``tls1.2+``/``tls1.3+``) are minimums; ``=TLS1.2``
    and ``=TLS1.3`` pin one version (fetchmail's exact ``sslproto tls1.2``).
    """
    key = _version_key(value)
    if key in _EXACT:
        return _EXACT[key]
    if key not in _VERSIONS:
        raise ConfigError(
            f"Unknown TLS version {value!r}; use TLS1.2, TLS1.3 or a fetchmail "
            "sslproto value such as tls1.2+."
        )
    return _VERSIONS[key]


def version_note(value: str | None) -> str:
    """Words for the transcript when a configured version was raised to TLS 1.2."""
    key = _version_key(value)
    if value and key in _OUTDATED - {"auto", "ssl23"}:
        return (
            f"sslproto {value!r} asks for a protocol older than TLS 1.2, which is "
            "no longer offered; TLS 1.2 or newer is used."
        )
    return ""


# A context is built once per distinct setting and shared: OpenSSL 3 spends about
# a millisecond of CPU and a few hundred kilobytes on each one (the IDLE process
# held 1,000 of them: 430 MB). Contexts are never changed after they are built,
# so sharing them between threads is safe; entries are rebuilt after
# _CONTEXT_SECONDS so that a replaced CA file or client certificate is read again.
_CONTEXT_SECONDS = 300.0
_CONTEXT_LIMIT = 256
_contexts: dict[tuple[object, ...], tuple[float, ssl.SSLContext]] = {}
_contexts_lock = threading.Lock()


def client_context(tls: TlsSpec) -> ssl.SSLContext:
    """A verifying client context; TLS 1.2 at least, private CAs when configured."""
    key = (
        tls.verify,
        tls.ca_file,
        tls.ca_path,
        tls.cert_file,
        tls.key_file,
        _version_key(tls.min_version),
    )
    now = time.monotonic()
    with _contexts_lock:
        cached = _contexts.get(key)
        if cached is not None and now - cached[0] < _CONTEXT_SECONDS:
            return cached[1]
    context = _new_client_context(tls)
    with _contexts_lock:
        if len(_contexts) >= _CONTEXT_LIMIT:
            _contexts.clear()
        _contexts[key] = (now, context)
    return context


def _new_client_context(tls: TlsSpec) -> ssl.SSLContext:
    try:
        # With cafile/capath given, only those CAs are trusted: a private CA
        # replaces the system store instead of widening it.
        context = ssl.create_default_context(cafile=tls.ca_file, capath=tls.ca_path)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"The CA certificates configured for this mailbox could not be read: {exc}"
        ) from exc
    lowest, highest = version_range(tls.min_version)
    context.minimum_version = lowest
    if highest is not None:
        context.maximum_version = highest
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
    without colons; the algorithm is told apart by length. As in fetchmail the
    pin is checked in addition to certificate verification, never instead of
    it: a certificate that does not verify passes only with ``verify`` off
    (``no sslcertck``), when the pin is the chosen trust.
    """
    if not expected:
        return
    algorithm = fingerprint_algorithm(expected)
    if der_cert is None:
        raise TlsError(
            "The server sent no certificate to compare with the fingerprint."
        )
    wanted = expected.replace(":", "").strip().lower()
    actual = hashlib.new(algorithm, der_cert).hexdigest()
    if not hmac.compare_digest(actual, wanted):
        raise CertificateError(
            "The server's certificate does not match the configured fingerprint "
            f"({algorithm} {actual})."
        )


def fingerprint_algorithm(fingerprint: str) -> str:
    """``md5`` or ``sha256`` for a well-formed pin; ConfigError otherwise."""
    digits = fingerprint.replace(":", "").strip().lower()
    algorithms = {32: "md5", 64: "sha256"}
    if len(digits) not in algorithms or any(ch not in _HEX for ch in digits):
        raise ConfigError(
            "The certificate fingerprint must be an MD5 (32 hex digits, as "
            "fetchmail prints it) or SHA-256 (64 hex digits) value."
        )
    return algorithms[len(digits)]


_HEX = frozenset("0123456789abcdef")


def describe_ssl_error(exc: ssl.SSLError) -> str:
    """Plain words for a handshake failure, keeping OpenSSL's reason for experts."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or str(exc)
        return f"The server's certificate could not be verified: {reason}."
    reason = exc.reason or str(exc)
    return f"The secure (TLS) connection could not be set up: {reason}."
