"""The rcfile grammar (fetchmail 6.4's ``rcfile_y.y``) and the load-time work of
``load_params()``: merging the ``defaults`` record and the checks that make
fetchmail exit with status 5.

The grammar is LALR(1) in fetchmail; this is a hand-written recursive descent
parser that accepts exactly the same token sequences.

Memory stays linear and small (issue 11, item 9). A 10.7 MB file once took 2.9 GB:
every user description deep-copied its entry's server options (so an ``aka`` or
``localdomains`` list of N names times M users cost N*M) and the ``defaults``
record's lists were deep-copied into every entry. Now a record shares its entry's
options (the grammar forbids server options after the first user, so they cannot
change) and merged values are shared, not copied: nothing mutates a parsed
configuration. The lexer yields tokens lazily and the parser keeps a window of a
few. On top of that the input is bounded (``MAX_INPUT_BYTES``, ``MAX_ENTRIES``,
``MAX_LIST_ITEMS``, and ``MAX_TOKEN_BYTES`` in the lexer) and refused with
``FILE:LINE: message``.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import RcfileError
from .lexer import MAX_TOKEN_BYTES, Token, iter_tokens
from .model import (
    SERVER_FIELDS,
    USER_FIELDS,
    GlobalOptions,
    RcConfig,
    Server,
    ServerOptions,
    UserOptions,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sized

# The bounds of an rcfile. A large real one (hundreds of accounts) is tens of
# kilobytes; these leave ample room and keep a hostile upload cheap to refuse.
MAX_INPUT_BYTES = 1024 * 1024  # bytes of input
MAX_ENTRIES = 10_000  # user descriptions (mailboxes) in one file
MAX_LIST_ITEMS = 1_000  # names in one list option (aka, folder, smtphost, is ...)

SERVER_FLAGS = {
    "UIDL": "uidl",
    "CHECKALIAS": "checkalias",
    "DNS": "dns",
    "TRACEPOLLS": "tracepolls",
}
SERVER_NEGATABLE = {*SERVER_FLAGS, "ENVELOPE"}
SERVER_STRINGS = {
    "VIA": "via",
    "PRINCIPAL": "principal",
    "ESMTPNAME": "esmtpname",
    "ESMTPPASSWORD": "esmtppassword",
    "QVIRTUAL": "qvirtual",
    "MONITOR": "monitor",
    "PLUGIN": "plugin",
    "PLUGOUT": "plugout",
}
SERVER_START = {
    *SERVER_FLAGS,
    *SERVER_STRINGS,
    "AKA",
    "LOCALDOMAINS",
    "PROTOCOL",
    "SERVICE",
    "PORT",
    "INTERVAL",
    "AUTHENTICATE",
    "TIMEOUT",
    "ENVELOPE",
    "INTERFACE",
    "BADHEADER",
}

USER_FLAGS = {
    "KEEP": "keep",
    "FLUSH": "flush",
    "LIMITFLUSH": "limitflush",
    "FETCHALL": "fetchall",
    "REWRITE": "rewrite",
    "FORCECR": "forcecr",
    "STRIPCR": "stripcr",
    "PASS8BITS": "pass8bits",
    "DROPSTATUS": "dropstatus",
    "DROPDELIVERED": "dropdelivered",
    "MIMEDECODE": "mimedecode",
    "IDLE": "idle",
    "SSL": "ssl",
    "SSLCERTCK": "sslcertck",
}
USER_STRINGS = {
    "PASSWORD": "password",
    "SMTPADDRESS": "smtpaddress",
    "SMTPNAME": "smtpname",
    "MDA": "mda",
    "PRECONNECT": "preconnect",
    "POSTCONNECT": "postconnect",
    "SSLPROTO": "sslproto",
    "SSLCOMMONNAME": "sslcommonname",
    "SSLFINGERPRINT": "sslfingerprint",
    "PROPERTIES": "properties",
}
USER_PATHS = {
    "BSMTP": "bsmtp",
    "SSLKEY": "sslkey",
    "SSLCERT": "sslcert",
    "SSLCERTFILE": "sslcertfile",
    "SSLCERTPATH": "sslcertpath",
}
USER_NUMBERS = {
    "LIMIT": "limit",
    "WARNINGS": "warnings",
    "FETCHLIMIT": "fetchlimit",
    "FETCHSIZELIMIT": "fetchsizelimit",
    "FASTUIDL": "fastuidl",
    "BATCHLIMIT": "batchlimit",
    "EXPUNGE": "expunge",
}
USER_LISTS = {
    "FOLDER": "folders",
    "SMTPHOST": "smtphost",
    "FETCHDOMAINS": "fetchdomains",
}
USER_START = {
    *USER_FLAGS,
    *USER_STRINGS,
    *USER_PATHS,
    *USER_NUMBERS,
    *USER_LISTS,
    "TO",
    "IS",
    "SPAMRESPONSE",
    "LMTP",
}
USER_NEGATABLE = set(USER_FLAGS)

GLOBAL_FLAGS = {
    "BOUNCEMAIL": "bouncemail",
    "SPAMBOUNCE": "spambounce",
    "SOFTBOUNCE": "softbounce",
    "SYSLOG": "syslog",
    "INVISIBLE": "invisible",
    "SHOWDOTS": "showdots",
}
GLOBAL_PATHS = {"LOGFILE": "logfile", "IDFILE": "idfile", "PIDFILE": "pidfile"}
GLOBAL_STRINGS = {"POSTMASTER": "postmaster", "PROPERTIES": "properties"}
STATEMENT_START = {"SET", "POLL", "SKIP", "DEFAULTS", "EOF"}

KPOP_PORT = "kpop"


def rcfile_dir(filename: str) -> str:
    """The directory fetchmail prepends to relative paths (``load_params``)."""
    p = filename.rfind("/")
    if 0 <= p < 1024:
        return filename[:p] or "/"
    return ""


def prependdir(path: str, directory: str) -> str:
    if not path or path.startswith("/") or path == "-" or not directory:
        return path
    if directory.endswith("/"):
        return directory + path
    return directory + "/" + path


def servport(service: str) -> int:
    """fetchmail's ``servport()``: a port number, or -1 when there is none."""
    text = service.lstrip(" \t\n\v\f\r")
    body = text
    if body[:1] in ("+", "-"):
        body = body[1:]
    digits = len(body) - len(body.lstrip("0123456789"))
    rest = body[digits:]
    numeric = digits > 0 and rest.strip(" \t\n\v\f\r") == "" and rest.isascii()
    if not digits:
        # strtoul() read nothing: the whole string is left over
        numeric = service.strip(" \t\n\v\f\r") == "" and service.isascii()
    if numeric:
        value = int(body[:digits]) if digits else 0
        if value >= 2**64:
            numeric = False  # ERANGE: resolved as a name
        else:
            if text.startswith("-") and value:
                value = 2**64 - value
            return value if 0 < value <= 65535 else -1
    if service == KPOP_PORT:
        return 1109
    try:
        infos = socket.getaddrinfo(
            None, service, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP
        )
    except (OSError, UnicodeError, ValueError):
        return -1
    for info in infos:
        return int(info[4][1])
    return -1


