"""SASL client mechanisms (RFC 4422) and the choice among them, for POP3 and IMAP.

A :class:`Mechanism` turns server challenges into client responses and knows
nothing of the wire; :func:`exchange` drives one AUTH/AUTHENTICATE dialogue
through a small :class:`SaslWire` that each protocol implements, so POP3 and
IMAP share every rule about what a server may send:

* challenges are strict base64 and at most ``MAX_CHALLENGE`` bytes once decoded;
* a mechanism answers a bounded number of challenges, never an unexpected one;
* anything else cancels the exchange (``*``) and ends the poll as a protocol
  error (the CVE-2012-3482 class), with nothing more sent.

:func:`plan` decides which mechanisms to try, strongest first, and refuses a
configured mechanism the server does not offer before any secret is sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import importlib.util
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from retrieval.engine.errors import (
    AuthError,
    ConfigError,
    EngineError,
    ProtocolError,
    SaslError,
)
from retrieval.engine.redact import MASK

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from retrieval.engine.spec import MailboxSpec
    from retrieval.engine.wire.transport import Connection

MAX_CHALLENGE = 4096  # decoded bytes; CRAM-MD5 and LOGIN prompts are tiny
MAX_STEPS = 4  # challenges answered per exchange (LOGIN needs two)

# Configured ``auth`` values that name one SASL mechanism.
SASL_NAMES = {
    "plain": "PLAIN",
    "login": "LOGIN",
    "cram-md5": "CRAM-MD5",
    "xoauth2": "XOAUTH2",
    "oauthbearer": "OAUTHBEARER",
    "external": "EXTERNAL",
    "gssapi": "GSSAPI",
}
# fetchmail values this engine has no implementation for, with the reason.
UNSUPPORTED = {
    "kerberos_v4": "Kerberos 4 is obsolete and not supported",
    "kerberos_v5": "Kerberos 5 (other than GSSAPI) is not supported",
    "kerberos": "Kerberos 5 (other than GSSAPI) is not supported",
    "otp": "one-time passwords (OTP) are not supported",
    "ntlm": "NTLM is not supported",
    "msn": "MSN (NTLM) authentication is not supported",
    # With a plugin that logs in by itself, an IMAP server greets with PREAUTH
    # and no method is asked for; reaching here means it did not.
    "ssh": (
        "it means the plugin program (ssh ... imapd) has logged in already, and "
        "the server did not greet as logged in (IMAP PREAUTH)"
    ),
}
# Client-side stand-ins for the plain-password commands, in plan() results.
USER_PASS = "USER/PASS"  # POP3 USER + PASS
IMAP_LOGIN = "LOGIN-COMMAND"  # IMAP LOGIN
APOP = "APOP"


class Mechanism:
    """One mechanism's client side; subclasses answer challenges in order."""

    name = ""
    # True when the client speaks first (an initial response exists).
    client_first = True

    def __init__(self) -> None:
        self.steps = 0
        self.failure_detail = ""  # what an error challenge said, for the report

    def initial(self) -> bytes:
        raise NotImplementedError

    def respond(self, challenge: bytes) -> bytes:
        """The answer to one challenge; SaslError when there must be none."""
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise SaslError("the server kept sending challenges")
        return self._respond(challenge)

    def _respond(self, challenge: bytes) -> bytes:
        raise SaslError(f"{self.name} expects no challenge here")


class Plain(Mechanism):
    name = "PLAIN"

    def __init__(self, user: str, password: str) -> None:
        super().__init__()
        self._blob = f"\0{user}\0{password}".encode()

    def initial(self) -> bytes:
        return self._blob


class Login(Mechanism):
    """The de-facto LOGIN mechanism: user name, then password, each on request."""

    name = "LOGIN"
    client_first = False

    def __init__(self, user: str, password: str) -> None:
        super().__init__()
        self._answers = [user.encode(), password.encode()]

    def _respond(self, challenge: bytes) -> bytes:
        if not self._answers:
            raise SaslError("LOGIN was asked more than user name and password")
        return self._answers.pop(0)


