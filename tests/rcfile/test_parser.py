"""Fast unit tests of the lexer, the grammar, defaults merging and the load-time
checks (no fetchmail, no Django). Expected values come from fetchmail 6.4.37's
behaviour (see the differential tests, which check the same on the binary)."""

from __future__ import annotations

from typing import Any

import pytest

from retrieval.rcfile import (
    Environment,
    RcfileError,
    configdump,
    parse_bytes,
    parse_text,
)
from retrieval.rcfile.lexer import c_atoi, escapes, tokenize

ENV = Environment(
    user="joe",
    home="/home/joe",
    fmhome="/home/joe",
    hostname="host.example",
    check_files=False,
)


def dump(text: str | bytes, filename: str = "/etc/fm/rc") -> dict[str, Any]:
    data = text.encode() if isinstance(text, str) else text
    return configdump(parse_bytes(data, filename), ENV)


def user(text: str, server: int = 0, index: int = 0) -> dict[str, Any]:
    u: dict[str, Any] = dump(text)["servers"][server]["users"][index]
    return u


def server(text: str, index: int = 0) -> dict[str, Any]:
    s: dict[str, Any] = dump(text)["servers"][index]
    return s


def rejects(text: str | bytes) -> RcfileError:
    data = text.encode() if isinstance(text, str) else text
    with pytest.raises(RcfileError) as info:
        parse_bytes(data, "/etc/fm/rc")
    return info.value


# ----------------------------------------------------------------- lexer traps


def test_keywords_are_case_sensitive() -> None:
    rejects("Poll a\n")
    rejects("poll a User b\n")
    rejects("poll a proto Imap\n")
    assert server("poll a proto IMAP\n")["protocol"] == "IMAP"


def test_name_context_protects_only_the_first_word() -> None:
    u = user("poll h user keep pass 12345 is flush here\n")
    assert (u["remote"], u["password"], u["localnames"]) == ("keep", "12345", ["flush"])
    rejects(
        "poll h user b is a keep c here\n"
    )  # `keep` after the first name is a keyword


def test_noise_words_and_punctuation_are_dropped() -> None:
    u = user("poll a, with proto imap; user b: and has password c wants options keep\n")
    assert (u["remote"], u["password"], u["keep"]) == ("b", "c", True)


def test_noise_word_in_name_context_is_a_name() -> None:
    assert user("poll a user with\n")["remote"] == "with"


def test_glued_negations() -> None:
    u = user("poll a user b nokeep nopass8 nomimedec\n")
    assert (u["keep"], u["pass8bits"], u["mimedecode"]) == (False, False, False)
    for word in ("nossl", "nosslcertck", "notracepolls", "nosoftbounce"):
        rejects(f"poll a user b {word}\n")
    rejects("set nosyslog\n")
    assert dump("set nobouncemail\n")["bouncemail"] is False


def test_quote_glued_to_text_is_one_word_with_the_quotes() -> None:
    assert user('poll a user b pass "xyzzy"x\n')["password"] == '"xyzzy"x'


def test_unclosed_quote_without_a_later_quote_is_a_literal() -> None:
    assert user('poll a user b pass "xyzzy\n')["password"] == '"xyzzy'


def test_unclosed_quote_swallows_lines_up_to_the_next_quote() -> None:
    err = rejects('poll a user b pass "abc\npoll c user "d\n')
    assert err.line == 2  # our line numbers count the swallowed lines


def test_quoted_number_is_a_string() -> None:
    rejects('set daemon "300"\n')
    rejects("set daemon = 300\n")  # `=` makes 300 a name
    assert dump("set logfile = /x\n")["logfile"] == "/x"


def test_comment_needs_a_newline() -> None:
    assert dump("poll a # comment\n")["servers"][0]["pollname"] == "a"
    rejects("poll a # comment at the end of the file")
    assert user("poll a user b#x\n")["remote"] == "b#x"  # only at a token start


def test_backslash_newline_outside_strings() -> None:
    assert user("poll a user b\\\n keep\n")["keep"] is True


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (rb"a\nb", b"a\nb"),
        (rb"\t\b\r\\", b"\t\b\r\\"),
        (rb"\x41\x4g", b"A\x04g"),
        (rb"\x414", b"A4"),
        (rb"\101", b"e"),
        (rb"\0101", b"\x081"),
        (rb"\999", b"\xe7"),
        (rb"\q\e", b"qe"),
        (b"a\\\nb", b"ab"),
        (rb"ab\x", b"ab"),
        (rb"ab\0cd", b"ab"),
        (b"ab\\", b"ab"),
        (b"a\0b", b"a"),
        (rb"\256z", b""),
    ],
)
def test_escapes(raw: bytes, expected: bytes) -> None:
    assert escapes(raw) == expected


