"""Plain words for a failed poll or connection test, and what to do about it.

Written once, used by the mailbox page (its last poll), the poll page and the
connection test page. A run keeps only its exit code and the engine's error
sentence (not the exception's class), so the matching is on the exit code and
the stable beginnings of the sentences the engine writes
(retrieval/engine/wire/transport.py, wire/tls.py, fetch/pop3.py, fetch/imap.py,
deliver/smtp.py); tests/retrieval/test_explain.py checks the table against
sentences the engine really produces. A connection test has no exit code: the
sentence alone decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from retrieval.engine.report import ExitCode

# The ports where the server expects TLS from the first byte (RFC 8314).
IMPLICIT_TLS_PORTS = frozenset({993, 995, 465})


@dataclass(frozen=True)
class Explanation:
    key: str  # stable name, for tests and CSS
    what: str  # what happened, in plain words
    fix: str  # what the person can do


CERTIFICATE = Explanation(
    "certificate",
    "The server's certificate could not be verified, so fetchweb did not send "
    "the password: the connection might not be going to the real server.",
    "Check that the server name is exactly the one on its certificate (often "
    "mail.example.com rather than example.com). If the server uses its own "
    "certificate authority, give its CA file in the mailbox's settings, or the "
    "certificate's fingerprint. Turn certificate checking off only if you know "
    "why it fails.",
)
TLS_ON_PLAIN_PORT = Explanation(
    "tls-on-plain-port",
    "fetchweb started TLS at once, but the server answered in plain text: this "
    "port expects a plain connection, upgraded with STARTTLS.",
    "In the mailbox's settings choose STARTTLS as the encryption, or use the "
    "server's TLS port (993 for IMAP, 995 for POP3).",
)
STARTTLS_ON_TLS_PORT = Explanation(
    "starttls-on-tls-port",
    "fetchweb waited for the server's greeting in plain text, but this port "
    "expects TLS from the first byte, so the server waited too.",
    "In the mailbox's settings choose TLS from the start (implicit TLS) as the "
    "encryption, or use the server's plain port (143 for IMAP, 110 for POP3) "
    "with STARTTLS.",
)
TLS_FAILED = Explanation(
    "tls",
    "The secure (TLS) connection could not be set up with the server.",
    "Check the encryption setting and the port against the provider's "
    "instructions; the message above says what the server or OpenSSL objected to.",
)
WRONG_PASSWORD = Explanation(
    "wrong-password",
    "The server refused the user name or the password.",
    "Check the user name (often the full address) and enter the password again "
    "in the mailbox's settings. Some providers (Gmail, Outlook, iCloud) need an "
    "app password instead of the account's own, or IMAP/POP3 access switched "
    "on in their web settings.",
)
HOST_UNKNOWN = Explanation(
    "host-unknown",
    "The server's name could not be found: it does not exist, or it is spelt "
    "differently.",
    "Check the server name in the mailbox's settings against the provider's "
    "instructions (for example imap.example.com).",
)
CONNECTION_REFUSED = Explanation(
    "connection-refused",
    "The server's machine answered, but nothing accepts connections on that port.",
    "Check the port (IMAP: 993 with TLS, 143 plain; POP3: 995 with TLS, 110 "
    "plain) and that the provider offers this protocol at all.",
)
LISTENER_DOWN = Explanation(
    "listener-down",
    "The mail was fetched but could not be handed to the local mail system "
    "(the listener or delivery program): it refused or is not running. Nothing "
    "was deleted from the server; the next poll tries again.",
    "Ask the administrator of this service to check the local mail server "
    "(for example Postfix or Dovecot LMTP) and the delivery settings of the "
    "mailbox.",
)
TIMEOUT = Explanation(
    "timeout",
    "The server did not answer in time.",
    "It may be busy or unreachable from here: wait for the next poll. If it "
    "keeps happening, check the server name and port, and that a firewall lets "
    "this service reach it.",
)

_TIMEOUT = re.compile(
    r"timed out after|did not answer within|sent its answer too slowly", re.I
)
# OpenSSL's words when the first bytes are plain text, not a TLS record
# (1.1/3.0: "wrong version number"; 3.2 and later: "record layer failure";
# others: "unknown protocol", "packet length too long", "http request").
_PLAINTEXT_REPLY = re.compile(
    r"WRONG_VERSION_NUMBER|wrong version number|record layer failure|"
    r"RECORD_LAYER_FAILURE|unknown protocol|UNKNOWN_PROTOCOL|packet length too long|"
    r"PACKET_LENGTH_TOO_LONG|HTTP_REQUEST|http request",
)


def explain(
    error: str,
    exit_code: int | None = None,
    *,
    tls_mode: str = "",
    port: int | None = None,
) -> Explanation | None:
    """What went wrong and the fix, or None when the failure is not a common one.

    ``tls_mode`` and ``port`` are the mailbox's (``Mailbox.TlsMode`` values and
    the port actually used): they tell "STARTTLS on a TLS port" from a plain
    timeout.
    """
    if not error:
        return None
    code = _code(exit_code)
    if code in (ExitCode.SUCCESS, ExitCode.NOMAIL, ExitCode.MAXFETCH):
        return None
    if code is ExitCode.SMTP or error.startswith("Local delivery is unavailable"):
        return LISTENER_DOWN
    if code in (None, ExitCode.AUTHFAIL) and error.startswith(
        "Wrong user name or password"
    ):
        return WRONG_PASSWORD
    if code in (None, ExitCode.DNS) and re.match(
        r"The name \S+ could not be resolved", error
    ):
        return HOST_UNKNOWN
    if code not in (None, ExitCode.SOCKET):
        return None
    if error.startswith(
        "The server's certificate could not be verified"
    ) or error.startswith("The server's certificate does not match"):
        return CERTIFICATE
    if error.startswith("The secure (TLS) connection could not be set up"):
        if _PLAINTEXT_REPLY.search(error):
            return TLS_ON_PLAIN_PORT
        return TLS_FAILED
    if error.startswith("Could not connect to") and error.endswith(
        ": connection refused."
    ):
        return CONNECTION_REFUSED
    if _TIMEOUT.search(error) or error.endswith("closed the connection."):
        if tls_mode != "implicit" and port in IMPLICIT_TLS_PORTS:
            return STARTTLS_ON_TLS_PORT
        if _TIMEOUT.search(error):
            return TIMEOUT
    return None


def _code(exit_code: int | None) -> ExitCode | None:
    if exit_code is None:
        return None
    try:
        return ExitCode(exit_code)
    except ValueError:
        return None


def for_mailbox(
    error: str, exit_code: int | None, mailbox: object, port: int | None
) -> Explanation | None:
    """:func:`explain` with the mailbox's encryption setting."""
    return explain(
        error,
        exit_code,
        tls_mode=str(getattr(mailbox, "tls_mode", "") or ""),
        port=port,
    )
