"""The configuration as ``fetchmail --configdump`` shows it, as JSON-ready values.

Same key names, same order, same filled-in defaults, including fetchmail's own
oddities, so the two can be compared field by field:

* ``auth external`` has no ``auth`` key; ``esmtppassword`` appears only when set;
* ``no tracepolls`` shows ``tracepolls: true`` (fetchmail stores the explicit
  "no" as a non-zero value and prints it as a boolean);
* the first element of each local name is cut after 128 characters of fetchmail's
  escaped form (``USERNAMELEN``);
* ``antispam`` is one space-separated string; numbers below zero show as 0.

Values fetchmail takes from the invoking user or the host come from an
:class:`~retrieval.rcfile.env.Environment`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .env import Environment
from .parser import prependdir

if TYPE_CHECKING:
    from .model import RcConfig, Server, ServerOptions, UserOptions

USERNAMELEN = 128
CLIENT_TIMEOUT = 300
WARNING_INTERVAL = 3600
NO_PASSWORD_AUTH = frozenset(
    {"otp", "kerberos_v4", "kerberos_v5", "gssapi", "ssh", "external"}
)
PROTOCOL_SHOWN = {
    "auto": "auto",
    "pop2": "unknown?!?",  # not compiled into Debian's fetchmail
    "pop3": "POP3",
    "imap": "IMAP",
    "apop": "APOP",
    "rpop": "RPOP",
    "etrn": "ETRN",
    "odmr": "ODMR",
}

_VIS = {
    0x22: b'\\"',
    0x5C: b"\\\\",
    0x07: b"\\a",
    0x08: b"\\b",
    0x0C: b"\\f",
    0x0A: b"\\n",
}
_VIS.update({0x0D: b"\\r", 0x09: b"\\t", 0x0B: b"\\v"})
_UNVIS = {v[1]: k for k, v in _VIS.items()}


def visbuf(raw: bytes) -> bytes:
    """fetchmail's ``visbuf()`` (bytes >= 0x80 are shown as ``\\0xHH``)."""
    out = bytearray()
    for c in raw:
        if c in _VIS:
            out += _VIS[c]
        elif 0x20 <= c < 0x7F:
            out.append(c)
        else:
            out += b"\\0x%02x" % c
    return bytes(out)


def unvis(vis: bytes) -> bytes:
    """Undo :func:`visbuf`; an escape cut short is kept as it stands."""
    out = bytearray()
    i = 0
    n = len(vis)
    while i < n:
        c = vis[i]
        if c == 0x5C and i + 1 < n:
            d = vis[i + 1]
            if d == 0x30 and i + 4 < n and vis[i + 2] == 0x78:
                try:
                    out.append(int(vis[i + 3 : i + 5], 16))
                    i += 5
                    continue
                except ValueError:
                    pass
            if d in _UNVIS:
                out.append(_UNVIS[d])
                i += 2
                continue
        out.append(c)
        i += 1
    return bytes(out)


