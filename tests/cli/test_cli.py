"""``python -m retrieval.engine``: option parsing, merging, exit codes, the idfile.

No network and no fake servers: everything here ends before a connection (the
polls themselves are in tests/live/test_cli_dovecot.py). The merge of command
line and rcfile is compared with ``fetchmail --configdump`` given the same
options, when the fetchmail binary is installed.
"""

from __future__ import annotations

import io
import os
import pwd
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from retrieval.cli.config import check_merged, merged_config, polls
from retrieval.cli.idfile import (
    IdFile,
    IdfileBusy,
    IdfileError,
    insecure_file,
)
from retrieval.cli.main import combine_exit_codes, main
from retrieval.cli.options import (
    CommandLine,
    UsageError,
    c_int,
    parse_command_line,
)
from retrieval.engine.ports import MessageKey
from retrieval.engine.report import ExitCode
from retrieval.rcfile import Environment, configdump, parse_text
from tests.rcfile.differential import _norm, diff, oracle_env
from tests.rcfile.oracle import FETCHMAIL, Oracle, have_fetchmail, parse_dump

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def write_rc(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private $HOME (no ~/.netrc), stdin without a terminal, cwd in tmp."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("FETCHMAILHOME", raising=False)
    monkeypatch.delenv("HOME_ETC", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_needs_no_django() -> None:
    code = (
        "import sys\n"
        "import retrieval.cli.main\n"
        "bad = sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] in {'django', 'celery', 'redis', 'psycopg'})\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": ""}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    done = subprocess.run(
        [sys.executable, "-m", "retrieval.engine", "--help"],
        env=env,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert b"--fetchmailrc" in done.stdout


# ---------------------------------------------------------------- options


def test_short_options_cluster_take_attached_values_and_mix_with_servers() -> None:
    cmd = parse_command_line(["-vk", "-l5000", "one", "-f", "/x/rc", "two", "-v"])
    assert cmd.verbose == 2
    assert cmd.user.keep is True
    assert cmd.user.limit == 5000
    assert cmd.rcfile == "/x/rc"
    assert cmd.servers == ["one", "two"]


def test_later_option_wins_and_lists_grow_in_order() -> None:
    cmd = parse_command_line(["-k", "-K", "-r", "A,B", "--folder", "C", "-s"])
    assert cmd.user.keep is False
    assert cmd.user.folders == ["A", "B", "C"]
    assert cmd.silent and cmd.verbose == 0
    assert parse_command_line(["-s", "-v"]).silent is False


def test_long_options_accept_unambiguous_prefixes_and_fetchmail_aliases() -> None:
    cmd = parse_command_line(
        ["--proto", "IMAP", "--user", "bob", "--fetchall", "--sslfinger", "AA:BB"]
    )
    assert cmd.server.protocol == "imap"
    assert cmd.user.remote == "bob"
    assert cmd.user.fetchall is True
    assert cmd.user.sslfingerprint == "AA:BB"
    with pytest.raises(UsageError, match="ambiguous"):
        parse_command_line(["--sslc", "x"])


def test_relative_paths_are_taken_from_the_working_directory(home: Path) -> None:
    cmd = parse_command_line(["-f", "rc", "-i", "ids", "--sslcertfile", "ca.pem"])
    assert cmd.rcfile == f"{home}/rc"
    assert cmd.idfile == f"{home}/ids"
    assert cmd.user.sslcertfile == f"{home}/ca.pem"


@pytest.mark.parametrize(
    ("text", "value"),
    [("42", 42), ("0x10", 16), ("010", 8), ("-3", -3), ("0", 0), (" 7", 7)],
)
def test_numbers_are_read_like_strtol_base_0(text: str, value: int) -> None:
    assert c_int(text) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", "String 'abc' is not a valid number string."),
        ("12x", "String '12x' is not a valid number string."),
        ("", "String '' is not a valid number string."),
        ("99999999999", "Value of string '99999999999' is larger than 2147483647."),
    ],
)
def test_bad_numbers_are_refused_in_fetchmails_words(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        c_int(text)
    assert str(caught.value) == message


def test_auth_names_are_fetchmails_and_any_overrides_nothing() -> None:
    assert parse_command_line(["--auth", "cram"]).server.auth == "cram-md5"
    assert parse_command_line(["--auth", "kerberos"]).server.auth == "kerberos_v5"
    assert parse_command_line(["--auth", "any"]).server.auth is None
    with pytest.raises(UsageError, match="Invalid authentication `plainish'"):
        parse_command_line(["--auth", "plainish"])


def test_antispam_codes_and_zero_values_are_explicit() -> None:
    cmd = parse_command_line(["-Z", "550,,554", "-l", "0", "-B", "0"])
    assert cmd.user.antispam == [550, 554]
    # 0 given on the command line overrides the rcfile (fetchmail's NUM_VALUE_IN).
    assert (cmd.user.limit, cmd.user.fetchlimit) == (0, 0)


@pytest.mark.parametrize(
    "argv",
    [
        ["-S", "a", "-m", "procmail"],
        ["-S", "a", "-S", "b"],
        ["--bsmtp", "f", "-m", "x"],
    ],
)
def test_only_one_destination_option(argv: list[str]) -> None:
    with pytest.raises(UsageError, match="only one of --smtphost, --mda and --bsmtp"):
        parse_command_line(argv)


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--syslog"], "standard output and error"),
        (["--configdump"], "python -m retrieval.rcfile"),
        (["-d", "-1"], "give a number of seconds"),
        (["-t", "0"], "positive number of seconds"),
        (["-p", "kpop"], "KPOP is not supported"),
        (["-p", "SDPS"], "SDPS is not supported"),
        (["-p", "smtp"], "Invalid protocol `smtp'"),
        (["--bad-header", "maybe"], "Invalid bad-header policy"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_refusals_say_why(argv: list[str], reason: str) -> None:
    with pytest.raises(UsageError, match=reason):
        parse_command_line(argv)


def test_harmless_process_options_are_accepted() -> None:
    cmd = parse_command_line(["-d", "0", "-N", "--nosyslog"])
    assert cmd.given == []


def test_usage_errors_exit_5_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["--limit", "lots"], capsys)
    assert code == ExitCode.SYNTAX == 5
    assert out == ""
    assert "String 'lots' is not a valid number string." in err
    assert "--help" in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(["--help"], capsys)
    assert code == 0
    assert "--fetchmailrc" in out and "--idfile" in out


# ----------------------------------------------------------- exit codes


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ([], 1),  # nothing polled
        ([0], 0),
        ([1], 1),
        ([3, 1], 1),  # no success: the last poll's status
        ([1, 3], 3),
        ([2, 0, 3], 0),  # any success wins
        ([10, 2], 2),
    ],
)
def test_exit_codes_combine_like_fetchmail(codes: list[int], expected: int) -> None:
    assert combine_exit_codes(codes) == expected


