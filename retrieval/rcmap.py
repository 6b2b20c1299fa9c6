"""The one mapping between a Mailbox row and the rcfile model (retrieval.rcfile.model).

Columns are the truth for what they hold. ``Mailbox.options`` holds the rest of what
an rcfile said, keyed as the model names it (``{"globals": {}, "server": {}, "user":
{}}``), so that nothing is lost on the way in and out:

* options no column holds (``envelope``, ``antispam``, ``mda``...), when given;
* *hints*: a value a column holds in a coarser form. ``proto apop`` is column
  ``protocol=pop3, auth=apop``; ``service pop3s`` is ``port=995``; ``no keep`` is
  ``keep=False``; ``smtphost a/2525 b`` is ``delivery_host=a, delivery_port=2525``.
  A hint is used only while it still leads to the same columns: change the column
  (in the admin, say) and the hint gives way to what the column says.

Two rcfile "not given" values have no column form of their own and are stored as
the value fetchmail treats the same: no ``proto`` is ``auto``, no ``set daemon`` is
``daemon 0``. A ``user`` left out is the importer's login name. ``logfile``,
``idfile``, ``pidfile`` and ``syslog`` do not apply to a server that records every
poll itself and are not stored (:data:`NOT_APPLICABLE`).

TLS agrees with :func:`retrieval.rcfile.specs._tls`: ``ssl`` is TLS from the start,
no ``ssl`` is STARTTLS (required), ``sslproto ''`` is no TLS at all.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retrieval.engine.wire.numbers import PORT, wire_number_or_none
from retrieval.models import Mailbox, default_poll_interval
from retrieval.rcfile.dump import CLIENT_TIMEOUT, effective_password, no_password
from retrieval.rcfile.model import GlobalOptions, ServerOptions, UserOptions
from retrieval.rcfile.parser import servport
from retrieval.rcfile.specs import _PROTOCOL

if TYPE_CHECKING:
    from collections.abc import Callable

    from retrieval.rcfile.env import Environment

logger = logging.getLogger(__name__)

Values = dict[str, Any]  # "scope.field" -> rcfile value, scope in globals/server/user
SCOPES = {"globals": GlobalOptions, "server": ServerOptions, "user": UserOptions}

# Options that make fetchweb run a program (or write a file) on its own server.
COMMAND_OPTIONS = ("mda", "plugin", "plugout", "preconnect", "postconnect", "bsmtp")
_USER_FIELDS = {f.name for f in dataclasses.fields(UserOptions)}
NOT_APPLICABLE = {
    "logfile": "fetchweb records every poll itself",
    "idfile": "fetchweb keeps the delivered messages in its database",
    "pidfile": "fetchweb runs as a service",
    "syslog": "fetchweb records every poll itself",
}
# Held by columns, MultidropRule rows or encrypted fields, never read from options.
_COLUMN_ONLY = {
    "server.pollname",
    "server.via",
    "server.skip",
    "server.esmtppassword",
    "user.remote",
    "user.password",
    "user.localnames",
    "user.wildcard",
    "user.folders",
    "user.smtpname",
}
MAX_POLL_INTERVAL = 2**31 - 1
MIN_POLL_INTERVAL = 10  # Mailbox.poll_interval's validator


# --- the groups of rcfile options that columns hold -------------------------------


@dataclass(frozen=True)
class _Group:
    fields: tuple[str, ...]
    columns: tuple[str, ...]
    derive: Callable[[Values], tuple[Any, ...]]  # rcfile values -> column values
    plain: Callable[[tuple[Any, ...]], Values]  # column values -> rcfile values


def _derive_protocol(v: Values) -> tuple[Any, ...]:
    proto = v["server.protocol"] or "auto"
    engine = _PROTOCOL.get(proto)
    if engine is None:
        return (None, None)
    column = "pop3" if v["server.sdps"] else engine.value
    auth = "apop" if proto == "apop" else (v["server.auth"] or "any")
    return (column, auth)


def _plain_protocol(c: tuple[Any, ...]) -> Values:
    protocol, auth = c
    if protocol == "pop3" and auth == "apop":
        return {"server.protocol": "apop", "server.sdps": False, "server.auth": None}
    return {
        "server.protocol": protocol,
        "server.sdps": False,
        "server.auth": None if auth == "any" else auth,
    }


# Options that only make sense with TLS on; naming one asks for TLS even where
# the protocol's default is clear text (ETRN, see retrieval.rcfile.specs).
_TLS_WORDS = (
    "user.sslcertck",
    "user.sslproto",
    "user.sslfingerprint",
    "user.sslcertfile",
    "user.sslcertpath",
    "user.sslcert",
    "user.sslcommonname",
)


def _etrn_in_clear(v: Values) -> bool:
    return v.get("server.protocol") == "etrn" and not any(v.get(k) for k in _TLS_WORDS)


def _derive_tls(v: Values) -> tuple[Any, ...]:
    if v["user.ssl"]:
        mode = "implicit"
    elif v["user.sslproto"] == "" or _etrn_in_clear(v):
        mode = "none"
    else:
        mode = "starttls"
    return (mode, v["user.sslcertck"] is not False, v["user.sslcertfile"] or "")


def _plain_tls(c: tuple[Any, ...]) -> Values:
    mode, verify, ca_file = c
    return {
        "user.ssl": True if mode == "implicit" else None,
        "user.sslproto": "" if mode == "none" else None,
        "user.sslcertck": None if verify else False,
        "user.sslcertfile": ca_file or None,
    }


def _derive_port(v: Values) -> tuple[Any, ...]:
    service = v["server.service"]
    return (None if service is None else servport(service),)


def _plain_port(c: tuple[Any, ...]) -> Values:
    return {"server.service": None if c[0] is None else str(c[0])}


def _derive_timeout(v: Values) -> tuple[Any, ...]:
    timeout = v["server.timeout"]
    return (timeout if timeout is not None and timeout > 0 else CLIENT_TIMEOUT,)


def _plain_timeout(c: tuple[Any, ...]) -> Values:
    return {"server.timeout": None if c[0] in (0, CLIENT_TIMEOUT) else c[0]}


def _derive_interval(v: Values) -> tuple[Any, ...]:
    daemon, interval = v["globals.daemon"], v["server.interval"]
    if daemon is None or daemon <= 0:
        return (default_poll_interval(),)
    seconds = daemon * (interval if interval is not None and interval > 0 else 1)
    return (min(max(seconds, MIN_POLL_INTERVAL), MAX_POLL_INTERVAL),)


def _plain_interval(c: tuple[Any, ...]) -> Values:
    return {"globals.daemon": c[0], "server.interval": None}


def delivery_target(entry: str) -> tuple[str, int] | None:
    """An smtphost entry as (host, port); a unix socket path keeps port 25.

    ``host``, ``host/port``, ``[v6]/port``, ``/path``; a port may be a service name
    as in fetchmail. None when the port is not understood.
    """
    if entry.startswith("/"):
        return (entry, 25)
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port_text = rest.removeprefix("/")
    else:
        host, _, port_text = entry.partition("/")
    if not port_text:
        return (host, 25)
    # str.isdigit() accepts "²", which int() then refuses: the engine's parser
    # takes ASCII digits only, and everything else is fetchmail's servport().
    port = wire_number_or_none(port_text, PORT)
    if port is None:
        port = servport(port_text)
    return (host, port) if 0 < port <= 65535 else None


def smtphost_entry(host: str, port: int, *, lmtp: bool) -> str:
    if host.startswith("/"):
        return host
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return shown if port == 25 and not lmtp else f"{shown}/{port}"


def _derive_delivery(v: Values) -> tuple[Any, ...]:
    kind = "lmtp" if v["user.lmtp"] else "smtp"
    if v["user.mda"] is not None:
        kind = "mda"
    hosts = v["user.smtphost"]
    target = delivery_target(hosts[0]) if hosts else ("localhost", 25)
    if target is None:
        return (kind, None, None)
    return (kind, *target)


def _plain_delivery(c: tuple[Any, ...]) -> Values:
    kind, host, port = c
    if kind == "imap":  # no rcfile words: the poll's spec says it (services.specs)
        return {"user.smtphost": [], "user.lmtp": None, "user.mda": None}
    lmtp = kind == "lmtp"
    default = (host, port) == ("localhost", 25) and not lmtp
    return {
        "user.smtphost": [] if default else [smtphost_entry(host, port, lmtp=lmtp)],
        "user.lmtp": True if lmtp else None,
        "user.mda": None,
    }


def _flag_group(name: str) -> _Group:
    return _Group(
        fields=(f"user.{name}",),
        columns=(name,),
        derive=lambda v: (bool(v[f"user.{name}"]),),
        plain=lambda c: {f"user.{name}": True if c[0] else None},
    )


_GROUPS = (
    _Group(
        ("server.protocol", "server.sdps", "server.auth"),
        ("protocol", "auth"),
        _derive_protocol,
        _plain_protocol,
    ),
    _Group(
        ("user.ssl", "user.sslproto", "user.sslcertck", "user.sslcertfile"),
        ("tls_mode", "verify_tls", "ca_file"),
        _derive_tls,
        _plain_tls,
    ),
    _Group(("server.service",), ("port",), _derive_port, _plain_port),
    _Group(("server.timeout",), ("timeout",), _derive_timeout, _plain_timeout),
    _Group(
        ("globals.daemon", "server.interval"),
        ("poll_interval",),
        _derive_interval,
        _plain_interval,
    ),
    _Group(
        ("user.smtphost", "user.lmtp", "user.mda"),
        ("delivery_kind", "delivery_host", "delivery_port"),
        _derive_delivery,
        _plain_delivery,
    ),
    _flag_group("keep"),
    _flag_group("fetchall"),
    _Group(
        ("user.delete_after_days",),
        ("delete_after_days",),
        lambda v: (v["user.delete_after_days"] or None,),
        lambda c: {"user.delete_after_days": c[0]},
    ),
)
_GROUPED = {f for g in _GROUPS for f in g.fields}


# --- option values, flat and typed ---------------------------------------------------


def _kind(annotation: object) -> str:
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    for kind in ("list[str]", "list[int]", "bool", "int", "str"):
        if text.startswith(kind):
            return kind
    return "other"


_KINDS = {
    f"{scope}.{f.name}": _kind(f.type)
    for scope, cls in SCOPES.items()
    for f in dataclasses.fields(cls)
}
_DEFAULTS: Values = {
    f"{scope}.{f.name}": getattr(cls(), f.name)
    for scope, cls in SCOPES.items()
    for f in dataclasses.fields(cls)
}


def _fits(key: str, value: Any) -> bool:
    kind = _KINDS.get(key)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind in ("list[str]", "list[int]"):
        item = str if kind == "list[str]" else int
        return isinstance(value, list) and all(
            isinstance(x, item) and not isinstance(x, bool) for x in value
        )
    return False


def given(key: str, value: Any) -> bool:
    """The rcfile said something: the value differs from the model's "not given"."""
    return value != _DEFAULTS[key]