def _inet_aton_ok(text: str) -> bool:
    try:
        socket.inet_aton(text)
    except (OSError, UnicodeError, ValueError):
        return False
    return True


@dataclass
class _Record:
    server: ServerOptions
    user: UserOptions
    lead: bool
    line: int
    orphan: bool = False


class _TokenWindow:
    """The lexer's tokens by index, keeping only the last few in memory.

    The parser moves forward, looks one token ahead and steps back by at most one
    (``mapping_list``, ``userdef``), so a window of a handful of tokens is enough.
    Past the end it keeps answering the EOF token.
    """

    KEEP = 8

    def __init__(self, tokens: Iterator[Token]) -> None:
        self._source = tokens
        self._buffer: list[Token] = []
        self._first = 0  # index of self._buffer[0]
        self._done = False

    def __getitem__(self, index: int) -> Token:
        while not self._done and index >= self._first + len(self._buffer):
            token = next(self._source, None)
            if token is None:
                self._done = True
                break
            self._buffer.append(token)
            if len(self._buffer) > 2 * self.KEEP:
                drop = len(self._buffer) - self.KEEP
                del self._buffer[:drop]
                self._first += drop
        offset = index - self._first
        if offset < 0:  # pragma: no cover - the parser never looks that far back
            raise IndexError(index)
        return self._buffer[min(offset, len(self._buffer) - 1)]