# ------------------------------------------------------- merge and select

RC = """\
defaults proto pop3 timeout 77
poll first.example.org aka one.example.org
    user alice pass a1 keep folder INBOX smtphost mx1 limit 500
poll second.example.org via 10.0.0.2 proto imap
    user bob pass b1 fetchall
skip dormant.example.org
    user carol pass c1
"""


def merged(argv: list[str]) -> Any:
    cmd = parse_command_line(argv)
    return merged_config(parse_text(RC, "/rc"), cmd)


def polled(argv: list[str]) -> list[str]:
    config = merged(argv)
    names = parse_command_line(argv).servers
    return [p.server.name for p in polls(config, names, Environment.fixed("u"))]


def test_without_names_every_non_skip_entry_is_polled() -> None:
    assert polled([]) == ["first.example.org", "second.example.org"]


def test_names_select_entries_by_name_or_aka_and_wake_skipped_ones() -> None:
    assert polled(["dormant.example.org", "ONE.example.org"]) == [
        "first.example.org",  # file order, not command-line order
        "dormant.example.org",
    ]


def test_a_named_skip_entry_is_polled_with_its_netrc_password(home: Path) -> None:
    write_rc(home / ".netrc", "machine dormant.example.org login nc password pw\n")
    rc = "skip dormant.example.org user nc\n"
    cmd = parse_command_line(["dormant.example.org"])
    config = merged_config(parse_text(rc, "/rc"), cmd)
    (poll,) = polls(config, cmd.servers, Environment.current())
    assert poll.spec.password is not None
    assert poll.spec.password.reveal() == "pw"


