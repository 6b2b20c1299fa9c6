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


class MailProtocol(StrEnum):
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
    BSMTP = "bsmtp"  # append to a batch SMTP file (see retrieval.engine.deliver.bsmtp)
    IMAP = "imap"  # APPEND into a remote IMAP mailbox (see retrieval.engine.append)


DEFAULT_PORTS: dict[tuple[MailProtocol, TlsMode], int] = {
    (MailProtocol.POP3, TlsMode.IMPLICIT): 995,
    (MailProtocol.POP3, TlsMode.STARTTLS): 110,
    (MailProtocol.POP3, TlsMode.NONE): 110,
    (MailProtocol.IMAP, TlsMode.IMPLICIT): 993,
    (MailProtocol.IMAP, TlsMode.STARTTLS): 143,
    (MailProtocol.IMAP, TlsMode.NONE): 143,
    (MailProtocol.ETRN, TlsMode.NONE): 25,
    (MailProtocol.ETRN, TlsMode.IMPLICIT): 465,  # fetchmail's "smtps"
    (MailProtocol.ETRN, TlsMode.STARTTLS): 25,
    (MailProtocol.ODMR, TlsMode.NONE): 366,
    (MailProtocol.ODMR, TlsMode.STARTTLS): 366,
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
    # "TLS1.2"/"TLS1.3" (minimums), "=TLS1.2"/"=TLS1.3" (exactly), or a fetchmail
    # sslproto word (tls1.2+, auto, ...); None means TLS 1.2 or newer.
    min_version: str | None = None
    server_name: str | None = None  # name to verify when it differs from the host


@dataclass(frozen=True)
class ServerSpec:
    host: str
    protocol: MailProtocol = MailProtocol.IMAP
    port: int | None = None  # None: the protocol's default for the TLS mode
    tls: TlsSpec = field(default_factory=TlsSpec)
    auth: str = "any"  # any, password, plain, login, cram-md5, apop, xoauth2, ...
    timeout: float = 300.0  # seconds, every single wait on the network
    via: str | None = None  # connect here instead of ``host`` (name still verified)
    # fetchmail's plugin: argv of a program whose stdin/stdout is the connection
    # (%h host, %p port); never a shell line. See retrieval.engine.wire.tunnel.
    plugin: tuple[str, ...] = ()
    # Connect only to globally routable addresses. Checked on the very addresses
    # connected to, so a name that resolves differently between a policy check and
    # the connect (DNS rebinding) still cannot reach a private network.
    public_only: bool = False
    # plugin, preconnect, postconnect get our whole environment (True: the
    # command line, as fetchmail) or only PATH, HOME, LANG, LC_*... (False: the
    # service, whose environment holds its secrets); wire/commands.py decides.
    inherit_env: bool = False

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return DEFAULT_PORTS.get((self.protocol, self.tls.mode), 0)


@dataclass(frozen=True)
class AppendTarget:
    """Delivery kind IMAP: each message is APPENDed to ``folder`` of this account
    (a Gmail or Microsoft 365 mailbox, say), logged in as a mailbox is."""

    server: ServerSpec  # protocol IMAP; auth "xoauth2"/"oauthbearer" for tokens
    username: str
    password: Secret | None = None  # or the access token
    folder: str = "INBOX"
    flags: tuple[str, ...] = ()  # system flags such as \\Seen, or keywords
    create_folder: bool = False  # CREATE the folder when the server says TRYCREATE


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
    # Domain for bare recipient names (fetchmail smtpaddress); None: the listener's
    # host name (an address literal for an IP), "localhost" for a unix socket.
    smtpaddress: str | None = None
    invisible: bool = False  # no Received header; EHLO with the mail server's name
    pass8bits: bool = False  # always declare BODY=8BITMIME to a listener offering it
    # Bounces (RFC 3464 reports) when a refused message is deleted; never on 553
    # or antispam codes unless spambounce. Off by default: no backscatter.
    bouncemail: bool = False  # to the envelope sender; else to ``postmaster``
    spambounce: bool = False
    postmaster: str = ""  # "" discards what would go to the postmaster
    # An MDA that exits 0 but wrote to stderr: failed (getmail, reliability.md)
    # unless this is set (fetchmail counts the exit status only).
    mda_ignore_stderr: bool = False
    bsmtp: str = ""  # kind BSMTP: the batch file, "-" for standard output
    plugout: tuple[str, ...] = ()  # argv speaking to the listener, as ``plugin``
    inherit_env: bool = False  # mda and plugout: as ``ServerSpec.inherit_env``
    # SMTP AUTH to the listener (esmtpname/esmtppassword), only with a password;
    # see retrieval.engine.deliver.listener_auth for STARTTLS and the certificate check:
    # ``listener_verify`` None means "checked unless the listener is on this
    # host"; ``listener_ca_file`` replaces the system CAs for that check.
    esmtp_name: str = ""
    esmtp_password: Secret | None = None
    # "" logs in with the password, by fetchmail's order of mechanisms;
    # "xoauth2" or "oauthbearer": ``esmtp_password`` is an OAuth2 access token,
    # sent with that mechanism only (never a password mechanism instead).
    esmtp_auth: str = ""
    listener_verify: bool | None = None
    listener_ca_file: str | None = None
    mailbox: AppendTarget | None = None  # kind IMAP: where messages are APPENDed


@dataclass(frozen=True)
class MessageOptions:
    """How messages are edited on their way (fetchmail's per-user message options).

    The defaults change nothing: bytes reach the listener as the server sent them
    plus the trace header. All edits stream; none loads a message into memory.
    """

    tracepolls: bool = False  # name the poll, account and folder in Received
    dropstatus: bool = False  # drop Status: and X-Mozilla-Status: fields
    dropdelivered: bool = False  # drop Delivered-To: fields
    mimedecode: bool = False  # quoted-printable text parts to 8bit, RFC 2047 words
    rewrite: bool = False  # qualify bare addresses in From/To/Cc/... with the server
    badheader_accept: bool = True  # False: refuse a header line without a colon
    stripcr: bool | None = None  # MDA only: None = strip unless forcecr (fetchmail)
    forcecr: bool = False  # MDA only: CRLF line endings (SMTP always has them)


@dataclass(frozen=True)
class MultidropSpec:
    """A mailbox holding the mail of many people (fetchmail's multidrop mode).

    Each message's envelope recipients are found in its header (see
    :mod:`retrieval.engine.deliver.multidrop`) and mapped to local users; a message
    nobody matches goes to ``DeliverySpec.postmaster`` (or, when that is
    empty, to the mailbox's own recipient). Nothing here is ever resolved in
    the DNS unless ``dns`` says so.
    """

    # (name or address on the server, local name); a name maps case-blind.
    names: tuple[tuple[str, str], ...] = ()
    wildcard: bool = False  # "*": a local part nobody mapped passes as it is
    envelope: str | None = "Received"  # None: guess from To/Cc/Bcc ("no envelope")
    envskip: int = 0  # skip this many envelope headers first
    qvirtual: str = ""  # prefix stripped from every address (qmail virtual domains)
    localdomains: tuple[str, ...] = ()  # whole addresses here pass through
    aka: tuple[str, ...] = ()  # other names of the mail server (suffix match)
    dns: bool = False  # resolve unknown domains to compare with the server name
    checkalias: bool = False  # with dns: also compare their IP addresses
    # One Message-ID reaches each recipient once per poll, whatever the copies.
    suppress_duplicates: bool = True


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
    limitflush: bool = False  # delete messages over ``limit`` without fetching them
    # With ``keep``: delete a message from the server once this many days have
    # passed since the ledger recorded its delivery (fetchmail has no such option);
    # None = keep for ever. Without keep every message goes after delivery anyway.
    delete_after_days: int | None = None
    warnings: int = 3600  # seconds between oversize notices (for the notifier)
    fetchsizelimit: int = 100  # IMAP sizes asked per command; 0 = one command
    # POP3 with keep: find the first new message by binary search with UIDL n in
    # N-1 of N polls (fetchmail's fastuidl); ``poll_number`` says which poll this
    # is (0, as for a one-shot run, always lists everything).
    fastuidl: int = 4
    poll_number: int = 0
    # IMAP IDLE (one folder): after fetching, wait for new mail and fetch again;
    # ``idle_rounds`` IDLE waits at most (0 = until poll()'s ``stop`` says so),
    # each re-issued after ``idle_reissue`` seconds (servers drop idle clients).
    idle: bool = False
    idle_rounds: int = 0
    idle_reissue: float = 29 * 60
    showdots: bool = False  # a progress line per message in the transcript
    properties: str = ""  # opaque text for other tools, copied into the report
    max_message_bytes: int = 512 * 1024 * 1024  # hard cap against hostile servers
    name: str = ""  # label for the transcript and the trace header ("poll NAME")
    delivery: DeliverySpec = field(default_factory=DeliverySpec)
    message: MessageOptions = field(default_factory=MessageOptions)
    multidrop: MultidropSpec | None = None  # None: every message to ``recipients``
    # ETRN / ODMR: the domains whose queued mail the server should send.
    fetchdomains: tuple[str, ...] = ()
    # Programs run before and after the session (fetchmail's preconnect and
    # postconnect), as argv; see retrieval.engine.hooks.
    preconnect: tuple[str, ...] = ()
    postconnect: tuple[str, ...] = ()
    # Dial-up era link checks (see retrieval.engine.wire.link): poll only while the
    # interface "IF/ADDRESS[/MASK]" is up with that address; skip the poll when
    # the ``monitor`` interface saw no traffic since the previous poll.
    interface: str = ""
    monitor: str = ""
    # Options the engine does not act on yet, kept so that nothing a user
    # configured is silently lost; the report lists them.
    extra: tuple[tuple[str, str], ...] = ()

    def secrets(self) -> list[str]:
        """What no transcript may show: the password and the listener's SMTP AUTH
        password. With ``auth ssh`` or ``external`` no password is sent, and the
        "password" is the remote user name (fetchmail's placeholder), which is
        no secret: withholding every line that names the user would hide the
        greeting and the whole login from the person reading the run."""
        target = self.delivery.mailbox
        others = (self.delivery.esmtp_password, target.password if target else None)
        found = [s.reveal() for s in others if s]
        if self.password and self.server.auth not in ("ssh", "external"):
            found.append(self.password.reveal())
        return found