class _Parser:
    def __init__(self, tokens: Iterator[Token], filename: str) -> None:
        self.tokens = _TokenWindow(self._directives(tokens))
        self.i = 0
        self.filename = filename
        self.dir = rcfile_dir(filename)
        self.globals = GlobalOptions()
        self.records: list[_Record] = []
        self.server = ServerOptions()
        self.user = UserOptions()
        self.trailer = False
        self.entry_line = 0
        self.user_line = 0  # where the current user description starts

    def _directives(self, tokens: Iterator[Token]) -> Iterator[Token]:
        """Our comment directives out of the grammar's way (fetchmail skips them).

        ``# fetchweb: delete-after-days N`` belongs to the user description being
        read when the parser reaches the comment: the one whose options it
        follows (as the exporter writes it), or, before a ``user``, the next one
        (the parser starts that user's options before reading its name).
        """
        for token in tokens:
            if token.kind == "DELETE_AFTER_DAYS":
                assert isinstance(token.value, int)
                self.user.delete_after_days = token.value
            else:
                yield token

    # -- token helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.tokens[self.i + k]

    def error(self, message: str, tok: Token | None = None) -> RcfileError:
        t = tok or self.tok
        if t.kind == "EOF":
            return RcfileError(
                self.filename, t.line, f"{message} at end of input", column=t.column
            )
        return RcfileError(
            self.filename, t.line, message, column=t.column, token=t.shown()
        )

    def expect(self, kind: str, what: str) -> Token:
        t = self.tok
        if t.kind != kind:
            raise self.error(f"syntax error: expected {what}")
        self.i += 1
        return t

    def string(self, what: str = "a string") -> str:
        value = self.expect("STRING", what).value
        assert isinstance(value, str)
        return value

    def number(self) -> int:
        value = self.expect("NUMBER", "a number").value
        assert isinstance(value, int)
        return value

    def strings(self) -> list[str]:
        out = [self.string()]
        while self.tok.kind == "STRING":
            out.append(self.string())
        return out

    def extend(self, target: list[str], where: Token) -> None:
        """Append the strings that follow to a list option, within MAX_LIST_ITEMS."""
        target.extend(self.strings())
        self.check_list(target, where)

    def check_list(self, target: Sized, where: Token, what: str = "") -> None:
        if len(target) > MAX_LIST_ITEMS:
            what = what or f"{where.shown()} list"
            raise self.error(f"more than {MAX_LIST_ITEMS} names in one {what}", where)

    # -- statements
    def parse(self) -> None:
        while self.tok.kind != "EOF":
            kind = self.tok.kind
            if kind == "SET":
                self.i += 1
                self.set_statement()
            elif kind in ("POLL", "SKIP"):
                self.entry_line = self.tok.line
                self.i += 1
                name = self.string("a server name")
                self.reset_server(name, skip=kind == "SKIP")
                self.entry()
            elif kind == "DEFAULTS":
                self.entry_line = self.tok.line
                self.i += 1
                self.reset_server("defaults", skip=False)
                self.entry()
            else:
                raise self.error("syntax error: expected poll, skip, defaults or set")

    def set_statement(self) -> None:
        t = self.tok
        g = self.globals
        if t.kind in GLOBAL_PATHS or t.kind in GLOBAL_STRINGS or t.kind == "DAEMON":
            self.i += 1
            if self.tok.kind == "MAP":
                self.i += 1
            if t.kind == "DAEMON":
                g.daemon = self.number()
            elif t.kind in GLOBAL_PATHS:
                setattr(g, GLOBAL_PATHS[t.kind], prependdir(self.string(), self.dir))
            else:
                setattr(g, GLOBAL_STRINGS[t.kind], self.string())
        elif t.kind in GLOBAL_FLAGS:
            self.i += 1
            setattr(g, GLOBAL_FLAGS[t.kind], True)
        elif t.kind == "NO" and self.peek().kind in GLOBAL_FLAGS:
            setattr(g, GLOBAL_FLAGS[self.peek().kind], False)
            self.i += 2
        else:
            raise self.error("syntax error: not a global option after set")

    def reset_server(self, name: str, *, skip: bool) -> None:
        self.trailer = False
        self.user_line = 0
        self.server = ServerOptions(pollname=name, skip=skip)
        self.user = UserOptions()

    def record_current(self) -> None:
        if len(self.records) >= MAX_ENTRIES:
            raise RcfileError(
                self.filename,
                self.user_line or self.entry_line,
                f"more than {MAX_ENTRIES} user descriptions in one file",
            )
        # No copies: the grammar allows no server option after the first user, so
        # every user of an entry shares one ServerOptions, and user_reset() starts
        # a fresh UserOptions right after. (Deep copies here made memory grow with
        # users times the length of the entry's lists.)
        self.records.append(
            _Record(
                self.server,
                self.user,
                lead=not self.trailer,
                line=self.entry_line,
            )
        )
        self.trailer = True

    def user_reset(self) -> None:
        self.user = UserOptions()

    def at_server_option(self) -> bool:
        t = self.tok
        if t.kind == "NO":
            return self.peek().kind in SERVER_NEGATABLE
        return t.kind in SERVER_START

    def at_user_option(self) -> bool:
        t = self.tok
        if t.kind == "NO":
            return self.peek().kind in USER_NEGATABLE
        return t.kind in USER_START

    def entry(self) -> None:
        while self.at_server_option():
            self.server_option()
        if self.tok.kind == "NO" and not self.at_user_option():
            self.i += 1
            raise self.error("syntax error: cannot negate this")
        if self.tok.kind == "USERNAME":
            while self.tok.kind == "USERNAME":
                self.userdef()
                while self.at_user_option():
                    self.user_option()
                self.record_current()
                self.user_reset()
        elif self.at_user_option():
            while self.at_user_option():
                self.user_option()
            self.record_current()
            self.user_reset()
        else:
            self.record_current()
            self.end_of_entry(after_users=False)
            return
        self.end_of_entry(after_users=True)

    def end_of_entry(self, *, after_users: bool) -> None:
        t = self.tok
        if t.kind in STATEMENT_START:
            return
        if after_users and self.at_server_option():
            raise self.error("server option after user options")
        if t.kind == "NO":
            self.i += 1
            raise self.error("syntax error: cannot negate this")
        if after_users and t.kind == "USERNAME":
            raise self.error("syntax error: user after options of the implicit user")
        raise self.error("syntax error")

    def server_option(self) -> None:
        t = self.tok
        s = self.server
        self.i += 1
        k = t.kind
        if k == "NO":
            what = self.tok.kind
            self.i += 1
            if what == "ENVELOPE":
                s.envelope = None
                s.no_envelope = True
            else:
                setattr(s, SERVER_FLAGS[what], False)
        elif k in SERVER_FLAGS:
            setattr(s, SERVER_FLAGS[k], True)
        elif k in SERVER_STRINGS:
            setattr(s, SERVER_STRINGS[k], self.string())
        elif k == "AKA":
            self.extend(s.aka, t)
        elif k == "LOCALDOMAINS":
            self.extend(s.localdomains, t)
        elif k == "PROTOCOL":
            p = self.tok
            if p.kind == "PROTO":
                assert isinstance(p.value, str)
                s.protocol = p.value
            elif p.kind == "KPOP":
                s.protocol = "pop3"
                if s.auth == "password":
                    s.auth = "kerberos_v5"
                s.service = KPOP_PORT
            elif p.kind == "SDPS":
                s.protocol = "pop3"
                s.sdps = True
            else:
                raise self.error("syntax error: expected a protocol name")
            self.i += 1
        elif k == "SERVICE" and self.tok.kind == "STRING":
            s.service = self.string()
        elif k in ("SERVICE", "PORT"):
            s.service = str(self.number())[:9]  # snprintf into char[10]
        elif k == "INTERVAL":
            s.interval = self.number() or None
        elif k == "TIMEOUT":
            s.timeout = self.number() or None
        elif k == "AUTHENTICATE":
            a = self.expect("AUTHTYPE", "an authentication type")
            assert isinstance(a.value, str)
            s.auth = None if a.value == "any" else a.value
        elif k == "ENVELOPE":
            skip = None
            if self.tok.kind == "NUMBER":
                skip = self.number() or None
            s.envelope = self.string("an envelope header name")
            s.no_envelope = False
            s.envskip = skip
        elif k == "INTERFACE":
            where = self.tok
            value = self.string()
            self.check_interface(value, where)
            s.interface = value
        elif k == "BADHEADER":
            v = self.tok
            if v.kind == "ACCEPT":
                s.badheader = True
            elif v.kind == "REJECT":
                s.badheader = None  # BHREJECT is fetchmail's zero value
            else:
                raise self.error("syntax error: expected accept or reject")
            self.i += 1
        else:  # pragma: no cover - guarded by at_server_option
            raise self.error("syntax error", t)

    def check_interface(self, value: str, where: Token) -> None:
        _addr, slash, rest = value.partition("/")
        if not slash:
            raise self.error("missing IP interface address", where)
        ip, slash2, mask = rest.partition("/")
        if not slash2:
            mask = "255.255.255.255"
        if not _inet_aton_ok(ip):
            raise self.error("invalid IP interface address", where)
        if not _inet_aton_ok(mask):
            raise self.error("invalid IP interface mask", where)

    def mapping_list(self) -> None:
        u = self.user
        start = self.tok
        self.expect("STRING", "a user name")
        self.i -= 1
        while self.tok.kind == "STRING":
            name = self.string()
            if self.tok.kind == "MAP":
                self.i += 1
                local = self.string("a local name after '='")
                u.localnames.append((name, local))
            elif name == "*":
                u.wildcard = True
            else:
                u.localnames.append((name, None))
        self.check_list(u.localnames, start, "list of local names")

    def userdef(self) -> None:
        self.user_line = self.tok.line
        self.i += 1  # USERNAME
        self.expect("STRING", "a user name")
        nxt = self.tok
        self.i -= 1
        if nxt.kind == "THERE":
            self.user.remote = self.string()
            self.i += 1
        elif nxt.kind in ("MAP", "STRING", "HERE"):
            self.mapping_list()
            self.expect("HERE", "'here' after local names")
        else:
            self.user.remote = self.string()

    def user_option(self) -> None:
        t = self.tok
        u = self.user
        self.i += 1
        k = t.kind
        if k == "NO":
            setattr(u, USER_FLAGS[self.tok.kind], False)
            self.i += 1
        elif k in USER_FLAGS:
            setattr(u, USER_FLAGS[k], True)
        elif k in USER_STRINGS:
            setattr(u, USER_STRINGS[k], self.string())
        elif k in USER_PATHS:
            setattr(u, USER_PATHS[k], prependdir(self.string(), self.dir))
        elif k in USER_NUMBERS:
            setattr(u, USER_NUMBERS[k], self.number())
        elif k in USER_LISTS:
            self.extend(getattr(u, USER_LISTS[k]), t)
        elif k == "SPAMRESPONSE":
            u.antispam.append(self.number())
            while self.tok.kind == "NUMBER":
                u.antispam.append(self.number())
            self.check_list(u.antispam, t)
        elif k == "LMTP":
            u.lmtp = True
        elif k == "IS" and self.tok.kind == "STRING" and self.peek().kind == "THERE":
            u.remote = self.string()
            self.i += 1
        elif k in ("IS", "TO"):
            self.mapping_list()
            if self.tok.kind == "HERE":
                self.i += 1
        else:  # pragma: no cover - guarded by at_user_option
            raise self.error("syntax error", t)


