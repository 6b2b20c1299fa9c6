"""Hypothesis strategies that build rcfiles from the grammar.

Mostly well-formed files (global ``set`` statements, ``defaults``, ``poll``/``skip``
entries with server options, implicit or explicit users with every user option),
written with the lexer's freedoms: synonyms, noise words, ignored punctuation,
quoting styles, escapes, glued negations. A share of them is then damaged
(a token dropped, duplicated, swapped, re-cased or replaced) to produce invalid
files. Whatever comes out, fetchmail and our parser must agree.
"""

from __future__ import annotations

from hypothesis import strategies as st

WORDS = [
    "a",
    "b",
    "mail.example.com",
    "imap.example.org",
    "joe",
    "jane",
    "x1",
    "INBOX",
    "Sent",
    "*",
    "h/2525",
    "localhost/24",
    "/var/run/lmtp",
    "-",
    "pop3s",
    "imaps",
    "110",
    "user@example.com",
    "rel/path",
    "tls1.2+",
    "eth0/10.1.2.3",
    "p@ss",
    "%T",
]
KEYWORDISH = [
    "keep",
    "poll",
    "user",
    "here",
    "there",
    "no",
    "is",
    "ssl",
    "proto",
    "imap",
    "with",
]

_escape = st.sampled_from(
    [
        "\\n",
        "\\t",
        "\\x41",
        "\\x4",
        "\\101",
        "\\0101",
        "\\\\",
        "\\q",
        "\\x22",
        "\\\n",
        "\\r",
    ]
)
_plain_char = st.sampled_from(list("abcXYZ019 .-_@/:;,=#*'"))
_quoted_body = st.lists(st.one_of(_plain_char, _plain_char, _escape), max_size=6).map(
    "".join
)


@st.composite
def value(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 9))
    if kind <= 4:
        return draw(st.sampled_from(WORDS))
    if kind <= 7:
        body = draw(_quoted_body)
        if draw(st.booleans()):
            return '"' + body.replace('"', "") + '"'
        return "'" + body.replace("'", "") + "'"
    if kind == 8:
        return draw(st.sampled_from(KEYWORDISH))
    return draw(st.sampled_from(['"x"y', "'a b'", '""', "\\x2a", "a\\x20b"]))


@st.composite
def number(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(
            st.sampled_from(["99999999999", "-1", "0", "4294967296", "65536", "007"])
        )
    return str(draw(st.integers(-3, 2000)))


def _values(draw: st.DrawFn, n: int = 3) -> str:
    return " ".join(draw(value()) for _ in range(draw(st.integers(1, n))))


def _neg(draw: st.DrawFn, kw: str, glued: set[str]) -> str:
    choice = draw(st.integers(0, 2))
    if choice == 0:
        return kw
    if choice == 1 or kw not in glued:
        return "no " + kw
    return "no" + kw


SERVER_GLUED = {"uidl", "checkalias", "dns", "envelope"}
USER_GLUED = {
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
}


@st.composite
def server_option(draw: st.DrawFn) -> str:
    k = draw(st.integers(0, 19))
    if k == 0:
        return "via " + draw(value())
    if k == 1:
        return (
            draw(st.sampled_from(["aka", "localdomains", "local"]))
            + " "
            + _values(draw)
        )
    if k == 2:
        proto = draw(
            st.sampled_from(
                [
                    "auto",
                    "pop3",
                    "POP3",
                    "imap",
                    "IMAP",
                    "apop",
                    "rpop",
                    "etrn",
                    "odmr",
                    "kpop",
                    "sdps",
                    "pop2",
                ]
            )
        )
        return draw(st.sampled_from(["proto", "protocol"])) + " " + proto
    if k == 3:
        return (
            draw(st.sampled_from(["service", "port"]))
            + " "
            + draw(st.one_of(number(), value()))
        )
    if k == 4:
        auth = draw(
            st.sampled_from(
                [
                    "any",
                    "password",
                    "cram-md5",
                    "cram",
                    "ntlm",
                    "msn",
                    "otp",
                    "opie",
                    "gssapi",
                    "kerberos_v5",
                    "ssh",
                    "external",
                ]
            )
        )
        return draw(st.sampled_from(["auth", "authenticate", "preauth"])) + " " + auth
    if k == 5:
        return draw(st.sampled_from(["timeout", "interval"])) + " " + draw(number())
    if k == 6:
        if draw(st.booleans()):
            return "envelope " + draw(number()) + " " + draw(value())
        return "envelope " + draw(value())
    if k == 7:
        return _neg(
            draw,
            draw(st.sampled_from(["uidl", "checkalias", "dns", "tracepolls"])),
            SERVER_GLUED,
        )
    if k == 8:
        return draw(st.sampled_from(["no envelope", "noenvelope"]))
    if k == 9:
        return "interface " + draw(
            st.sampled_from(
                ['"eth0/1.2.3.4"', '"eth0/1.2.3.4/255.0.0.0"', "eth0", '"a/1.2.3.400"']
            )
        )
    if k == 10:
        return "bad-header " + draw(st.sampled_from(["accept", "reject"]))
    key = draw(
        st.sampled_from(
            [
                "qvirtual",
                "monitor",
                "plugin",
                "plugout",
                "principal",
                "esmtpname",
                "esmtppassword",
            ]
        )
    )
    return key + " " + draw(value())


@st.composite
def mapping_list(draw: st.DrawFn) -> str:
    items = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 3)) == 0:
            items.append(draw(value()) + "=" + draw(value()))
        else:
            items.append(draw(value()))
    return " ".join(items)


