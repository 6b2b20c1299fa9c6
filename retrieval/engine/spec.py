"""What one poll is asked to do: frozen values, built by the Django side or the rcfile.

The engine never reads a database or a settings module; everything it needs for a
poll arrives here. Secrets travel wrapped in :class:`Secret` so that a ``repr`` of a
spec, a traceback or a log line never shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Secret:
    """A password or token whose text is shown only when asked for by name."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class Protocol(StrEnum):
    POP3 = "pop3"
    IMAP = "imap"
    ETRN = "etrn"
    ODMR = "odmr"


class TlsMode(StrEnum):
    IMPLICIT = "implicit"  # TLS from the first byte (POP3S 995, IMAPS 993)
    STARTTLS = "starttls"  # mandatory upgrade (STLS / STARTTLS) before any secret
    NONE = "none"  # cleartext: an explicit, visible choice


class DeliveryKind(StrEnum):
    SMTP = "smtp"
    LMTP = "lmtp"
    MDA = "mda"


DEFAULT_PORTS: dict[tuple[Protocol, TlsMode], int] = {
    (Protocol.POP3, TlsMode.IMPLICIT): 995,
    (Protocol.POP3, TlsMode.STARTTLS): 110,
    (Protocol.POP3, TlsMode.NONE): 110,
    (Protocol.IMAP, TlsMode.IMPLICIT): 993,
    (Protocol.IMAP, TlsMode.STARTTLS): 143,
    (Protocol.IMAP, TlsMode.NONE): 143,
    (Protocol.ETRN, TlsMode.NONE): 25,
    (Protocol.ETRN, TlsMode.STARTTLS): 25,
    (Protocol.ODMR, TlsMode.NONE): 366,
    (Protocol.ODMR, TlsMode.STARTTLS): 366,
}


@dataclass(frozen=True)
class TlsSpec:
    mode: TlsMode = TlsMode.IMPLICIT
    verify: bool = True  # fetchmail's sslcertck; off only by explicit choice
    ca_file: str | None = None  # sslcertfile: a private CA bundle
    ca_path: str | None = None  # sslcertpath: a directory of hashed CA files
    cert_file: str | None = None  # sslcert: client certificate
    key_file: str | None = None  # sslkey
    fingerprint: str | None = None  # sslfingerprint: MD5 colon form or SHA-256 hex
    min_version: str | None = None  # "TLS1.2", "TLS1.3"; None means the default (1.2)
    server_name: str | None = None  # name to verify when it differs from the host


@dataclass(frozen=True)
class ServerSpec:
    host: str
    protocol: Protocol = Protocol.IMAP
    port: int | None = None  # None: the protocol's default for the TLS mode
    tls: TlsSpec = field(default_factory=TlsSpec)
    auth: str = "any"  # any, password, plain, login, cram-md5, apop, xoauth2, ...
    timeout: float = 300.0  # seconds, every single wait on the network
    via: str | None = None  # connect here instead of ``host`` (name still verified)

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return DEFAULT_PORTS.get((self.protocol, self.tls.mode), 0)


@dataclass(frozen=True)
class DeliverySpec:
    """Where accepted mail goes: one SMTP/LMTP listener list, or an MDA command."""

    kind: DeliveryKind = DeliveryKind.SMTP
    # "host", "host/port", "[v6]/port", or an absolute path for an LMTP unix socket,
    # tried in order as fetchmail's smtphost list is.
    hosts: tuple[str, ...] = ("localhost",)
    port: int = 25  # used when an entry names no port (LMTP has no default: 24)
    mda: tuple[str, ...] = ()  # argv with %T / %F placeholders; never a shell line
    recipients: tuple[str, ...] = ()  # envelope recipients; empty = smtpname/local user
    helo_name: str | None = None  # smtpname's host part / EHLO argument
    timeout: float = 300.0
    # Codes that mean "refused as spam": delete without bounce (fetchmail antispam).
    antispam: tuple[int, ...] = ()
    softbounce: bool = True  # keep messages the listener refused permanently


@dataclass(frozen=True)
class MailboxSpec:
    """One remote account and what to do with its messages."""

    server: ServerSpec
    username: str
    password: Secret | None = None
    folders: tuple[str, ...] = ()  # IMAP only; empty means INBOX
    keep: bool = False  # leave messages on the server after delivery
    fetchall: bool = False  # also fetch messages seen before
    flush: bool = False  # delete old (seen) messages before fetching
    limit: int = 0  # skip messages larger than this many bytes; 0 = no limit
    fetchlimit: int = 0  # at most this many messages per poll; 0 = no limit
    batchlimit: int = 0  # at most this many messages per listener connection
    expunge: int = 0  # POP3: QUIT and reconnect every N deletions; IMAP: every N
    max_message_bytes: int = 512 * 1024 * 1024  # hard cap against hostile servers
    name: str = ""  # label for the transcript and the trace header ("poll NAME")
    delivery: DeliverySpec = field(default_factory=DeliverySpec)
    # Options the engine does not act on yet, kept so that nothing a user
    # configured is silently lost; the report lists them.
    extra: tuple[tuple[str, str], ...] = ()