# ------------------------------------------------------------------ load_params


def _merge(
    dst_s: ServerOptions, dst_u: UserOptions, src_s: ServerOptions, src_u: UserOptions
) -> None:
    """fetchmail's ``optmerge(dst, src, FALSE)``: fill in what ``dst`` left unset.

    Unset is ``None`` (a NULL pointer or a zero number/flag in C), an empty list,
    or ``False`` for ``skip``. ``aka`` and ``sdps`` are not merged by fetchmail.

    Values are shared with ``src``, not copied: a list of the defaults record is
    the same object in every entry that inherits it, so memory does not grow with
    entries times list length. Nothing mutates a parsed configuration.
    """
    for name in SERVER_FIELDS:
        if name in ("pollname", "aka", "sdps", "no_envelope", "envelope"):
            continue
        mine = getattr(dst_s, name)
        unset = mine is None or (isinstance(mine, list) and not mine)
        if unset or (name == "skip" and not mine):
            setattr(dst_s, name, getattr(src_s, name))
    if dst_s.envelope is None and not dst_s.no_envelope:
        dst_s.envelope = src_s.envelope
        dst_s.no_envelope = src_s.no_envelope
    for name in USER_FIELDS:
        mine = getattr(dst_u, name)
        if mine is None or (isinstance(mine, list) and not mine):
            setattr(dst_u, name, getattr(src_u, name))