def test_escapes_apply_to_unquoted_words_too() -> None:
    assert user("poll a user a\\x41b\n")["remote"] == "aAb"
    assert user('poll a user "\\x2a" here\n')["localnames"] == ["joe", "*"]


def test_no_escaped_quote_inside_double_quotes() -> None:
    assert user('poll a user "a\\"b"\n')["remote"] == '"a"b"'


def test_atoi_wraps_like_c() -> None:
    assert c_atoi(b"99999999999") == 1215752191
    assert c_atoi(b"4294967296") == 0
    assert c_atoi(b"-1") == -1
    assert c_atoi(b"99999999999999999999999") == -1
    assert dump("set daemon 99999999999\n")["poll_interval"] == 1215752191


def test_tokens_carry_line_and_column() -> None:
    toks = tokenize(b"poll a\n  user b\n")
    assert [(t.kind, t.line, t.column) for t in toks] == [
        ("POLL", 1, 1),
        ("STRING", 1, 6),
        ("USERNAME", 2, 3),
        ("STRING", 2, 8),
        ("EOF", 3, 1),
    ]


def test_auth_password_is_an_auth_type_only_after_auth() -> None:
    assert server("poll a auth password\n")["auth"] == "password"
    rejects("poll a auth pass\n")


# ----------------------------------------------------------------- grammar


def test_implicit_user_gets_the_invoking_login() -> None:
    u = user("poll a keep\n")
    assert (u["remote"], u["localnames"]) == ("joe", ["joe"])


def test_user_option_before_user_is_an_error_only_if_user_follows() -> None:
    assert user("poll x keep\n")["keep"] is True
    rejects("poll x keep user a\n")


def test_server_option_after_user_options() -> None:
    err = rejects("poll x user a keep via c\n")
    assert "server option after user options" in err.message
    assert (err.line, err.token) == (1, "via")


def test_several_users_per_server() -> None:
    s = server("poll a proto imap user b pass x keep user c pass y\n")
    assert [u["remote"] for u in s["users"]] == ["b", "c"]
    assert [u["keep"] for u in s["users"]] == [True, False]


@pytest.mark.parametrize(
    ("text", "remote", "localnames"),
    [
        ("user b there is c here", "b", ["c"]),
        ("user b c here", "joe", ["b", "c"]),
        ("user b here is c there", "c", ["b"]),
        ("user b is x=y", "b", [["x", "y"]]),
        ("user b is c=d e", "b", [["c", "d"], "e"]),
        ("user b = c here", "joe", [["b", "c"]]),
        ("user b is * here", "b", ["joe", "*"]),
        ('user b is "*" d', "b", ["d", "*"]),
        ("user b is x=*", "b", [["x", "*"]]),
        ('user "*"', "*", ["joe"]),
        ("user * here", "joe", ["joe", "*"]),
    ],
)
def test_local_name_mappings(text: str, remote: str, localnames: list[Any]) -> None:
    u = user(f"poll a {text}\n")
    assert (u["remote"], u["localnames"]) == (remote, localnames)


@pytest.mark.parametrize(
    "text",
    [
        "poll a to c there",
        "poll a user b is c d there",
        "poll a user b is c here there",
        "poll a user b there there",
        "poll a user b is = y",
        "poll a user b is c=d=e",
        "poll a user b=c",
        "poll proto imap",
        "poll 123",
        "poll a envelope 3",
        "poll a service pop3",
        "poll a user b mimedecode showdots",
        "set no keep",
        "keep",
        "poll a no bouncemail",
    ],
)
def test_syntax_errors(text: str) -> None:
    rejects(text + "\n")


def test_skip_entries() -> None:
    s = server("skip a auth gssapi user b\n")
    assert s["active"] is False
    assert s["users"][0]["password"] is None  # no implicit password for skipped entries


def test_kpop_and_sdps() -> None:
    s = server("poll a proto kpop\n")
    assert (s["protocol"], s["service"], s["auth"]) == ("POP3", "kpop", "any")
    s = server("poll a auth password proto kpop\n")
    assert s["auth"] == "kerberos_v5"
    assert server("poll a proto sdps\n")["protocol"] == "POP3"
    assert server("poll a proto pop2\n")["protocol"] == "unknown?!?"


