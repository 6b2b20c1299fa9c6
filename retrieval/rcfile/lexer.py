"""The rcfile lexer: fetchmail 6.4's ``rcfile_l.l`` rule for rule, on bytes.

flex picks the longest match at each position and, among equally long matches,
the rule written first. Three start conditions exist: INITIAL, NAME (after
``user``/``pass``/``is``/``to``/``=``: the next word is a plain string whatever
it spells) and AUTH (after ``auth``: ``password`` is an auth type). Tokens that
flex throws away (blanks, ``,;:``, comments, noise words) do not change the
state. Every string, quoted or not, goes through fetchmail's ``escapes()`` and is
cut at the first NUL byte, as a C string would be.

The scan is linear in the size of the input, whatever the bytes, and lazy:
:func:`iter_tokens` yields one token at a time so that the parser holds only a
small window of them (a list of every token cost about 45 bytes of memory per
byte of input). A token longer than ``MAX_TOKEN_BYTES`` is refused.

One comment is more than a comment, for us only: a line
``# fetchweb: delete-after-days N`` (our option, which fetchmail lacks, as the
exporter writes it so that fetchmail skips it) becomes a ``DELETE_AFTER_DAYS``
token; the parser gives it to the user description being read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from .errors import RcfileError

if TYPE_CHECKING:
    from collections.abc import Iterator

# The longest word or quoted string accepted. Real values (an mda command, a
# password, a list of folders) are far shorter; the bound keeps one token from
# holding the whole input in several decoded copies.
MAX_TOKEN_BYTES: Final = 16 * 1024

INITIAL: Final = 0
NAME: Final = 1
AUTH: Final = 2


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "STRING", "NUMBER", "MAP", "EOF" or a keyword class such as "KEEP"
    value: str | int | None  # decoded text, number, or the keyword's canonical value
    raw: bytes  # the token as written
    line: int
    column: int

    def shown(self) -> str | None:
        if self.kind == "EOF":
            return None
        return self.raw.decode("utf-8", "replace")


# word -> (token kind, canonical value, state to enter or None to keep the state)
_KEYWORDS: dict[bytes, tuple[str, str | None, int | None]] = {}


def _kw(
    kind: str, *words: str, value: str | None = None, state: int | None = None
) -> None:
    for w in words:
        _KEYWORDS[w.encode()] = (kind, value if value is not None else w, state)


for _w in [
    "set",
    "logfile",
    "idfile",
    "pidfile",
    "daemon",
    "syslog",
    "invisible",
    "showdots",
    "postmaster",
    "bouncemail",
    "spambounce",
    "softbounce",
    "warnings",
    "tracepolls",
    "defaults",
    "skip",
    "via",
    "aka",
    "service",
    "port",
    "interval",
    "timeout",
    "envelope",
    "qvirtual",
    "principal",
    "esmtpname",
    "esmtppassword",
    "accept",
    "fetchdomains",
    "smtpaddress",
    "smtpname",
    "mda",
    "bsmtp",
    "lmtp",
    "interface",
    "monitor",
    "plugin",
    "plugout",
    "batchlimit",
    "fetchlimit",
    "fetchsizelimit",
    "fastuidl",
    "expunge",
    "properties",
    "here",
    "there",
    "no",
    "keep",
    "flush",
    "limitflush",
    "fetchall",
    "rewrite",
    "forcecr",
    "stripcr",
    "dropstatus",
    "dropdelivered",
    "idle",
    "dns",
    "uidl",
    "ssl",
    "sslkey",
    "sslcert",
    "sslproto",
    "sslcertck",
    "sslcertfile",
    "sslcertpath",
    "sslcommonname",
    "sslfingerprint",
    "checkalias",
    "limit",
]:
    _kw(_w.upper(), _w)
_kw("REJECT", "reject")
_kw("BADHEADER", "bad-header")
_kw("POLL", "poll", "server", value="poll")
_kw("LOCALDOMAINS", "local", "localdomains", value="localdomains")
_kw("PROTOCOL", "proto", "protocol", value="protocol")
_kw(
    "AUTHENTICATE",
    "auth",
    "authenticate",
    "preauth",
    "preauthenticate",
    value="auth",
    state=AUTH,
)
_kw("USERNAME", "user", "username", value="user", state=NAME)
_kw("PASSWORD", "pass", "password", value="password", state=NAME)
_kw("FOLDER", "folder", "folders", value="folder")
_kw("SMTPHOST", "smtp", "smtphost", value="smtphost")
_kw("SPAMRESPONSE", "antispam", value="antispam")
_kw("PRECONNECT", "pre", "preconnect", value="preconnect")
_kw("POSTCONNECT", "post", "postconnect", value="postconnect")
_kw("PASS8BITS", "pass8", "pass8bits", value="pass8bits")
_kw("MIMEDECODE", "mimedec", "mimedecode", value="mimedecode")
_kw("IS", "is", value="is", state=NAME)
_kw("TO", "to", value="to", state=NAME)
for _a, _v in (
    ("any", "any"),
    ("gssapi", "gssapi"),
    ("kerberos4", "kerberos_v4"),
    ("kerberos_v4", "kerberos_v4"),
    ("kerberos", "kerberos_v4"),
    ("kerberos5", "kerberos_v5"),
    ("kerberos_v5", "kerberos_v5"),
    ("ssh", "ssh"),
    ("external", "external"),
    ("otp", "otp"),
    ("opie", "otp"),
    ("cram", "cram-md5"),
    ("cram-md5", "cram-md5"),
    ("msn", "msn"),
    ("ntlm", "ntlm"),
):
    _kw("AUTHTYPE", _a, value=_v, state=INITIAL)
for _p in ("auto", "pop2", "pop3", "imap", "apop", "rpop", "etrn", "odmr"):
    _kw("PROTO", _p, _p.upper(), value=_p)
_kw("SDPS", "sdps", "SDPS", value="sdps")
_kw("KPOP", "kpop", "KPOP", value="kpop")

NOISE: Final = frozenset({b"with", b"and", b"has", b"wants", b"options"})

# Glued negations: flex returns NO and rescans from the third character.
GLUED_NO: Final = frozenset(
    w.encode()
    for w in [
        "nobouncemail",
        "nouidl",
        "nocheckalias",
        "nodns",
        "noenvelope",
        "nokeep",
        "noflush",
        "nolimitflush",
        "nofetchall",
        "norewrite",
        "noforcecr",
        "nostripcr",
        "nopass8",
        "nopass8bits",
        "nodropstatus",
        "nodropdelivered",
        "nomimedec",
        "nomimedecode",
        "nospambounce",
        "noidle",
    ]
)

_WORD = re.compile(rb"[^=;:, \t\r\n]+")
_BLANK = re.compile(rb"[ \t\r]+")
_DELETE_AFTER_DAYS = re.compile(
    rb"#[ \t]*fetchweb:[ \t]*delete-after-days[ \t]+([0-9]{1,9})[ \t\r]*"
)
_NUMBER = re.compile(rb"-?[0-9]+")
_HEX = b"0123456789abcdefABCDEF"


def c_atoi(text: bytes) -> int:
    """glibc ``atoi``: ``(int) strtol(text, NULL, 10)`` on an LP64 machine."""
    value = int(text)
    value = max(-(2**63), min(2**63 - 1, value))
    value &= 0xFFFFFFFF
    return value - 2**32 if value >= 2**31 else value


def escapes(raw: bytes) -> bytes:
    """fetchmail's ``escapes()``, then cut at the first NUL like a C string."""
    nul = raw.find(b"\0")
    if nul >= 0:
        raw = raw[:nul]
    if b"\\" not in raw:
        return raw
    out = bytearray()
    i = 0
    n = len(raw)
    while i < n:
        c = raw[i]
        if c != 0x5C:
            out.append(c)
            i += 1
            continue
        if i + 1 >= n:  # backslash at the very end: dropped
            break
        d = raw[i + 1]
        if d in b"0123456789xX":
            cval = 0
            count = 0
            i += 1
            if d in b"xX":
                i += 1
                while i < n and raw[i] in _HEX and count < 2:
                    cval = cval * 16 + int(raw[i : i + 1], 16)
                    count += 1
                    i += 1
            elif d == 0x30:  # '0': octal, the zero counts as a digit
                while i < n and raw[i] in b"01234567" and count < 3:
                    cval = cval * 8 + raw[i] - 0x30
                    count += 1
                    i += 1
            else:
                while i < n and raw[i] in b"0123456789" and count < 3:
                    cval = cval * 10 + raw[i] - 0x30
                    count += 1
                    i += 1
            out.append(cval & 0xFF)
            continue
        i += 2
        if d == 0x0A:  # backslash-newline joins lines
            continue
        out.append({0x6E: 0x0A, 0x74: 0x09, 0x62: 0x08, 0x72: 0x0D}.get(d, d))
    nul = out.find(b"\0")
    if nul >= 0:
        del out[nul:]
    return bytes(out)


def decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def tokenize(data: bytes, filename: str = "<rcfile>") -> list[Token]:
    """Split an rcfile into tokens (ending with an EOF token)."""
    return list(iter_tokens(data, filename))


def _too_long(filename: str, line: int, column: int, raw: bytes) -> RcfileError:
    return RcfileError(
        filename,
        line,
        f"a word or quoted string longer than {MAX_TOKEN_BYTES} bytes",
        column=column,
        token=raw[:60].decode("utf-8", "replace"),
    )


def iter_tokens(data: bytes, filename: str = "<rcfile>") -> Iterator[Token]:
    """Yield the tokens of an rcfile one by one, ending with an EOF token."""
    state = INITIAL
    pos = 0
    n = len(data)
    line = 1
    line_start = 0
    next_quote: dict[int, int] = {0x22: 0, 0x27: 0}  # cached index of next quote char

    def count_lines(start: int, end: int) -> None:
        nonlocal line, line_start
        k = data.count(b"\n", start, end)
        if k:
            line += k
            line_start = data.rindex(b"\n", start, end) + 1

    while pos < n:
        c = data[pos]
        col = pos - line_start + 1
        tok_line = line
        if c == 0x0A:
            pos += 1
            line += 1
            line_start = pos
            continue
        m = _BLANK.match(data, pos)
        if m:
            pos = m.end()
            continue
        if c in b";:,":
            pos += 1
            continue
        if c == 0x3D:  # '='
            yield Token("MAP", "=", b"=", tok_line, col)
            state = NAME
            pos += 1
            continue
        if c == 0x5C and pos + 1 < n and data[pos + 1] == 0x0A:  # backslash-newline
            pos += 2
            line += 1
            line_start = pos
            continue
        word = _WORD.match(data, pos)
        assert word is not None  # every other byte starts a word
        wlen = word.end() - pos
        if c == 0x23:  # '#': a comment when a newline ends it (longer than any word)
            nl = data.find(b"\n", pos)
            if nl >= 0:
                directive = _DELETE_AFTER_DAYS.fullmatch(data, pos, nl)
                if directive:
                    days = int(directive.group(1))
                    raw = data[pos:nl]
                    yield Token("DELETE_AFTER_DAYS", days, raw, tok_line, col)
                pos = nl + 1
                line += 1
                line_start = pos
                continue
        qlen = 0
        if c in (0x22, 0x27):
            cached = next_quote[c]
            if cached != -1 and cached <= pos:
                cached = data.find(bytes((c,)), pos + 1)
                next_quote[c] = cached
            if cached > pos:
                qlen = cached + 1 - pos
        if max(qlen, wlen) > MAX_TOKEN_BYTES:
            raise _too_long(filename, tok_line, col, data[pos : pos + 60])
        if qlen and qlen >= wlen:
            raw = data[pos : pos + qlen]
            value = decode(escapes(raw[1:-1]))
            yield Token("STRING", value, raw, tok_line, col)
            state = INITIAL
            count_lines(pos, pos + qlen)
            pos += qlen
            continue
        raw = word.group()
        pos = word.end()
        if state == NAME:
            yield Token("STRING", decode(escapes(raw)), raw, tok_line, col)
            state = INITIAL
            continue
        if raw in NOISE:
            continue
        if state == AUTH and raw == b"password":
            yield Token("AUTHTYPE", "password", raw, tok_line, col)
            state = INITIAL
            continue
        if raw in GLUED_NO:
            yield Token("NO", "no", raw[:2], tok_line, col)
            pos -= wlen - 2
            continue
        kw = _KEYWORDS.get(raw)
        if kw is not None and not (state == AUTH and kw[0] == "PASSWORD"):
            kind, value_kw, new_state = kw
            yield Token(kind, value_kw, raw, tok_line, col)
            if new_state is not None:
                state = new_state
            continue
        if _NUMBER.fullmatch(raw):
            yield Token("NUMBER", c_atoi(raw), raw, tok_line, col)
            continue
        yield Token("STRING", decode(escapes(raw)), raw, tok_line, col)
    yield Token("EOF", None, b"", line, pos - line_start + 1)


__all__ = [
    "MAX_TOKEN_BYTES",
    "RcfileError",
    "Token",
    "c_atoi",
    "escapes",
    "iter_tokens",
    "tokenize",
]