def _check(records: list[_Record], filename: str) -> None:
    idle = 0
    mailboxes = 0
    for r in records:
        s, u = r.server, r.user

        def fail(message: str, r: _Record = r) -> RcfileError:
            return RcfileError(filename, r.line, message)

        if s.auth == "kerberos_v4":
            raise fail("KERBEROS v4 support is configured, but not compiled in")
        if s.service is not None:
            port = servport(s.service)
            if port < 0:
                raise fail(
                    f"{s.pollname} configuration invalid, specify positive port number "
                    f"for service or port (cannot resolve service {s.service!r})"
                )
            if s.protocol == "rpop" and port >= 1024:
                raise fail(
                    f"{s.pollname} configuration invalid, RPOP requires a privileged port"
                )
        if u.lmtp:
            for host in u.smtphost or ["localhost"]:
                if host.startswith("/"):
                    continue
                cut = host.rfind("/")
                if (
                    cut < 0
                    or host[cut + 1 :] == "smtp"
                    or servport(host[cut + 1 :]) == 25
                ):
                    raise fail(
                        f"{s.pollname} configuration invalid, LMTP can't use default "
                        f"SMTP port (smtphost {host!r} needs an explicit port other than 25)"
                    )
        if u.idle:
            idle += 1
        mailboxes += max(1, len(u.folders))
    if idle and mailboxes > 1:
        line = next(r.line for r in records if r.user.idle)
        raise RcfileError(
            filename, line, "idle mode does not work for multiple folders or accounts"
        )


