"""Parsed rcfile -> the engine's frozen specs, one :class:`MailboxSpec` per user of
every active (non-``skip``) entry.

What the engine has a field for is mapped; every other option the rcfile set is
kept in ``MailboxSpec.extra`` as ``(name, value)`` so nothing is silently lost
(secrets there are masked: read them from the :class:`RcConfig`). Choices made
where fetchmail and the engine differ:

* no ``ssl``: fetchmail 6.4 uses STARTTLS when the server offers it; the engine
  never downgrades, so the mode is STARTTLS (required), unless ``sslproto ''``
  asked for no TLS at all (mode NONE);
* ``proto auto`` becomes IMAP (fetchmail tries IMAP first), ``apop`` is POP3 with
  auth ``apop``, ``kpop``/``sdps``/``rpop`` are POP3 (noted in ``extra``);
* ``mda``, ``plugin``, ``plugout``, ``preconnect`` and ``postconnect`` are split
  like a shell word list (``shlex``), never run by a shell; one that needs a
  shell stays in ``extra`` and the engine refuses the poll with the reason
  (:mod:`retrieval.engine.unsupported`);
* ``bsmtp`` wins over ``mda``, which wins over ``smtphost``, as in fetchmail;
* ``set daemon`` and ``interval`` say when to poll, not how: whoever schedules
  polls applies them (the command line's daemon mode, the web service's poll
  interval), and the spec does not carry them;
* ``esmtpname`` defaults to the invoking user when ``esmtppassword`` is set;
* a ``timeout`` of zero or less means fetchmail's default, 300 s.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING

from retrieval.engine.spec import (
    DeliveryKind,
    DeliverySpec,
    MailboxSpec,
    MailProtocol,
    MessageOptions,
    MultidropSpec,
    Secret,
    ServerSpec,
    TlsMode,
    TlsSpec,
)
from retrieval.engine.wire.commands import split_command

from .dump import CLIENT_TIMEOUT, effective_password
from .env import Environment
from .parser import servport

if TYPE_CHECKING:
    from .model import GlobalOptions, RcConfig, ServerOptions, UserOptions

_PROTOCOL = {
    "auto": MailProtocol.IMAP,
    "imap": MailProtocol.IMAP,
    "pop3": MailProtocol.POP3,
    "apop": MailProtocol.POP3,
    "rpop": MailProtocol.POP3,
    "pop2": MailProtocol.POP3,
    "etrn": MailProtocol.ETRN,
    "odmr": MailProtocol.ODMR,
}
# fetchmail's sslproto words go to the engine as they are (tls.py reads them),
# except the exact versions, which the engine spells with "=" (its "TLS1.2"
# alone is a minimum); unknown words mean "auto" in fetchmail, so here too.
_SSLPROTO_EXACT = {"tls1.2": "=TLS1.2", "tls1.3": "=TLS1.3"}
_SSLPROTO_WORDS = {
    "auto", "ssl23", "ssl3", "ssl3+", "tls1", "tls1+", "tls1.1", "tls1.1+",
    "tls1.2+", "tls1.3+",
}  # fmt: skip
_SECRET = "(secret, see the parsed configuration)"
_MAPPED_SERVER = {
    "pollname",
    "skip",
    "via",
    "protocol",
    "service",
    "auth",
    "timeout",
    "tracepolls",
    "badheader",
    "uidl",  # the engine always tracks POP3 UIDs itself, as "uidl" asks
    # multidrop (see _multidrop)
    "envelope",
    "no_envelope",
    "envskip",
    "qvirtual",
    "localdomains",
    "aka",
    "dns",
    "checkalias",
    "sdps",  # reported with the protocol
    "interval",  # scheduling, see the module docstring
    "interface",
    "monitor",
    "plugin",
    "plugout",
    "esmtpname",
    "esmtppassword",
}
_MAPPED_GLOBAL = {
    "daemon",  # scheduling, see the module docstring
    "softbounce",
    "invisible",
    "bouncemail",
    "spambounce",
    "postmaster",
    "showdots",
    "properties",
}
_MAPPED_USER = {
    "delete_after_days",
    "remote",
    "password",
    "folders",
    "smtphost",
    "antispam",
    "mda",
    "lmtp",
    "keep",
    "fetchall",
    "flush",
    "limit",
    "fetchlimit",
    "batchlimit",
    "expunge",
    "ssl",
    "sslkey",
    "sslcert",
    "sslcertck",
    "sslcertfile",
    "sslcertpath",
    "sslcommonname",
    "sslfingerprint",
    "smtpname",
    "localnames",
    "wildcard",
    "fetchdomains",
    "smtpaddress",
    "pass8bits",
    "dropstatus",
    "dropdelivered",
    "mimedecode",
    "rewrite",
    "stripcr",
    "forcecr",
    "limitflush",
    "warnings",
    "fetchsizelimit",
    "fastuidl",
    "idle",
    "properties",
    "sslproto",
    "bsmtp",
    "preconnect",
    "postconnect",
}


def _render(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return " ".join(_render(v) for v in value)
    if isinstance(value, tuple):
        a, b = value
        return str(a) if b is None else f"{a}={b}"
    return str(value)


def _items(
    options: GlobalOptions | ServerOptions | UserOptions,
) -> list[tuple[str, object]]:
    # The model's dataclasses have slots (a third of the memory), so no vars().
    return [(f.name, getattr(options, f.name)) for f in fields(options)]


def _extras(
    g: GlobalOptions, s: ServerOptions, u: UserOptions
) -> list[tuple[str, str]]:
    extra: list[tuple[str, str]] = []
    for name, value in _items(s):
        if name in _MAPPED_SERVER or value is None or value == [] or value is False:
            continue
        if name == "no_envelope":
            extra.append(("envelope", "no"))
            continue
        extra.append((name, _SECRET if name == "esmtppassword" else _render(value)))
    for name, value in _items(u):
        if name in _MAPPED_USER or value is None or value == []:
            continue
        extra.append((name, _render(value)))
    for name, value in _items(g):
        if value is not None and name not in _MAPPED_GLOBAL:
            extra.append(("set " + name, _render(value)))
    return extra


def _asks_for_tls(u: UserOptions) -> bool:
    """Did the entry name any TLS option that only makes sense with TLS on?"""
    return bool(
        u.sslcertck
        or u.sslproto
        or u.sslfingerprint
        or u.sslcertfile
        or u.sslcertpath
        or u.sslcert
        or u.sslcommonname
    )


def _tls(
    s: ServerOptions, u: UserOptions, extra: list[tuple[str, str]], protocol: str
) -> TlsSpec:
    if u.ssl:
        mode = TlsMode.IMPLICIT
    elif u.sslproto == "":
        mode = TlsMode.NONE
    elif protocol == "etrn" and not _asks_for_tls(u):
        # ETRN carries no secret, and fetchmail never upgrades it: requiring a
        # verified STARTTLS by default would refuse every stock MTA with a
        # self-signed certificate. Any TLS option named still means TLS.
        mode = TlsMode.NONE
    else:
        mode = TlsMode.STARTTLS
    min_version = None
    if u.sslproto:
        word = u.sslproto.lower()
        min_version = _SSLPROTO_EXACT.get(
            word, word if word in _SSLPROTO_WORDS else None
        )
    return TlsSpec(
        mode=mode,
        verify=u.sslcertck is not False,
        ca_file=u.sslcertfile,
        ca_path=u.sslcertpath,
        cert_file=u.sslcert,
        key_file=u.sslkey,
        fingerprint=u.sslfingerprint,
        min_version=min_version,
        server_name=u.sslcommonname,
    )


def _command(
    name: str, text: str | None, extra: list[tuple[str, str]]
) -> tuple[str, ...]:
    """A command option as argv; one that needs a shell is kept in ``extra``."""
    if text is None:
        return ()
    argv = split_command(text)
    if argv is None:
        extra.append((name, text))
        return ()
    return argv


def _delivery(
    g: GlobalOptions,
    s: ServerOptions,
    u: UserOptions,
    local: str | None,
    extra: list[tuple[str, str]],
    env: Environment,
) -> DeliverySpec:
    hosts = tuple(u.smtphost) or ("localhost",)
    recipients: tuple[str, ...] = ()
    if u.smtpname:
        recipients = (u.smtpname,)
    elif local is not None:
        recipients = (local,)  # qualified with smtpaddress by the sink
    antispam = tuple(u.antispam)
    softbounce = g.softbounce is not False
    argv = _command("mda", u.mda, extra)
    if u.bsmtp is not None:
        kind = DeliveryKind.BSMTP
    elif u.mda is not None:
        kind = DeliveryKind.MDA
    else:
        kind = DeliveryKind.LMTP if u.lmtp else DeliveryKind.SMTP
    password = s.esmtppassword
    return DeliverySpec(
        kind=kind,
        hosts=hosts,
        mda=argv,
        recipients=recipients,
        antispam=antispam,
        softbounce=softbounce,
        smtpaddress=u.smtpaddress,
        invisible=bool(g.invisible),
        pass8bits=bool(u.pass8bits),
        # fetchmail's defaults: bounces on, to the sender; the postmaster is the
        # invoking user ("postmaster" for root). Softbounce (on by default)
        # keeps refused mail, and only a final refusal bounces (policy.py).
        bouncemail=g.bouncemail is not False,
        spambounce=bool(g.spambounce),
        postmaster=g.postmaster
        if g.postmaster is not None
        else ("postmaster" if env.is_root else env.user),
        mda_ignore_stderr=True,  # fetchmail judges an MDA by its exit status
        bsmtp=u.bsmtp or "",
        plugout=_command("plugout", s.plugout, extra),
        esmtp_name=s.esmtpname or (env.user if password is not None else ""),
        esmtp_password=Secret(password) if password is not None else None,
    )


def _message(s: ServerOptions, u: UserOptions) -> MessageOptions:
    """fetchmail's message options, with its defaults (rewrite on, bad headers
    refused) where the rcfile says nothing."""
    return MessageOptions(
        tracepolls=bool(s.tracepolls),
        dropstatus=bool(u.dropstatus),
        dropdelivered=bool(u.dropdelivered),
        mimedecode=bool(u.mimedecode),
        rewrite=u.rewrite is not False,
        badheader_accept=bool(s.badheader),
        stripcr=u.stripcr,
        forcecr=bool(u.forcecr),
    )


def user_spec(
    g: GlobalOptions, s: ServerOptions, u: UserOptions, env: Environment
) -> MailboxSpec:
    """The engine's spec for one user description of one entry."""
    extra = _extras(g, s, u)
    protocol = s.protocol or "auto"
    if protocol in ("auto", "pop2", "rpop") or s.sdps:
        extra.append(("protocol", "sdps" if s.sdps else protocol))
    auth = s.auth or "any"
    if protocol == "apop":
        auth = "apop"
    port = servport(s.service) if s.service is not None else None
    timeout = s.timeout if s.timeout is not None and s.timeout > 0 else CLIENT_TIMEOUT
    tls = _tls(s, u, extra, protocol)
    server_spec = ServerSpec(
        host=s.via or s.pollname,
        protocol=_PROTOCOL[protocol],
        port=port if port is not None and port > 0 else None,
        tls=tls,
        auth=auth,
        timeout=float(timeout),
        plugin=_command("plugin", s.plugin, extra),
    )
    names = u.localnames or [(env.user, None)]
    single = len(names) == 1 and not u.wildcard
    local = (names[0][1] or names[0][0]) if single else None
    fetchdomains = tuple(u.fetchdomains)
    if not fetchdomains and protocol in ("etrn", "odmr"):
        fetchdomains = (env.fqdn(),)  # fetchmail: this host's canonical name
    password = effective_password(s, u, env)
    return MailboxSpec(
        server=server_spec,
        username=u.remote if u.remote is not None else env.user,
        password=Secret(password) if password is not None else None,
        folders=tuple(u.folders),
        keep=bool(u.keep),
        fetchall=bool(u.fetchall),
        flush=bool(u.flush),
        limit=max(u.limit or 0, 0),
        fetchlimit=max(u.fetchlimit or 0, 0),
        batchlimit=max(u.batchlimit or 0, 0),
        expunge=max(u.expunge or 0, 0),
        limitflush=bool(u.limitflush),
        delete_after_days=u.delete_after_days or None,
        warnings=u.warnings if u.warnings is not None else 3600,
        fetchsizelimit=max(
            u.fetchsizelimit if u.fetchsizelimit is not None else 100, 0
        ),
        fastuidl=max(u.fastuidl if u.fastuidl is not None else 4, 0),
        idle=bool(u.idle),
        showdots=bool(g.showdots),
        properties=u.properties or g.properties or "",
        name=s.pollname,
        delivery=_delivery(g, s, u, local, extra, env),
        message=_message(s, u),
        multidrop=None if single else _multidrop(s, u, names),
        fetchdomains=fetchdomains,
        preconnect=_command("preconnect", u.preconnect, extra),
        postconnect=_command("postconnect", u.postconnect, extra),
        interface=s.interface or "",
        monitor=s.monitor or "",
        extra=tuple(extra),
    )