def flatten(g: GlobalOptions, s: ServerOptions, u: UserOptions) -> Values:
    out: Values = {}
    for scope, obj in (("globals", g), ("server", s), ("user", u)):
        for f in dataclasses.fields(obj):
            out[f"{scope}.{f.name}"] = getattr(obj, f.name)
    return out


def _build(values: Values) -> tuple[GlobalOptions, ServerOptions, UserOptions]:
    parts: dict[str, dict[str, Any]] = {scope: {} for scope in SCOPES}
    for key, value in values.items():
        scope, name = key.split(".", 1)
        parts[scope][name] = value
    return (
        GlobalOptions(**parts["globals"]),
        ServerOptions(**parts["server"]),
        UserOptions(**parts["user"]),
    )


def _stored(mailbox: Mailbox) -> Values:
    """The options JSON as flat values, dropping what no longer fits the model."""
    out: Values = {}
    options = mailbox.options if isinstance(mailbox.options, dict) else {}
    for scope in SCOPES:
        part = options.get(scope)
        if not isinstance(part, dict):
            continue
        for name, value in part.items():
            key = f"{scope}.{name}"
            if key in _COLUMN_ONLY or (scope == "globals" and name in NOT_APPLICABLE):
                continue
            if _fits(key, value):
                out[key] = list(value) if isinstance(value, list) else value
            else:
                logger.warning("mailbox %s: option %s ignored", mailbox.pk, key)
    return out