def _load(parser: _Parser) -> RcConfig:
    records = parser.records
    defaults: Server | None = None
    if records and records[0].server.pollname == "defaults":
        head = records.pop(0)
        for r in records:
            _merge(r.server, r.user, head.server, head.user)
        defaults = Server(head.server, [head.user], line=head.line)
        # Further users of the defaults record stay as an entry named "defaults".
        # (fetchmail frees the name they share with the defaults record and then
        # compares the freed memory, so they never trip the check below; its
        # configdump of them is not even valid Python.)
        orphans = 0
        while orphans < len(records) and not records[orphans].lead:
            orphans += 1
        if records:
            records[0].lead = True
        for r in records[:orphans]:
            r.orphan = True
    for r in records[1:]:
        if r.server.pollname == "defaults" and not r.orphan:
            raise RcfileError(
                parser.filename,
                r.line,
                'multiple "defaults" records in config file, or "defaults" is not '
                "the first record",
            )
    _check(records, parser.filename)
    servers: list[Server] = []
    for r in records:
        if r.lead or not servers:
            servers.append(Server(r.server, [r.user], line=r.line, orphan=r.orphan))
        else:
            servers[-1].users.append(r.user)
    return RcConfig(parser.globals, servers, defaults, filename=parser.filename)


def read_rcfile(path: str) -> bytes:
    """An rcfile's bytes, ``-`` for standard input; OSError when it cannot be read.

    It reads one byte past ``MAX_INPUT_BYTES`` at the most, so that
    :func:`parse_bytes` can refuse a file that is too large without reading it all.
    """
    if path == "-":
        return sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
    with open(path, "rb") as fh:  # noqa: PTH123
        return fh.read(MAX_INPUT_BYTES + 1)


def parse_bytes(data: bytes, filename: str = "<rcfile>") -> RcConfig:
    """Parse rcfile bytes. Raises :class:`RcfileError`, and nothing else, on bad input."""
    if len(data) > MAX_INPUT_BYTES:
        # Name the line where the bound is crossed, like every other refusal.
        line = data.count(b"\n", 0, MAX_INPUT_BYTES) + 1
        raise RcfileError(
            filename,
            line,
            f"the file is larger than {MAX_INPUT_BYTES} bytes, the most an rcfile "
            "may be",
        )
    try:
        parser = _Parser(iter_tokens(data, filename), filename)
        parser.parse()
        return _load(parser)
    except RcfileError:
        raise
    except RecursionError as exc:  # pragma: no cover - defensive
        raise RcfileError(filename, 1, f"internal error: {exc}") from None


def parse_text(text: str, filename: str = "<rcfile>") -> RcConfig:
    """Parse rcfile text (``str``; lone surrogates stand for undecodable bytes)."""
    return parse_bytes(text.encode("utf-8", "surrogateescape"), filename)


def parse_file(path: str) -> RcConfig:
    """Read and parse an rcfile. An unreadable file raises ``OSError``."""
    with Path(path).open("rb") as fh:
        data = fh.read(MAX_INPUT_BYTES + 1)
    return parse_bytes(data, path)


__all__ = [
    "MAX_ENTRIES",
    "MAX_INPUT_BYTES",
    "MAX_LIST_ITEMS",
    "MAX_TOKEN_BYTES",
    "SERVER_FIELDS",
    "USER_FIELDS",
    "fields",
    "parse_bytes",
    "parse_file",
    "parse_text",
    "prependdir",
    "rcfile_dir",
    "servport",
]