def test_an_unknown_name_becomes_an_entry_with_the_defaults() -> None:
    config = merged(["new.example.org", "-u", "dave"])
    made = config.servers[-1]
    assert made.name == "new.example.org"
    assert made.options.via == "new.example.org"
    assert made.options.protocol == "pop3"  # from the defaults record
    assert made.options.timeout == 77
    assert made.users[0].remote == "dave"
    assert not made.options.skip
    assert polled(["new.example.org"]) == ["new.example.org"]


def test_command_line_overrides_and_appends_lists_like_optmerge() -> None:
    config = merged(["-K", "-l", "0", "-S", "mx2", "-r", "Archive", "-t", "9"])
    alice = config.servers[0].users[0]
    assert alice.keep is False
    assert alice.limit == 0
    assert alice.smtphost == ["mx1", "mx2"]
    assert alice.folders == ["INBOX", "Archive"]
    assert all(s.options.timeout == 9 for s in config.servers)


def _fetchmail_dump(
    oracle: Oracle, rc: bytes, argv: list[str]
) -> tuple[int, dict[str, Any] | None]:
    path = oracle.write(rc)
    try:
        kwargs: dict[str, Any] = {}
        if oracle.as_root:
            kwargs = {"user": oracle.pw.pw_uid, "group": oracle.pw.pw_gid}
            kwargs["extra_groups"] = []
        proc = subprocess.run(
            [FETCHMAIL, "--configdump", "-f", str(path), *argv],
            cwd=oracle.dir,
            env=oracle.env(),
            capture_output=True,
            timeout=30,
            check=False,
            **kwargs,
        )
    finally:
        path.unlink(missing_ok=True)
    return proc.returncode, parse_dump(proc.stdout) if proc.returncode == 0 else None


@pytest.fixture(scope="module")
def oracle() -> Iterator[Oracle]:
    if not have_fetchmail():
        pytest.skip("the fetchmail binary is not installed")
    o = Oracle()
    yield o
    o.close()


ORACLE_RC = """\
set postmaster "pm"
defaults proto pop3 timeout 77 antispam 571
poll first.example.org aka one.example.org
    user alice pass a1 keep folder INBOX smtphost mx1 limit 500 fetchlimit 4
poll second.example.org via 10.0.0.2 proto imap port 1143
    user bob pass b1 fetchall mda "/usr/bin/procmail -d %T" no sslcertck
    user eve pass e1 smtphost "/run/lmtp" dropstatus
skip dormant.example.org
    user carol pass c1 ssl sslfingerprint "AA:BB"
"""
ORACLE_CASES = [
    [],
    ["-k", "-l", "0", "-u", "zed", "-S", "mx2,mx3", "-r", "Archive,Sent"],
    ["-K", "-a", "-F", "--ssl", "--sslcertck", "-p", "IMAP", "-P", "9993"],
    ["-t", "60", "--auth", "cram-md5", "-B", "3", "-b", "2", "-e", "4"],
    ["-Z", "550,551", "--smtpname", "x@y.org", "-D", "example.org"],
    ["--nosoftbounce", "--invisible", "--nobounce", "--postmaster", "boss"],
    ["--sslproto", "", "--nosslcertck", "-S", "localhost/2424"],
    ["-m", "/usr/sbin/sendmail -i %T", "--sslfingerprint", "11:22", "-w", "0"],
    ["--limitflush", "-n", "-U", "--tracepolls", "-E", "Delivered-To", "-Q", "x-"],
    ["one.example.org", "dormant.example.org"],
    ["second.example.org", "brand.new.example.org", "-u", "newbie", "-k"],
    ["brand.new.example.org", "--bad-header", "accept", "--fetchdomains", "a,b"],
]


@pytest.mark.fetchmail
@pytest.mark.parametrize("argv", ORACLE_CASES, ids=[" ".join(a) for a in ORACLE_CASES])
def test_merge_matches_fetchmail_configdump(oracle: Oracle, argv: list[str]) -> None:
    code, theirs = _fetchmail_dump(oracle, ORACLE_RC.encode(), argv)
    assert code == 0
    config = merged_config(parse_text(ORACLE_RC, f"{oracle.dir}/rc"), cmd(argv))
    check_merged(config)
    assert diff(_norm(configdump(config, oracle_env(oracle))), _norm(theirs)) == []