@st.composite
def user_option(draw: st.DrawFn) -> str:
    k = draw(st.integers(0, 17))
    if k == 0:
        kw = draw(st.sampled_from(["is", "to"]))
        tail = draw(st.sampled_from(["", " here", " here"]))
        return f"{kw} {draw(mapping_list())}{tail}"
    if k == 1:
        return "is " + draw(value()) + " there"
    if k == 2:
        return draw(st.sampled_from(["pass", "password"])) + " " + draw(value())
    if k == 3:
        kw = draw(
            st.sampled_from(["folder", "folders", "smtphost", "smtp", "fetchdomains"])
        )
        return kw + " " + _values(draw)
    if k == 4:
        return "antispam " + " ".join(
            draw(number()) for _ in range(draw(st.integers(1, 3)))
        )
    if k <= 8:
        kw = draw(
            st.sampled_from(
                [
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
                ]
            )
        )
        return _neg(draw, kw, USER_GLUED)
    if k == 9:
        return draw(
            st.sampled_from(["pass8", "mimedec", "lmtp", "nopass8", "nomimedec"])
        )
    if k <= 12:
        kw = draw(
            st.sampled_from(
                [
                    "limit",
                    "warnings",
                    "fetchlimit",
                    "fetchsizelimit",
                    "fastuidl",
                    "batchlimit",
                    "expunge",
                ]
            )
        )
        return kw + " " + draw(number())
    kw = draw(
        st.sampled_from(
            [
                "smtpaddress",
                "smtpname",
                "mda",
                "bsmtp",
                "pre",
                "preconnect",
                "post",
                "postconnect",
                "sslkey",
                "sslcert",
                "sslproto",
                "sslcertfile",
                "sslcertpath",
                "sslcommonname",
                "sslfingerprint",
                "properties",
            ]
        )
    )
    return kw + " " + draw(value())


@st.composite
def userdef(draw: st.DrawFn) -> str:
    kw = draw(st.sampled_from(["user", "username"]))
    k = draw(st.integers(0, 3))
    if k == 0:
        return f"{kw} {draw(value())} there"
    if k == 1:
        return f"{kw} {draw(mapping_list())} here"
    return f"{kw} {draw(value())}"


@st.composite
def entry(draw: st.DrawFn, *, defaults: bool = False) -> str:
    if defaults:
        head = draw(st.sampled_from(["defaults", "defaults", 'poll "defaults"']))
    else:
        head = (
            draw(st.sampled_from(["poll", "poll", "server", "skip"]))
            + " "
            + draw(value())
        )
    parts = [head]
    parts += draw(st.lists(server_option(), max_size=4))
    shape = draw(st.integers(0, 3))
    if shape == 1:
        parts += draw(st.lists(user_option(), min_size=1, max_size=5))
    elif shape >= 2:
        for _ in range(draw(st.integers(1, 3))):
            parts.append(draw(userdef()))
            parts += draw(st.lists(user_option(), max_size=4))
    return " ".join(parts)


@st.composite
def set_statement(draw: st.DrawFn) -> str:
    k = draw(st.integers(0, 3))
    if k == 0:
        return "set daemon " + draw(number())
    if k == 1:
        kw = draw(
            st.sampled_from(
                ["logfile", "idfile", "pidfile", "postmaster", "properties"]
            )
        )
        eq = draw(st.sampled_from(["", "= ", "="]))
        return f"set {kw} {eq}{draw(value())}"
    kw = draw(
        st.sampled_from(
            [
                "bouncemail",
                "spambounce",
                "softbounce",
                "syslog",
                "invisible",
                "showdots",
            ]
        )
    )
    return "set " + draw(st.sampled_from(["", "no "])) + kw


SEPARATORS = [
    " ",
    " ",
    " ",
    "\n",
    "\n  ",
    ", ",
    "; ",
    " with ",
    " and ",
    "\t",
    " # c\n",
    " options ",
]


@st.composite
def rcfile_text(draw: st.DrawFn) -> str:
    statements: list[str] = []
    if draw(st.integers(0, 3)) == 0:
        statements.append(draw(entry(defaults=True)))
        if draw(st.integers(0, 9)) == 0:
            statements.append(draw(entry(defaults=True)))
    body = draw(st.lists(st.one_of(entry(), entry(), set_statement()), max_size=4))
    statements += body
    text = "\n".join(statements)
    words = text.split(" ")
    out = []
    for w in words:
        out.append(w)
        out.append(draw(st.sampled_from(SEPARATORS)))
    text = "".join(out[:-1]) if out else ""
    if draw(st.integers(0, 3)) == 0:
        text = draw(damage(text))
    return text + draw(st.sampled_from(["\n", "\n", ""]))


@st.composite
def damage(draw: st.DrawFn, text: str) -> str:
    words = text.split(" ")
    if not words:
        return text
    i = draw(st.integers(0, len(words) - 1))
    k = draw(st.integers(0, 4))
    if k == 0:
        del words[i]
    elif k == 1:
        words.insert(i, words[i])
    elif k == 2:
        j = draw(st.integers(0, len(words) - 1))
        words[i], words[j] = words[j], words[i]
    elif k == 3:
        words[i] = words[i].capitalize()
    else:
        words.insert(
            i,
            draw(
                st.sampled_from(
                    [*KEYWORDISH, "=", '"', "'", "#", "\\", "12", "set", "defaults"]
                )
            ),
        )
    return " ".join(words)
