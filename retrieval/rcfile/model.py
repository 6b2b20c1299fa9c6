"""The parsed configuration: every option fetchmail 6.4 knows, nothing dropped.

Values are kept the way fetchmail keeps them before it fills in its built-in
defaults: ``None`` means "not given" (the default applies), so that the
``defaults`` record can be merged exactly as fetchmail merges it and the exporter
writes back only what the file said. :mod:`retrieval.rcfile.dump` fills in the
defaults the way ``fetchmail --configdump`` shows them.

Numbers are C ``int`` values (``c_atoi``). For ``timeout``, ``interval``,
``envskip`` and ``daemon`` fetchmail treats 0 as "not given", so 0 is stored as
``None``; the other numbers (``limit``, ``warnings``, ...) keep an explicit 0.
Relative paths (``logfile``, ``idfile``, ``pidfile``, ``bsmtp``, ``sslcert``,
``sslkey``, ``sslcertfile``, ``sslcertpath``) are already made absolute against
the rcfile's directory, as fetchmail does while parsing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

AUTH_TYPES = (
    "password",
    "kerberos_v4",
    "kerberos_v5",
    "gssapi",
    "cram-md5",
    "otp",
    "ntlm",
    "msn",
    "ssh",
    "external",
)


@dataclass(slots=True)
class GlobalOptions:
    """``set`` statements."""

    daemon: int | None = None  # poll interval, seconds
    logfile: str | None = None
    idfile: str | None = None
    pidfile: str | None = None
    postmaster: str | None = None
    bouncemail: bool | None = None
    spambounce: bool | None = None
    softbounce: bool | None = None
    properties: str | None = None
    syslog: bool | None = None
    invisible: bool | None = None
    showdots: bool | None = None


@dataclass(slots=True)
class ServerOptions:
    """Options of one poll/skip entry (fetchmail's ``struct hostdata``)."""

    pollname: str = ""
    skip: bool = False
    via: str | None = None
    # auto, pop2, pop3, imap, apop, rpop, etrn or odmr; kpop/sdps are folded into pop3
    protocol: str | None = None
    sdps: bool = False
    service: str | None = None  # as given; ``port N`` and ``service N`` give digits
    interval: int | None = None
    auth: str | None = None  # one of AUTH_TYPES; ``auth any`` is None, as in fetchmail
    timeout: int | None = None
    envelope: str | None = None
    no_envelope: bool = False  # ``no envelope``: envelope is None
    envskip: int | None = None
    qvirtual: str | None = None
    aka: list[str] = field(default_factory=list)
    localdomains: list[str] = field(default_factory=list)
    dns: bool | None = None
    checkalias: bool | None = None
    uidl: bool | None = None
    interface: str | None = None
    monitor: str | None = None
    plugin: str | None = None
    plugout: str | None = None
    principal: str | None = None
    esmtpname: str | None = None
    esmtppassword: str | None = None
    tracepolls: bool | None = None
    badheader: bool | None = None  # True: accept; "bad-header reject" is None (the C 0)


Mapping = tuple[str, str | None]  # (server-side name, local name) or (name, None)


@dataclass(slots=True)
class UserOptions:
    """One user description (fetchmail's ``struct query`` less the server part)."""

    remote: str | None = None  # None: the invoking user's login
    password: str | None = None
    localnames: list[Mapping] = field(default_factory=list)
    wildcard: bool | None = None  # ``*`` among the local names
    folders: list[str] = field(default_factory=list)
    smtphost: list[str] = field(default_factory=list)
    fetchdomains: list[str] = field(default_factory=list)
    smtpaddress: str | None = None
    smtpname: str | None = None
    antispam: list[int] = field(default_factory=list)
    mda: str | None = None
    bsmtp: str | None = None
    lmtp: bool | None = None
    preconnect: str | None = None
    postconnect: str | None = None
    keep: bool | None = None
    flush: bool | None = None
    limitflush: bool | None = None
    fetchall: bool | None = None
    rewrite: bool | None = None
    forcecr: bool | None = None
    stripcr: bool | None = None
    pass8bits: bool | None = None
    dropstatus: bool | None = None
    dropdelivered: bool | None = None
    mimedecode: bool | None = None
    idle: bool | None = None
    ssl: bool | None = None
    sslkey: str | None = None
    sslcert: str | None = None
    sslproto: str | None = None
    sslcertck: bool | None = None
    sslcertfile: str | None = None
    sslcertpath: str | None = None
    sslcommonname: str | None = None
    sslfingerprint: str | None = None
    limit: int | None = None
    warnings: int | None = None
    fetchlimit: int | None = None
    fetchsizelimit: int | None = None
    fastuidl: int | None = None
    batchlimit: int | None = None
    expunge: int | None = None
    properties: str | None = None
    # Ours, not fetchmail's: written as the comment "# fetchweb: delete-after-days
    # N" (see lexer.py), so that fetchmail reads the same file without it.
    delete_after_days: int | None = None


@dataclass(slots=True)
class Server:
    """One entry: server options shared by one or more user descriptions."""

    options: ServerOptions
    users: list[UserOptions]
    line: int = field(default=0, compare=False)  # where the entry starts
    # Extra users of the ``defaults`` record, which fetchmail keeps as an entry
    # of their own (named "defaults"); its --configdump output is broken there.
    orphan: bool = field(default=False, compare=False)

    @property
    def name(self) -> str:
        return self.options.pollname

    @property
    def active(self) -> bool:
        return not self.options.skip


@dataclass(slots=True)
class RcConfig:
    """A whole rcfile, with the ``defaults`` record already merged into the entries."""

    globals: GlobalOptions = field(default_factory=GlobalOptions)
    servers: list[Server] = field(default_factory=list)
    # The ``defaults`` record as written (already merged into ``servers``), kept so
    # that an export shows it again; None when the file had none.
    defaults: Server | None = None
    filename: str = field(default="<rcfile>", compare=False)

    def active_servers(self) -> list[Server]:
        return [s for s in self.servers if s.active]


SERVER_FIELDS = tuple(f.name for f in fields(ServerOptions))
USER_FIELDS = tuple(f.name for f in fields(UserOptions))