class CramMd5(Mechanism):
    """RFC 2195: the password never crosses the wire, only an HMAC of a nonce."""

    name = "CRAM-MD5"
    client_first = False

    def __init__(self, user: str, password: str) -> None:
        super().__init__()
        self._user = user
        self._password = password.encode()

    def _respond(self, challenge: bytes) -> bytes:
        if self.steps > 1:
            raise SaslError("CRAM-MD5 has exactly one challenge")
        if not challenge:
            raise SaslError("the CRAM-MD5 challenge is empty")
        digest = hmac.new(self._password, challenge, hashlib.md5).hexdigest()
        return f"{self._user} {digest}".encode()


class _Bearer(Mechanism):
    """Token mechanisms: an error arrives as one JSON challenge before the NO."""

    _error_answer = b""

    def _respond(self, challenge: bytes) -> bytes:
        if self.steps > 1:
            raise SaslError(f"{self.name} has at most one (error) challenge")
        self.failure_detail = _json_error(challenge)
        return self._error_answer


class XOAuth2(_Bearer):
    """Google's and Microsoft's XOAUTH2: the password field holds the token."""

    name = "XOAUTH2"

    def __init__(self, user: str, token: str) -> None:
        super().__init__()
        self._blob = f"user={user}\x01auth=Bearer {token}\x01\x01".encode()

    def initial(self) -> bytes:
        return self._blob


class OAuthBearer(_Bearer):
    """RFC 7628 OAUTHBEARER; its error challenge is answered with ``\\x01``."""

    name = "OAUTHBEARER"
    _error_answer = b"\x01"

    def __init__(self, user: str, token: str, host: str, port: int) -> None:
        super().__init__()
        authzid = user.replace("=", "=3D").replace(",", "=2C")
        self._blob = (
            f"n,a={authzid},\x01host={host}\x01port={port}\x01"
            f"auth=Bearer {token}\x01\x01"
        ).encode()

    def initial(self) -> bytes:
        return self._blob


class External(Mechanism):
    """RFC 4422 EXTERNAL: the TLS client certificate is the credential.

    The authorization identity is left empty, so the server uses the identity
    the certificate proves (a different one would need a master-user setup).
    """

    name = "EXTERNAL"

    def initial(self) -> bytes:
        return b""


def mechanism(
    name: str, user: str, password: str, *, host: str, port: int
) -> Mechanism:
    """The client side of ``name`` (upper case), or ConfigError if there is none."""
    factories: dict[str, Callable[[], Mechanism]] = {
        "PLAIN": lambda: Plain(user, password),
        "LOGIN": lambda: Login(user, password),
        "CRAM-MD5": lambda: CramMd5(user, password),
        "XOAUTH2": lambda: XOAuth2(user, password),
        "OAUTHBEARER": lambda: OAuthBearer(user, password, host, port),
        "EXTERNAL": External,
    }
    if name == "GSSAPI":
        raise ConfigError(gssapi_refusal())
    if name not in factories:
        raise ConfigError(f"The SASL mechanism {name} is not supported.")
    return factories[name]()


def gssapi_refusal() -> str:
    """Why GSSAPI cannot be used here (no Kerberos library for Python)."""
    if importlib.util.find_spec("gssapi") is None:
        reason = "the Kerberos (gssapi) library is not installed on this system"
    else:
        reason = "this version has no GSSAPI client yet"
    return f"GSSAPI authentication is not available: {reason}; no password was sent."


# -- choosing ------------------------------------------------------------------


@dataclass(frozen=True)
class Offer:
    """What the server said it accepts, in protocol-neutral terms."""

    sasl: frozenset[str]  # mechanism names, upper case
    cleartext: tuple[str, ...]  # USER_PASS / IMAP_LOGIN, best first, if allowed
    logindisabled: bool = False  # IMAP LOGINDISABLED was announced
    apop: bool = False  # POP3 greeting carries an APOP timestamp


