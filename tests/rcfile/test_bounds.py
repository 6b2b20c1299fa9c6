"""Bounded parser memory (issue 11, item 9).

A 10.7 MB rcfile took the parser to 2.9 GB: each user description deep-copied its
entry's server options (an ``aka`` list of N names times M users) and the
``defaults`` record's lists were deep-copied into every entry. These tests refuse
what is over the bounds with ``FILE:LINE`` and measure the peak memory of a file
just under them, shaped like the one that blew up.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tracemalloc

import pytest

from retrieval.cli.config import merged_config
from retrieval.cli.options import parse_command_line
from retrieval.rcfile import RcfileError, parse_bytes, parse_text
from retrieval.rcfile.lexer import MAX_TOKEN_BYTES
from retrieval.rcfile.parser import MAX_ENTRIES, MAX_INPUT_BYTES, MAX_LIST_ITEMS


def _wide_entry(size: int) -> bytes:
    """The shape that blew up: a defaults record and one server with the longest
    lists allowed, then as many users as fit in ``size`` bytes (and MAX_ENTRIES)."""
    domains = " ".join(f"d{i}.example.org" for i in range(MAX_LIST_ITEMS))
    aka = " ".join(f"a{i}.example.org" for i in range(MAX_LIST_ITEMS))
    out = [
        f"defaults localdomains {domains}\n",
        f"poll big.example.org proto imap aka {aka}\n",
    ]
    n = len(out[0]) + len(out[1])
    i = 0
    pad = "x" * 40
    while i < MAX_ENTRIES - 1:
        line = f"user u{i} there with password p{i}{pad} is l{i} here folder INBOX\n"
        if n + len(line) > size:
            break
        out.append(line)
        n += len(line)
        i += 1
    return "".join(out).encode()


def _run_cli(path):
    return subprocess.run(
        [sys.executable, "-m", "retrieval.rcfile", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_an_oversized_file_is_refused_with_file_and_line(tmp_path):
    rc = tmp_path / "big.rc"
    line = b"poll mail.example.org proto pop3 user joe there with password secret\n"
    rc.write_bytes(line * (MAX_INPUT_BYTES // len(line) + 10))
    result = _run_cli(rc)
    assert result.returncode == 5
    expected_line = MAX_INPUT_BYTES // len(line) + 1
    assert re.match(
        rf"^{re.escape(str(rc))}:{expected_line}: the file is larger than "
        rf"{MAX_INPUT_BYTES} bytes",
        result.stderr,
    ), result.stderr
    assert result.stdout == ""
    # and a file of the same shape just under the bound is accepted
    rc.write_bytes(_wide_entry(MAX_INPUT_BYTES))
    result = _run_cli(rc)
    assert result.returncode == 0, result.stderr[:500]


def test_a_file_just_under_the_bound_parses_in_little_memory(tmp_path):
    data = _wide_entry(MAX_INPUT_BYTES - 100)
    assert MAX_INPUT_BYTES - 200 < len(data) <= MAX_INPUT_BYTES
    tracemalloc.start()
    try:
        config = parse_bytes(data, "wide.rc")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    users = config.servers[0].users
    assert len(users) > MAX_ENTRIES // 2
    # Every user shares the one aka list instead of carrying a copy of it.
    assert len(config.servers[0].options.aka) == MAX_LIST_ITEMS
    assert len(config.servers[0].options.localdomains) == MAX_LIST_ITEMS
    print(f"\npeak {peak / 1e6:.1f} MB for {len(data)} bytes, {len(users)} users")
    # Measured 11.2 MB; with the deep copies it was hundreds of megabytes.
    assert peak < 32 * 1024 * 1024


def test_a_token_over_the_bound_is_refused_with_its_line():
    text = "poll a.example.org\n\npoll b.example.org password " + "x" * (
        MAX_TOKEN_BYTES + 1
    )
    with pytest.raises(RcfileError) as err:
        parse_text(text, "long.rc")
    assert str(err.value).startswith("long.rc:3:29: a word or quoted string longer")
    value = "z" * (MAX_TOKEN_BYTES - 2)
    config = parse_text(f'poll a.example.org password "{value}"\n')
    assert config.servers[0].users[0].password == value


def test_a_quoted_token_over_the_bound_is_refused():
    text = 'poll a.example.org password "' + "y" * MAX_TOKEN_BYTES + '"\n'
    with pytest.raises(RcfileError, match=r"^q\.rc:1:29: a word or quoted"):
        parse_text(text, "q.rc")


def test_too_many_entries_are_refused_with_the_line():
    text = "".join(f"poll m{i}.example.org\n" for i in range(MAX_ENTRIES + 1))
    with pytest.raises(RcfileError) as err:
        parse_text(text, "many.rc")
    assert str(err.value) == (
        f"many.rc:{MAX_ENTRIES + 1}: more than {MAX_ENTRIES} user descriptions "
        "in one file"
    )


def test_too_many_users_of_one_entry_are_refused_at_the_user():
    text = "poll a.example.org\n" + "".join(
        f"user u{i} is l{i} here\n" for i in range(MAX_ENTRIES + 1)
    )
    with pytest.raises(RcfileError) as err:
        parse_text(text, "users.rc")
    assert str(err.value).startswith(f"users.rc:{MAX_ENTRIES + 2}: more than")


@pytest.mark.parametrize(
    "option", ["aka", "localdomains", "folder", "smtphost", "fetchdomains", "is"]
)
def test_a_list_over_the_bound_is_refused(option):
    names = " ".join(f"n{i}" for i in range(MAX_LIST_ITEMS + 1))
    if option in ("aka", "localdomains"):
        text = f"poll a.example.org\n {option} {names}\n"
    else:
        text = f"poll a.example.org\n user joe {option} {names}\n"
    with pytest.raises(RcfileError, match=rf"^l\.rc:2:\d+: more than {MAX_LIST_ITEMS}"):
        parse_text(text, "l.rc")


def test_defaults_lists_are_shared_not_copied():
    config = parse_text("defaults folder INBOX Sent\npoll a\npoll b\n")
    first, second = (s.users[0] for s in config.servers)
    assert first.folders == ["INBOX", "Sent"]
    assert first.folders is second.folders
    # --folder appends to each entry's folders: the shared list must not grow twice
    config = parse_text("defaults folder INBOX\npoll a\npoll b\n")
    cmd = parse_command_line(["--folder", "Sent"])
    merged = merged_config(config, cmd)
    assert [s.users[0].folders for s in merged.servers] == [
        ["INBOX", "Sent"],
        ["INBOX", "Sent"],
    ]
    # and the parsed configuration itself is untouched
    assert [s.users[0].folders for s in config.servers] == [["INBOX"], ["INBOX"]]