def _enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _dec(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _shown_localname(name: str) -> str:
    vis = visbuf(_enc(name))
    if len(vis) <= USERNAMELEN:
        return name
    return _dec(unvis(vis[:USERNAMELEN]))


def _num(value: int | None, default: int) -> int:
    if value is None:
        return default
    return max(value, 0)


def _flag(value: bool | None, *, default: bool) -> bool:  # noqa: FBT001
    return default if value is None else value


def no_password(s: ServerOptions) -> bool:
    """fetchmail's ``NO_PASSWORD()``: the server will not ask for a password."""
    return s.auth in NO_PASSWORD_AUTH or s.protocol == "etrn"


def effective_password(
    s: ServerOptions, u: UserOptions, env: Environment
) -> str | None:
    """The password fetchmail would use before prompting: the rcfile's, the
    remote name when none is needed, or ``~/.netrc``'s (active entries only)."""
    if u.password is not None or s.skip:
        return u.password
    remote = u.remote if u.remote is not None else env.user
    if no_password(s):
        return remote
    found = env.netrc_password(s.pollname, remote)
    if found is None and s.via is not None:
        found = env.netrc_password(s.via, remote)
    return found


def _server_dict(server: Server, env: Environment, fqdn: list[str]) -> dict[str, Any]:
    s = server.options
    d: dict[str, Any] = {
        "pollname": s.pollname,
        "active": not s.skip,
        "via": s.via,
        "protocol": PROTOCOL_SHOWN[s.protocol or "auto"],
        "service": s.service,
        "timeout": CLIENT_TIMEOUT
        if s.timeout in (None, -1)
        else max(s.timeout or 0, 0),
        "interval": _num(s.interval, 0),
        "envelope": None
        if s.no_envelope
        else (s.envelope if s.envelope is not None else "Received"),
        "envskip": _num(s.envskip, 0),
        "qvirtual": s.qvirtual,
    }
    if s.auth != "external":
        d["auth"] = s.auth or "any"
    d.update(
        {
            "dns": _flag(s.dns, default=True),
            "uidl": _flag(s.uidl, default=False),
            "aka": list(s.aka),
            "localdomains": list(s.localdomains),
            "interface": s.interface,
            "monitor": s.monitor,
            "plugin": s.plugin,
            "plugout": s.plugout,
            "principal": s.principal,
            "esmtpname": s.esmtpname if s.esmtpname is not None else env.user,
        }
    )
    if s.esmtppassword is not None:
        d["esmtppassword"] = s.esmtppassword
    d["tracepolls"] = s.tracepolls is not None  # an explicit "no" is non-zero in C
    d["badheader"] = bool(s.badheader)
    d["users"] = [_user_dict(s, u, env, fqdn) for u in server.users]
    return d


def _user_dict(
    s: ServerOptions, u: UserOptions, env: Environment, fqdn: list[str]
) -> dict[str, Any]:
    localnames: list[Any] = []
    for name, local in u.localnames or [(env.user, None)]:
        shown = _shown_localname(name)
        localnames.append(shown if local is None else [shown, local])
    if u.wildcard:
        localnames.append("*")
    fetchdomains = list(u.fetchdomains)
    if not fetchdomains and s.protocol in ("etrn", "odmr"):
        if not fqdn:
            fqdn.append(env.fqdn())
        fetchdomains = [fqdn[0]]
    return {
        "remote": u.remote if u.remote is not None else env.user,
        "password": effective_password(s, u, env),
        "localnames": localnames,
        "fetchall": _flag(u.fetchall, default=False),
        "keep": _flag(u.keep, default=False),
        "flush": _flag(u.flush, default=False),
        "limitflush": _flag(u.limitflush, default=False),
        "rewrite": _flag(u.rewrite, default=True),
        "stripcr": _flag(u.stripcr, default=u.mda is not None),
        "forcecr": _flag(u.forcecr, default=False),
        "pass8bits": _flag(u.pass8bits, default=False),
        "dropstatus": _flag(u.dropstatus, default=False),
        "dropdelivered": _flag(u.dropdelivered, default=False),
        "mimedecode": _flag(u.mimedecode, default=False),
        "idle": _flag(u.idle, default=False),
        "mda": u.mda,
        "bsmtp": u.bsmtp,
        "lmtp": bool(u.lmtp),
        "preconnect": u.preconnect,
        "postconnect": u.postconnect,
        "limit": _num(u.limit, 0),
        "warnings": _num(u.warnings, WARNING_INTERVAL),
        "fetchlimit": _num(u.fetchlimit, 0),
        "fetchsizelimit": _num(u.fetchsizelimit, 100),
        "fastuidl": _num(u.fastuidl, 4),
        "batchlimit": _num(u.batchlimit, 0),
        "ssl": _flag(u.ssl, default=False),
        "sslkey": u.sslkey,
        "sslcert": u.sslcert,
        "sslproto": u.sslproto,
        "sslcertck": _flag(u.sslcertck, default=True),
        "sslcertfile": u.sslcertfile,
        "sslcertpath": u.sslcertpath,
        "sslcommonname": u.sslcommonname,
        "sslfingerprint": u.sslfingerprint,
        "expunge": _num(u.expunge, 0),
        "properties": u.properties,
        "smtphunt": list(u.smtphost) or ["localhost"],
        "fetchdomains": fetchdomains,
        "smtpaddress": u.smtpaddress,
        "smtpname": u.smtpname,
        "antispam": " ".join(str(n) for n in u.antispam),
        "mailboxes": list(u.folders),
    }


def effective_logfile(config: RcConfig, env: Environment) -> str | None:
    """fetchmail drops a logfile that does not exist (it never creates one)."""
    logfile = config.globals.logfile
    if (
        logfile is not None
        and env.check_files
        and not (logfile and Path(logfile).exists())
    ):
        return None
    return logfile


def configdump(config: RcConfig, env: Environment | None = None) -> dict[str, Any]:
    """The whole configuration in ``--configdump``'s shape."""
    env = env or Environment.current()
    g = config.globals
    postmaster = g.postmaster
    if postmaster is None:
        postmaster = "postmaster" if env.is_root else env.user
    fqdn: list[str] = []
    return {
        "poll_interval": _num(g.daemon, 0),
        "logfile": effective_logfile(config, env),
        "idfile": g.idfile
        if g.idfile is not None
        else prependdir(".fetchids", env.fmhome),
        "postmaster": postmaster,
        "bouncemail": _flag(g.bouncemail, default=True),
        "spambounce": _flag(g.spambounce, default=False),
        "softbounce": _flag(g.softbounce, default=True),
        "properties": g.properties,
        "invisible": _flag(g.invisible, default=False),
        # ``set no showdots`` stores FLAG_FALSE, non-zero, shown (and acted on) as true
        "showdots": g.showdots is not None,
        "syslog": _flag(g.syslog, default=False),
        "servers": [_server_dict(s, env, fqdn) for s in config.servers],
    }