def plan(auth: str, offer: Offer, *, client_cert: bool) -> list[str]:
    """Methods to try in order; raises before anything is sent if none fits.

    ``any`` tries the strongest offered first (EXTERNAL with a client
    certificate, then CRAM-MD5) and moves on after a refusal, as fetchmail does,
    ending with one plain-password method; tokens (XOAUTH2, OAUTHBEARER) and
    APOP are used only when configured. A named method is the only one tried.
    """
    wanted = auth.strip().lower() or "any"
    if wanted in UNSUPPORTED:
        raise ConfigError(
            f"The authentication method {auth!r} cannot be used: "
            f"{UNSUPPORTED[wanted]}; no password was sent."
        )
    if wanted == "gssapi":
        raise ConfigError(gssapi_refusal())
    if wanted == "any":
        order = [
            name
            for name, usable in (("EXTERNAL", client_cert), ("CRAM-MD5", True))
            if usable and name in offer.sasl
        ]
        order += _password_methods(offer)[:1]
        if not order:
            raise AuthError(_no_password_way(offer))
        return order
    if wanted in ("password", "user"):
        methods = _password_methods(offer)
        if not methods:
            raise AuthError(_no_password_way(offer))
        return methods[:1]
    if wanted == "apop":
        if not offer.apop:
            raise AuthError(
                "The server's greeting has no APOP timestamp, so APOP cannot be "
                "used; no password was sent."
            )
        return [APOP]
    if wanted in SASL_NAMES:
        name = SASL_NAMES[wanted]
        if name not in offer.sasl:
            raise AuthError(
                f"The server does not offer {name} authentication, which this "
                "mailbox requires; no password was sent."
            )
        if name == "EXTERNAL" and not client_cert:
            raise ConfigError(
                "EXTERNAL authentication needs a client certificate (sslcert); "
                "none is configured."
            )
        return [name]
    raise ConfigError(
        f"The authentication method {auth!r} is unknown; no password was sent."
    )


def _password_methods(offer: Offer) -> list[str]:
    """Ways to send the password itself, best first (SASL PLAIN is one round)."""
    methods: list[str] = []
    if "PLAIN" in offer.sasl:
        methods.append("PLAIN")
    methods.extend(offer.cleartext)
    if "LOGIN" in offer.sasl:
        methods.append("LOGIN")
    return methods


def _no_password_way(offer: Offer) -> str:
    if offer.logindisabled:
        return (
            "The server does not accept a password on this connection "
            "(LOGINDISABLED); no password was sent."
        )
    return "The server offers no authentication method we can use; nothing was sent."


# -- the dialogue ----------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    kind: str  # "continue", "ok" or "fail"
    text: str  # challenge (base64 text) or the final reply's words


class SaslWire(Protocol):
    """What a protocol session provides to :func:`exchange`."""

    def start(self, name: str, initial: str | None) -> None:
        """Send AUTH/AUTHENTICATE, with a base64 initial response if given."""
        ...

    def answer(self, line: str) -> None:
        """Send one base64 response line (masked in the transcript)."""
        ...

    def cancel(self) -> None:
        """Send the ``*`` cancellation."""
        ...

    def read(self) -> Reply: ...

    def refusal(self, text: str) -> EngineError:
        """The error for a refused login (AuthError, or MailboxInUse...)."""
        ...


class CommandSaslWire:
    """The sending half of :class:`SaslWire`, the same in POP3 AUTH (RFC 5034),
    IMAP AUTHENTICATE (RFC 3501, SASL-IR RFC 4959) and SMTP AUTH (RFC 4954): the
    command with the initial response if any (``=`` for an empty one), masked in the
    transcript like every response line, and ``*`` to cancel. A protocol sets
    ``_conn``, gives ``read`` and ``refusal``, and ``_command`` if not ``AUTH``."""

    _conn: Connection

    def _command(self, name: str) -> str:
        return f"AUTH {name}"

    def start(self, name: str, initial: str | None) -> None:
        command = self._command(name)
        if initial is None:
            self._conn.send_line(command)
        else:
            self._conn.send_line(
                f"{command} {initial or '='}", shown=f"{command} {MASK}"
            )

    def answer(self, line: str) -> None:
        self._conn.send_line(line, shown=MASK)

    def cancel(self) -> None:
        self._conn.send_line("*")


def authenticate(
    spec: MailboxSpec,
    offer: Offer,
    wire: SaslWire,
    *,
    native: Mapping[str, Callable[[str, str], None]],
    initial_response: bool,
    note: Callable[[str], None],
) -> None:
    """Log in by each way :func:`plan` allows, in its order, until one works.

    ``native`` holds the protocol's own commands by method name (POP3 USER/PASS
    and APOP, IMAP LOGIN), each called with the user name and password; every
    other method is a SASL exchange over ``wire``. The last refusal is raised.
    """
    methods = plan(spec.server.auth, offer, client_cert=bool(spec.server.tls.cert_file))
    password = spec.password.reveal() if spec.password else ""
    for index, method in enumerate(methods):
        try:
            command = native.get(method)
            if command is not None:
                command(spec.username, password)
            else:
                mech = mechanism(
                    method,
                    spec.username,
                    password,
                    host=spec.server.host,
                    port=spec.server.effective_port,
                )
                exchange(mech, wire, initial_response=initial_response)
            return
        except AuthError as exc:
            if index == len(methods) - 1:
                raise
            note(f"{method} was refused ({exc}); trying the next way")