def test_auth_external_has_no_auth_key() -> None:
    assert "auth" not in server("poll a auth external\n")


def test_password_defaults_to_remote_when_none_is_needed() -> None:
    for opt in (
        "auth gssapi",
        "auth ssh",
        "auth otp",
        "auth kerberos_v5",
        "proto etrn",
    ):
        assert user(f"poll a {opt} user b\n")["password"] == "b"
    assert user("poll a auth ntlm user b\n")["password"] is None
    assert user("poll a proto odmr user b\n")["password"] is None


def test_etrn_and_odmr_fetch_this_hosts_domain() -> None:
    assert user("poll a proto etrn\n")["fetchdomains"] == ["host.example"]
    assert user("poll a proto odmr fetchdomains d\n")["fetchdomains"] == ["d"]


def test_numbers() -> None:
    s = server("poll a timeout 0 interval -3\n")
    assert (s["timeout"], s["interval"]) == (300, 0)
    assert server("poll a timeout -1\n")["timeout"] == 300
    assert server("poll a timeout -5\n")["timeout"] == 0
    u = user("poll a user b limit -5 fetchsizelimit 0 fastuidl -3 warnings 0\n")
    assert (u["limit"], u["fetchsizelimit"], u["fastuidl"], u["warnings"]) == (
        0,
        0,
        0,
        0,
    )
    assert (
        server("poll a port 1234567890\n".replace("1234567890", "110"))["service"]
        == "110"
    )


def test_tracepolls_no_is_shown_true_like_fetchmail() -> None:
    assert server("poll a no tracepolls\n")["tracepolls"] is True
    assert server("poll a\n")["tracepolls"] is False


def test_relative_paths_use_the_rcfile_directory() -> None:
    d = dump(
        "set idfile ids set logfile log\npoll a user b bsmtp out sslcert c sslkey /k\n"
    )
    assert (d["idfile"], d["logfile"]) == ("/etc/fm/ids", "/etc/fm/log")
    u = d["servers"][0]["users"][0]
    assert (u["bsmtp"], u["sslcert"], u["sslkey"]) == ("/etc/fm/out", "/etc/fm/c", "/k")
    assert configdump(parse_text("set idfile ids\n", "rc"), ENV)["idfile"] == "ids"
    assert configdump(parse_text("set idfile ids\n", "/rc"), ENV)["idfile"] == "/ids"


def test_global_defaults_come_from_the_environment() -> None:
    d = dump("")
    assert (d["idfile"], d["postmaster"], d["servers"]) == (
        "/home/joe/.fetchids",
        "joe",
        [],
    )
    root = Environment(
        user="root", home="/root", fmhome="/root", is_root=True, check_files=False
    )
    assert configdump(parse_text(""), root)["postmaster"] == "postmaster"


def test_stripcr_defaults_on_with_mda() -> None:
    assert user('poll a user b mda "x"\n')["stripcr"] is True
    assert user('poll a user b mda "x" no stripcr\n')["stripcr"] is False


# ----------------------------------------------------------------- defaults


def test_defaults_merge() -> None:
    text = (
        "defaults proto pop3 uidl timeout 60 envelope 2 X-Env aka foo localdomains d1 "
        "user z pass p keep smtp q folder f1 antispam 5\n"
        "poll a envelope Y user c no keep smtp r\n"
        "poll b\n"
    )
    a, b = dump(text)["servers"]
    assert (a["protocol"], a["uidl"], a["timeout"], a["envelope"], a["envskip"]) == (
        "POP3",
        True,
        60,
        "Y",
        2,
    )
    assert (a["aka"], a["localdomains"]) == ([], ["d1"])  # aka is never inherited
    ua, ub = a["users"][0], b["users"][0]
    assert (ua["remote"], ua["password"], ua["keep"], ua["smtphunt"]) == (
        "c",
        "p",
        False,
        ["r"],
    )
    assert (ub["remote"], ub["keep"], ub["mailboxes"], ub["antispam"]) == (
        "z",
        True,
        ["f1"],
        "5",
    )


def test_defaults_zero_does_not_override_and_any_is_unset() -> None:
    s = server("defaults timeout 60 auth password\npoll a timeout 0 auth any\n")
    assert (s["timeout"], s["auth"]) == (60, "password")
    s = server("defaults bad-header accept\npoll a bad-header reject\n")
    assert s["badheader"] is True