def _multidrop(
    s: ServerOptions, u: UserOptions, names: list[tuple[str, str | None]]
) -> MultidropSpec:
    """Two or more local names, or ``*``: fetchmail's multidrop options.

    ``dns`` is on in fetchmail unless ``no dns`` is said; here it is on only when
    the rcfile says ``dns``: the names looked up come from message headers
    (anyone can write them), and ``aka`` does the same job without a lookup.
    """
    return MultidropSpec(
        names=tuple((server, local or server) for server, local in names),
        wildcard=bool(u.wildcard),
        envelope=None
        if s.no_envelope
        else (s.envelope if s.envelope is not None else "Received"),
        envskip=max(s.envskip or 0, 0),
        qvirtual=s.qvirtual or "",
        localdomains=tuple(s.localdomains),
        aka=tuple(s.aka),
        dns=s.dns is True,
        checkalias=s.checkalias is True,
    )


def to_mailbox_specs(
    config: RcConfig, env: Environment | None = None
) -> list[MailboxSpec]:
    """One spec per user of every active entry, in file order.

    ``env`` supplies what fetchmail takes from the invoking user (the default
    remote and local name, ~/.netrc passwords); importers pass
    ``Environment.fixed(login)``.
    """
    env = env or Environment.current()
    return [
        user_spec(config.globals, server.options, u, env)
        for server in config.servers
        if not server.options.skip
        for u in server.users
    ]