def exchange(mech: Mechanism, wire: SaslWire, *, initial_response: bool) -> None:
    """Run one authentication; returns on success, raises an EngineError if not.

    ``initial_response``: the protocol lets the first client message ride on the
    command (POP3 AUTH, IMAP with SASL-IR); otherwise it follows an empty
    challenge.
    """
    pending: bytes | None = mech.initial() if mech.client_first else None
    if pending is not None and initial_response:
        wire.start(mech.name, encode(pending))
        pending = None
    else:
        wire.start(mech.name, None)
    while True:
        reply = wire.read()
        if reply.kind == "ok":
            return
        if reply.kind == "fail":
            error = wire.refusal(reply.text)
            if mech.failure_detail and isinstance(error, AuthError):
                error = AuthError(f"{error} Token error: {mech.failure_detail}")
            raise error
        try:
            challenge = decode(reply.text)
            if pending is not None:
                # The client-first message goes after the (empty) go-ahead.
                if challenge:
                    raise SaslError("the server sent data before our first message")
                response, pending = pending, None
            else:
                response = mech.respond(challenge)
        except SaslError as exc:
            _cancel(wire)
            raise ProtocolError(
                f"The server sent an authentication challenge that cannot be "
                f"answered ({exc}); the login was cancelled."
            ) from exc
        wire.answer(encode(response))


def _cancel(wire: SaslWire) -> None:
    """Send ``*`` and read the server's final word, whatever it is.

    The poll ends either way; a server that garbles or withholds its answer
    must not replace the reason (the bad challenge) with a later fault.
    """
    try:
        wire.cancel()
        for _ in range(MAX_STEPS):
            if wire.read().kind != "continue":
                return
    except EngineError:
        return


def decode(text: str) -> bytes:
    """A challenge: strict base64, bounded; ``=`` or nothing means empty."""
    text = text.strip()
    if text in ("", "="):
        return b""
    if len(text) > (MAX_CHALLENGE * 4) // 3 + 4:
        raise SaslError(f"the challenge is longer than {MAX_CHALLENGE} bytes")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SaslError("the challenge is not valid base64") from exc


def encode(data: bytes) -> str:
    """A response line; an empty response is ``=`` only as an initial response."""
    return base64.b64encode(data).decode("ascii")


def _json_error(challenge: bytes) -> str:
    """The status of an OAuth error challenge, bounded and printable."""
    try:
        data = json.loads(challenge.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "unreadable error details"
    if not isinstance(data, dict):
        return "unreadable error details"
    status = str(data.get("status", "?"))[:40]
    scope = str(data.get("scope", ""))[:200]
    text = f"status {status}" + (f", scope {scope}" if scope else "")
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def apop_digest(greeting: str, password: str) -> str:
    """RFC 1939 APOP: MD5 of the greeting's timestamp and the password.

    The timestamp must be a syntactically valid msg-id (``<...@...>``, printable
    ASCII, bounded), as fetchmail checks since 6.3.8: a man in the middle who
    can choose arbitrary challenges can recover MD5-APOP passwords faster.
    """
    start = greeting.find("<")
    end = greeting.find(">", start + 1)
    if start < 0 or end < 0:
        raise AuthError(
            "The server's greeting has no APOP timestamp; no password was sent."
        )
    stamp = greeting[start : end + 1]
    inner = stamp[1:-1]
    local, at, domain = inner.partition("@")
    if (
        len(stamp) > 256
        or not at
        or not local
        or not domain
        or any(not ("!" <= ch <= "~") or ch in "<>@" for ch in local + domain)
    ):
        raise AuthError(
            "The server's APOP timestamp is not a valid message id; no password "
            "was sent."
        )
    return hashlib.md5((stamp + password).encode()).hexdigest()