# --- row -> rcfile -------------------------------------------------------------------


def _etrn_tls(values: Values, tls_mode: str) -> None:
    """Say in the rcfile language what the encryption column says of ETRN, whose
    default without TLS words is clear text: none needs no word, a chosen
    STARTTLS needs one (``sslcertck``) or it would be read as clear text."""
    if not _etrn_in_clear(values):
        return
    if tls_mode == "none":
        values["user.sslproto"] = None
    elif tls_mode == "starttls" and values["user.sslcertck"] is None:
        values["user.sslcertck"] = True


def mailbox_to_rc(
    mailbox: Mailbox, *, with_password: bool = False
) -> tuple[GlobalOptions, ServerOptions, UserOptions]:
    """The row as one user description of one entry, with the globals it runs under.

    Decrypts the passwords only when asked (``crypto.DecryptionError`` if it cannot).
    """
    stored = _stored(mailbox)
    values = flatten(GlobalOptions(), ServerOptions(), UserOptions())
    for group in _GROUPS:
        columns = tuple(getattr(mailbox, c) for c in group.columns)
        plain = group.plain(columns)
        hinted = {f: stored.get(f, plain[f]) for f in group.fields}
        values.update(hinted if group.derive(hinted) == columns else plain)
    values.update({k: v for k, v in stored.items() if k not in _GROUPED})
    _etrn_tls(values, mailbox.tls_mode)
    if values["globals.daemon"] == 0:
        values["globals.daemon"] = None  # how the importer stores "no set daemon"
    values["server.pollname"] = mailbox.name or mailbox.host
    values["server.via"] = mailbox.host if mailbox.name else None
    values["server.skip"] = not mailbox.enabled
    values["user.remote"] = mailbox.username
    values["user.folders"] = list(mailbox.folders or [])
    values["user.smtpname"] = mailbox.recipient or None
    names: list[tuple[str, str | None]] = []
    for rule in mailbox.rules.all():
        if rule.remote == "*" and not rule.local:
            values["user.wildcard"] = True
        else:
            names.append((rule.remote, rule.local or None))
    values["user.localnames"] = names
    if with_password:
        values["user.password"] = mailbox.get_password() or None
        values["server.esmtppassword"] = mailbox.get_esmtp_password() or None
    return _build(values)


