"""Configuration -> rcfile text that parses back to the same configuration.

Every string is written double-quoted with fetchmail escapes: printable ASCII
stays as it is, except ``"`` and ``\\`` (written ``\\x22`` and ``\\\\``); every
other byte, newlines included, becomes ``\\xHH``. So a value can never end its
string early, start a comment or a new keyword, or be glued to the next token:
a password such as ``"\\n mda "rm -rf /"`` stays one password.

Paths are written as stored (already absolute when the rcfile had a directory),
so parse the export under a name in the same directory to get the same values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .dump import no_password

if TYPE_CHECKING:
    from .model import (
        GlobalOptions,
        Mapping,
        RcConfig,
        Server,
        ServerOptions,
        UserOptions,
    )


def quote(value: str) -> str:
    """``value`` as a double-quoted rcfile string that decodes back to ``value``."""
    out = ['"']
    for b in value.encode("utf-8", "surrogateescape"):
        if b == 0:
            raise ValueError("rcfile strings cannot contain NUL")
        if b == 0x22:
            out.append("\\x22")
        elif b == 0x5C:
            out.append("\\\\")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    out.append('"')
    return "".join(out)


def _flag(keyword: str, value: bool | None) -> list[str]:  # noqa: FBT001
    if value is None:
        return []
    return [keyword] if value else ["no " + keyword]


def _globals(g: GlobalOptions) -> list[str]:
    lines: list[str] = []
    if g.daemon is not None:
        lines.append(f"set daemon {g.daemon}")
    for name in ("logfile", "idfile", "pidfile", "postmaster", "properties"):
        value = getattr(g, name)
        if value is not None:
            lines.append(f"set {name} {quote(value)}")
    for name in (
        "bouncemail",
        "spambounce",
        "softbounce",
        "syslog",
        "invisible",
        "showdots",
    ):
        for word in _flag(name, getattr(g, name)):
            lines.append(f"set {word}")
    return lines


def _server_options(s: ServerOptions) -> list[str]:
    out: list[str] = []
    if s.via is not None:
        out.append(f"via {quote(s.via)}")
    if s.sdps:
        out.append("proto sdps")
    if s.protocol is not None and not (s.sdps and s.protocol == "pop3"):
        out.append(f"proto {s.protocol}")
    if s.service is not None:
        out.append(f"service {quote(s.service)}")
    if s.auth is not None:
        out.append(f"auth {s.auth}")
    if s.timeout is not None:
        out.append(f"timeout {s.timeout}")
    if s.interval is not None:
        out.append(f"interval {s.interval}")
    if s.envskip is not None:
        out.append(f"envelope {s.envskip} {quote(s.envelope or 'Received')}")
        if s.no_envelope:
            out.append("no envelope")
    elif s.envelope is not None:
        out.append(f"envelope {quote(s.envelope)}")
    elif s.no_envelope:
        out.append("no envelope")
    for name, keyword in (("aka", "aka"), ("localdomains", "localdomains")):
        values = getattr(s, name)
        if values:
            out.append(keyword + " " + " ".join(quote(v) for v in values))
    for name in (
        "qvirtual",
        "interface",
        "monitor",
        "plugin",
        "plugout",
        "principal",
        "esmtpname",
        "esmtppassword",
    ):
        value = getattr(s, name)
        if value is not None:
            out.append(f"{name} {quote(value)}")
    for name in ("dns", "checkalias", "uidl", "tracepolls"):
        out += _flag(name, getattr(s, name))
    if s.badheader:
        out.append("bad-header accept")
    return out


def _mappings(names: list[Mapping], *, wildcard: bool) -> str:
    parts = [quote(a) if b is None else f"{quote(a)}={quote(b)}" for a, b in names]
    if wildcard:
        parts.append(quote("*"))
    return " ".join(parts)


def _user_options(u: UserOptions, *, with_names: bool) -> list[str]:
    out: list[str] = []
    if with_names and (u.localnames or u.wildcard):
        out.append(f"is {_mappings(u.localnames, wildcard=bool(u.wildcard))} here")
    if u.password is not None:
        out.append(f"password {quote(u.password)}")
    for name, keyword in (
        ("folders", "folder"),
        ("smtphost", "smtphost"),
        ("fetchdomains", "fetchdomains"),
    ):
        values = getattr(u, name)
        if values:
            out.append(keyword + " " + " ".join(quote(v) for v in values))
    if u.antispam:
        out.append("antispam " + " ".join(str(n) for n in u.antispam))
    for name in (
        "smtpaddress",
        "smtpname",
        "mda",
        "bsmtp",
        "preconnect",
        "postconnect",
        "sslkey",
        "sslcert",
        "sslproto",
        "sslcertfile",
        "sslcertpath",
        "sslcommonname",
        "sslfingerprint",
        "properties",
    ):
        value = getattr(u, name)
        if value is not None:
            out.append(f"{name} {quote(value)}")
    if u.lmtp:
        out.append("lmtp")
    for name in (
        "keep",
        "flush",
        "limitflush",
        "fetchall",
        "rewrite",
        "forcecr",
        "stripcr",
        "pass8bits",
        "dropstatus",
        "dropdelivered",
        "mimedecode",
        "idle",
        "ssl",
        "sslcertck",
    ):
        out += _flag(name, getattr(u, name))
    for name in (
        "limit",
        "warnings",
        "fetchlimit",
        "fetchsizelimit",
        "fastuidl",
        "batchlimit",
        "expunge",
    ):
        value = getattr(u, name)
        if value is not None:
            out.append(f"{name} {value}")
    if u.delete_after_days is not None:
        # A comment to fetchmail (it has no such option); read back by our lexer.
        out.append(f"# fetchweb: delete-after-days {u.delete_after_days}")
    return out


def _user(u: UserOptions, *, implicit: bool) -> list[str]:
    if implicit:
        return _user_options(u, with_names=True)
    if u.remote is not None:
        return [f"user {quote(u.remote)} there", *_user_options(u, with_names=True)]
    if u.localnames or u.wildcard:
        head = f"user {_mappings(u.localnames, wildcard=bool(u.wildcard))} here"
        return [head, *_user_options(u, with_names=False)]
    raise ValueError(
        "a user without a remote name or local names cannot be written explicitly"
    )


# Where a password was left out of an export: fetchmail ignores the comment (and
# asks for the password, or reads ~/.netrc); an import keeps the stored one.
PASSWORD_PLACEHOLDER = (
    '# password "..." -- not exported: fetchweb keeps it encrypted; write it here'
)


def _entry(server: Server, head: str, *, password_note: bool = False) -> str:
    lines = [head]
    lines += ["    " + opt for opt in _server_options(server.options)]
    implicit = len(server.users) == 1 and server.users[0].remote is None
    note = password_note and not no_password(server.options)
    for u in server.users:
        words = _user(u, implicit=implicit)
        if words:
            lines.append("    " + words[0])
            if note and u.password is None:
                lines.append("        " + PASSWORD_PLACEHOLDER)
            lines += ["        " + w for w in words[1:]]
    return "\n".join(lines)


def export(config: RcConfig, *, password_note: bool = False) -> str:
    """The configuration as rcfile text; ``parse_text(export(c), c.filename) == c``.

    ``password_note``: a placeholder comment for each user without a password
    whose server asks for one (the passwords were left out)."""
    parts: list[str] = ["# written by fetchweb"]
    parts += _globals(config.globals)
    if config.defaults is not None:
        d = config.defaults
        head = "skip " + quote("defaults") if d.options.skip else "defaults"
        parts.append(_entry(d, head))
    for server in config.servers:
        keyword = "skip" if server.options.skip else "poll"
        head = f"{keyword} {quote(server.options.pollname)}"
        parts.append(_entry(server, head, password_note=password_note))
    return "\n".join(parts) + "\n"