@pytest.mark.fetchmail
@pytest.mark.parametrize(
    "argv", [["--lmtp"], ["-P", "no-such-service-name"]], ids=["lmtp", "service"]
)
def test_merged_checks_refuse_what_fetchmail_refuses(
    oracle: Oracle, argv: list[str]
) -> None:
    code, _dump = _fetchmail_dump(oracle, ORACLE_RC.encode(), argv)
    assert code == ExitCode.SYNTAX
    config = merged_config(parse_text(ORACLE_RC, f"{oracle.dir}/rc"), cmd(argv))
    with pytest.raises(UsageError, match="configuration invalid"):
        check_merged(config)


def cmd(argv: list[str]) -> CommandLine:
    return parse_command_line(argv)


# --------------------------------------------------- refusals before polling


def test_rcfile_readable_by_others_exits_6(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = write_rc(home / "rc", "poll a.example.org user x\n", mode=0o644)
    code, _out, err = run(["-f", str(rc)], capsys)
    assert code == ExitCode.IOERR == 6
    assert f"File {rc} must have no more than -rwx------ (0700) permissions" in err


def test_rcfile_syntax_error_exits_5_with_file_and_line(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = write_rc(home / "rc", "poll a.example.org user x\npoll b.example.org frob\n")
    code, _out, err = run(["-f", str(rc)], capsys)
    assert code == ExitCode.SYNTAX
    assert err.startswith(f"{rc}:2:")


def test_missing_rcfile_means_no_servers(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(["-f", str(home / "absent")], capsys)
    assert code == ExitCode.SYNTAX
    assert "no mail servers have been specified" in err


def test_an_option_the_engine_cannot_act_on_is_refused(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = write_rc(home / "rc", "poll a.example.org user x pass y\n")
    code, _out, err = run(["-f", str(rc), "--principal", "imap/a@R"], capsys)
    assert code == ExitCode.SYNTAX
    assert (
        "--principal is refused: the engine does not act on 'principal imap/a@R" in err
    )
    code, _out, err = run(["-f", str(rc), "--plugin", "ssh %h imapd | tee"], capsys)
    assert code == ExitCode.SYNTAX
    assert "the engine does not act on 'plugin ssh %h imapd | tee': it needs a" in err


# Options that reach the engine's spec, and the key under which the spec lists
# them when the engine cannot act on them (MailboxSpec.extra).
ENGINE_OPTIONS = [
    (["-E", "X-Original-To"], "envelope"),
    (["-Q", "virt-"], "qvirtual"),
    (["--tracepolls"], "tracepolls"),
    (["-U"], "uidl"),
    (["--idle"], "idle"),
    (["-n"], "rewrite"),
    (["-w", "60"], "warnings"),
    (["--fetchsizelimit", "5"], "fetchsizelimit"),
    (["--fastuidl", "2"], "fastuidl"),
    (["--limitflush"], "limitflush"),
    (["--plugin", "ssh %h"], "plugin"),
    (["--plugout", "ssh %h"], "plugout"),
    (["-I", "eth0/10.0.0.1"], "interface"),
    (["-M", "eth0"], "monitor"),
    (["--bad-header", "accept"], "badheader"),
    (["--fetchdomains", "a.org"], "fetchdomains"),
    (["--invisible"], "set invisible"),
    (["--showdots"], "set showdots"),
    (["--postmaster", "pm"], "set postmaster"),
    (["--nobounce"], "set bouncemail"),
    (["-p", "apop"], "protocol"),
    (["--sslproto", "SSL3"], "sslproto"),
    (["-m", "procmail -d %T | tee"], "mda"),
    (["-k", "-a", "-F", "-l", "9", "-B", "2", "-b", "1", "-e", "3"], "keep"),
    (["--ssl", "--sslcertfile", "/ca", "--smtpname", "u@h", "-Z", "554"], "ssl"),
]


@pytest.mark.parametrize(
    ("argv", "key"), ENGINE_OPTIONS, ids=[" ".join(a) for a, _k in ENGINE_OPTIONS]
)
def test_options_are_refused_exactly_when_the_engine_would_ignore_them(
    home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], key: str
) -> None:
    rc = write_rc(home / "rc", "poll a.example.org user x pass y\n")
    config = merged_config(parse_text(rc.read_text(), str(rc)), cmd(argv))
    (poll,) = polls(config, [], Environment.current())
    ignored = any(extra_key == key for extra_key, _value in poll.spec.extra)

    code, _out, err = run(["-f", str(rc), "-V", *argv], capsys)  # -V: no polling

    assert code == (ExitCode.SYNTAX if ignored else 0), err
    if ignored:
        assert f"the engine does not act on '{key} " in err


def test_lmtp_to_the_default_smtp_port_is_refused(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = write_rc(home / "rc", "poll a.example.org user x pass y smtphost mx\n")
    code, _out, err = run(["-f", str(rc), "--lmtp"], capsys)
    assert code == ExitCode.SYNTAX
    assert "LMTP can't use the default SMTP port" in err


def test_missing_password_without_a_terminal_exits_3(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = write_rc(home / "rc", "poll a.example.org user x\n")
    code, _out, err = run(["-f", str(rc)], capsys)
    assert code == ExitCode.AUTHFAIL
    assert "can't find a password for x@a.example.org." in err


def test_netrc_supplies_a_missing_password(home: Path) -> None:
    write_rc(home / ".netrc", "machine a.example.org login x password fromnetrc\n")
    rc = write_rc(home / "rc", "poll a.example.org user x\n")
    config = merged_config(parse_text(rc.read_text(), str(rc)), parse_command_line([]))
    selected = polls(config, [], Environment.current())
    assert selected[0].spec.password is not None
    assert selected[0].spec.password.reveal() == "fromnetrc"


def test_rcfile_on_stdin_needs_an_idfile(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"poll a.example.org user x pass y\n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    code, _out, err = run(["-f", "-"], capsys)
    assert code == ExitCode.SYNTAX
    assert "needs --idfile" in err


def test_every_entry_skipped_polls_nothing_and_exits_1(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = write_rc(home / "rc", "skip a.example.org user x pass y\n")
    code, out, _err = run(["-f", str(rc)], capsys)
    assert code == ExitCode.NOMAIL
    assert "nothing to poll" in out


def test_version_lists_the_polls_without_connecting(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = write_rc(
        home / "rc",
        "poll a.example.org proto imap principal imap/a@R user x pass sekrit ssl keep\n",
    )
    code, out, _err = run(["-f", str(rc), "-V", "-S", "127.0.0.1/2525"], capsys)
    assert code == 0
    assert f"idfile {rc}.fetchids" in out
    assert "IMAP as x at a.example.org:993, TLS implicit (verified)" in out
    assert "SMTP to 127.0.0.1/2525; keep." in out
    assert "The option principal 'imap/a@R' is not applied: it names" in out
    assert "sekrit" not in out


def test_idfile_in_fetchmails_format_exits_6(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = write_rc(home / "rc", "poll a.example.org user x pass y\n")
    write_rc(home / "rc.fetchids", "x@a.example.org 000001\n")
    code, _out, err = run(["-f", str(rc)], capsys)
    assert code == ExitCode.IOERR
    assert "not a fetchweb idfile (fetchmail's own .fetchids" in err


def test_idfile_in_use_by_another_poll_exits_8(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = write_rc(home / "rc", "poll a.example.org user x pass y\n")
    with IdFile.open(f"{rc}.fetchids"):
        code, _out, err = run(["-f", str(rc)], capsys)
    assert code == ExitCode.EXCLUDE == 8
    assert "Another poll is using the idfile" in err


# ------------------------------------------------------------- the idfile


def test_insecure_file_follows_fetchmail_64(tmp_path: Path) -> None:
    path = tmp_path / "f"
    assert insecure_file(str(path)) is None  # missing is fine
    path.write_text("x")
    for mode, ok in [(0o600, True), (0o700, True), (0o610, True), (0o640, False),
                     (0o620, False), (0o601, False), (0o604, False)]:  # fmt: skip
        path.chmod(mode)
        assert (insecure_file(str(path)) is None) is ok, oct(mode)
    link = tmp_path / "link"
    link.symlink_to(path)
    path.chmod(0o600)
    assert insecure_file(str(link)) is None  # followed, like stat()
    assert "must be a regular file" in (insecure_file(str(tmp_path)) or "")


@pytest.mark.fetchmail
@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700, 0o610, 0o640, 0o620, 0o604])
def test_insecure_file_agrees_with_fetchmail(
    oracle: Oracle, tmp_path: Path, mode: int
) -> None:
    """No password in the file: fetchmail 6.4 checks the mode all the same."""
    text = b"poll a.example.org proto pop3 user x\n"
    path = oracle.write(text)
    path.chmod(mode)
    kwargs: dict[str, Any] = {}
    if oracle.as_root:
        kwargs = {"user": oracle.pw.pw_uid, "group": oracle.pw.pw_gid}
        kwargs["extra_groups"] = []
    try:
        theirs = subprocess.run(
            [FETCHMAIL, "--configdump", "-f", str(path)],
            cwd=oracle.dir,
            env=oracle.env(),
            capture_output=True,
            check=False,
            **kwargs,
        )
    finally:
        path.unlink()
    ours = write_rc(tmp_path / "rc", text.decode(), mode=mode)
    assert (theirs.returncode == ExitCode.IOERR) == (
        insecure_file(str(ours)) is not None
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file away")
def test_insecure_file_must_be_owned_by_the_user(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("x")
    path.chmod(0o600)
    os.chown(path, pwd.getpwnam("nobody").pw_uid, -1)
    assert insecure_file(str(path)) == f"File {path} must be owned by you."


def test_new_uidvalidity_replaces_the_old_numbering(tmp_path: Path) -> None:
    with IdFile.open(str(tmp_path / "ids")) as ids:
        ledger = ids.ledger("imap://a@b")
        ledger.mark_delivered(MessageKey("INBOX", 1, "5"))
        ledger.mark_delivered(MessageKey("INBOX", 2, "6"))
        assert ledger.delivered_uids("INBOX", 1) == set()
        assert ledger.delivered_uids("INBOX", 2) == {"6"}
        assert ledger.last_uidvalidity("INBOX") == 2


def test_forget_missing_prunes_uids_and_partial_deliveries(tmp_path: Path) -> None:
    path = tmp_path / "ids"
    with IdFile.open(str(path)) as ids:
        ledger = ids.ledger("pop3://a@b")
        for uid in ("u1", "u2", "u3"):
            ledger.mark_delivered(MessageKey("INBOX", None, uid))
        u4, u5 = MessageKey("INBOX", None, "u4"), MessageKey("INBOX", None, "u5")
        ledger.mark_recipients_delivered(u4, ["x@y", "z@y"])
        ledger.mark_recipients_delivered(u5, ["x@y"])
        assert ledger.delivered_recipients(u4) == {"x@y", "z@y"}
        assert ledger.delivered_uids("INBOX", None) == {"u1", "u2", "u3"}
        ledger.forget_missing("INBOX", None, {"u2", "u5"})
    with IdFile.open(str(path)) as ids:
        ledger = ids.ledger("pop3://a@b")
        assert ledger.delivered_uids("INBOX", None) == {"u2"}
        assert ledger.delivered_recipients(u4) == set()
        assert ledger.delivered_recipients(u5) == {"x@y"}


def test_mailboxes_are_kept_apart_by_protocol_user_and_server(tmp_path: Path) -> None:
    with IdFile.open(str(tmp_path / "ids")) as ids:
        ids.ledger("pop3://a@b").mark_delivered(MessageKey("INBOX", None, "1"))
        assert ids.ledger("imap://a@b").delivered_uids("INBOX", None) == set()
        assert ids.ledger("pop3://a@c").delivered_uids("INBOX", None) == set()


def test_a_second_process_cannot_use_the_idfile_at_the_same_time(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "ids")
    with IdFile.open(path), pytest.raises(IdfileBusy):
        IdFile.open(path)
    IdFile.open(path).close()  # released


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"alice@mail.example.org 0000001\n", "fetchmail's own .fetchids"),
        (b"{not json", "is damaged"),
        (b'{"format": "other", "version": 1, "mailboxes": {}}', "not a fetchweb"),
        (
            b'{"format": "fetchweb-idfile", "version": 1, "mailboxes": {"k": []}}',
            "not a fetchweb",
        ),
    ],
)
def test_foreign_or_damaged_idfiles_are_refused(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "ids"
    write_rc(path, "")
    path.write_bytes(content)
    with pytest.raises(IdfileError, match=message):
        IdFile.open(str(path))


def test_an_idfile_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = write_rc(tmp_path / "ids", "", mode=0o644)
    with pytest.raises(IdfileError, match="no more than -rwx------"):
        IdFile.open(str(path))