def test_no_envelope_in_defaults_can_be_undone() -> None:
    a, b = dump("defaults no envelope\npoll a envelope Y\npoll b\n")["servers"]
    assert (a["envelope"], b["envelope"]) == ("Y", None)


def test_defaults_must_be_first_and_single() -> None:
    err = rejects("poll a\ndefaults keep\n")
    assert "defaults" in err.message
    assert err.line == 2
    rejects('poll a\npoll "defaults" keep\n')
    rejects("defaults\ndefaults\ndefaults\npoll a\n")
    # fetchmail quirk: a second defaults right after the first becomes an entry
    servers = dump("defaults keep\ndefaults fetchall\npoll a\n")["servers"]
    assert [s["pollname"] for s in servers] == ["defaults", "a"]


def test_a_quoted_defaults_name_is_a_defaults_record() -> None:
    s = server('poll "defaults" keep\npoll a\n')
    assert (s["pollname"], s["users"][0]["keep"]) == ("a", True)
    assert server('skip "defaults"\npoll a\n')["active"] is False


def test_only_defaults_yields_no_servers() -> None:
    assert dump("defaults keep\n")["servers"] == []


# ----------------------------------------------------------------- load-time checks


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("poll a auth kerberos_v4", "KERBEROS v4"),
        ("poll a auth kerberos", "KERBEROS v4"),
        ("poll a port 0", "positive port"),
        ("poll a port -5", "positive port"),
        ("poll a service 65536", "positive port"),
        ('poll a service "nosuchservice"', "positive port"),
        ("poll a proto rpop port 2000", "RPOP requires a privileged port"),
        ("poll a user b lmtp", "LMTP"),
        ('poll a user b lmtp smtp "h/25"', "LMTP"),
        ('poll a user b lmtp smtp "h/smtp"', "LMTP"),
        ("poll a user b idle folder A B", "idle"),
        ("poll a user b idle folder A\npoll c user d folder B", "idle"),
        ('poll a interface "junk"', "missing IP interface address"),
        ('poll a interface "eth0/1.2.3.400"', "invalid IP interface address"),
    ],
)
def test_load_time_checks(text: str, message: str) -> None:
    err = rejects(text + "\n")
    assert message in err.message


def test_load_time_checks_that_pass() -> None:
    assert server("poll a service 65535\n")["service"] == "65535"
    assert server('poll a service " 12"\n')["service"] == " 12"
    assert (
        server("poll a service pop3s\n".replace("pop3s", '"pop3s"'))["service"]
        == "pop3s"
    )
    assert user('poll a user b lmtp smtp "h/24" /var/run/lmtp\n')["lmtp"] is True
    assert user('poll a user b lmtp smtp "h/lmtp"\n')["smtphunt"] == ["h/lmtp"]
    assert server("poll a proto rpop port 200\n")["protocol"] == "RPOP"
    assert user("poll a user b idle folder INBOX\n")["idle"] is True


# ----------------------------------------------------------------- error reporting


def test_error_has_file_line_column_and_token() -> None:
    err = rejects("set daemon 5\n\npoll a user b\n  keep bogus\n")
    assert (err.filename, err.line, err.column, err.token) == (
        "/etc/fm/rc",
        4,
        8,
        "bogus",
    )
    assert err.render().startswith("/etc/fm/rc:4:8: ")


def test_error_at_end_of_input() -> None:
    err = rejects("poll a user\n")
    assert err.token is None
    assert "end of input" in err.message


def test_invalid_utf8_and_nuls_are_data() -> None:
    u = dump(b'poll a user b pass "\xff\xfe" is "x\x00y" here\n')["servers"][0][
        "users"
    ][0]
    assert u["localnames"] == ["x"]
    raw = parse_bytes(b'poll a user b pass "\xff\xfe"\n').servers[0].users[0].password
    assert raw is not None
    assert raw.encode("utf-8", "surrogateescape") == b"\xff\xfe"


def test_set_no_showdots_is_shown_true_like_fetchmail() -> None:
    assert dump("set no showdots\n")["showdots"] is True
    assert dump("")["showdots"] is False
    assert (
        parse_text("set no showdots\n").globals.showdots is False
    )  # the model keeps the truth


def test_extra_users_of_defaults_become_an_entry_named_defaults() -> None:
    servers = dump("defaults user a user b user c\npoll x\n")["servers"]
    assert [s["pollname"] for s in servers] == ["defaults", "x"]
    assert [u["remote"] for u in servers[0]["users"]] == ["b", "c"]
    assert servers[1]["users"][0]["remote"] == "a"