def commands_in(s: ServerOptions, u: UserOptions) -> dict[str, str]:
    """The options of an entry that run a program (or write a file) on this server."""
    found = {name: getattr(s, name) for name in ("plugin", "plugout")}
    found.update(
        {name: getattr(u, name) for name in COMMAND_OPTIONS if name in _USER_FIELDS}
    )
    return {name: found[name] for name in COMMAND_OPTIONS if found[name] is not None}


# --- rcfile -> row -------------------------------------------------------------------


class Unmappable(ValueError):
    """An rcfile value that no row can hold (an smtphost port that is no port)."""


@dataclass
class Row:
    """What one user description of one entry becomes in the database."""

    columns: dict[str, Any]
    options: dict[str, dict[str, Any]]
    rules: list[tuple[str, str]]
    password: str | None
    esmtp_password: str | None

    def apply(self, mailbox: Mailbox) -> None:
        """Set the columns and options (not the passwords, not the rules)."""
        for name, value in self.columns.items():
            setattr(mailbox, name, value)
        mailbox.options = self.options


def rc_to_row(
    g: GlobalOptions, s: ServerOptions, u: UserOptions, env: Environment
) -> Row:
    """The reverse of :func:`mailbox_to_rc`. ``env`` gives the login that a missing
    ``user`` stands for and the ``.netrc`` to read a missing password from."""
    for entry in u.smtphost:
        if delivery_target(entry) is None:
            raise Unmappable(f"smtphost {entry!r}: the port is not understood")
    values = flatten(g, s, u)
    if values["server.protocol"] is None:
        values["server.protocol"] = "auto"
    if values["globals.daemon"] is None:
        values["globals.daemon"] = 0
    columns: dict[str, Any] = {}
    options: dict[str, dict[str, Any]] = {scope: {} for scope in SCOPES}

    def keep(key: str) -> None:
        scope, name = key.split(".", 1)
        options[scope][name] = values[key]

    for group in _GROUPS:
        derived = group.derive(values)
        columns.update(zip(group.columns, derived, strict=True))
        plain = group.plain(derived)
        for key in group.fields:
            if values[key] != plain[key] and given(key, values[key]):
                keep(key)
    for key, value in values.items():
        scope, name = key.split(".", 1)
        skipped = scope == "globals" and name in NOT_APPLICABLE
        if key in _GROUPED or key in _COLUMN_ONLY or skipped:
            continue
        if given(key, value):
            keep(key)
    columns["name"] = s.pollname if s.via is not None else ""
    columns["host"] = s.via if s.via is not None else s.pollname
    columns["enabled"] = not s.skip
    columns["username"] = u.remote if u.remote is not None else env.user
    columns["folders"] = list(u.folders)
    columns["recipient"] = u.smtpname or ""
    rules = [(remote, local or "") for remote, local in u.localnames]
    if u.wildcard:
        rules.append(("*", ""))
    password = u.password
    if password is None and not no_password(s):
        password = effective_password(s, u, env)
    return Row(columns, options, rules, password, s.esmtppassword)


__all__ = [
    "COMMAND_OPTIONS",
    "NOT_APPLICABLE",
    "SCOPES",
    "Row",
    "Unmappable",
    "commands_in",
    "delivery_target",
    "flatten",
    "given",
    "mailbox_to_rc",
    "rc_to_row",
    "smtphost_entry",
]
