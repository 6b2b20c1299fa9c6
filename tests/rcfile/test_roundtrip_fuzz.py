"""Round trip (parse -> export -> parse) and fuzzing: no input makes the parser
raise anything but RcfileError, and parsing stays fast on hostile input."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrieval.rcfile import RcfileError, export, parse_bytes, parse_text
from retrieval.rcfile.export import quote

from .strategies import rcfile_text

CORPUS = sorted((Path(__file__).parent / "corpus").glob("*.rc"))
NAME = "/etc/fetchmail/rc"


def _parse_or_none(data: bytes) -> object:
    try:
        return parse_bytes(data, NAME)
    except RcfileError:
        return None


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_round_trips(path: Path) -> None:
    config = _parse_or_none(path.read_bytes())
    if config is None:
        return
    text = export(config)  # type: ignore[arg-type]
    assert parse_text(text, NAME) == config, text


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
@given(text=rcfile_text())
def test_generated_configs_round_trip(text: str) -> None:
    config = _parse_or_none(text.encode("utf-8", "surrogateescape"))
    if config is None:
        return
    out = export(config)  # type: ignore[arg-type]
    assert parse_text(out, NAME) == config, out


@given(st.text(min_size=0, max_size=40).filter(lambda s: "\0" not in s))
def test_any_password_round_trips_as_data(password: str) -> None:
    config = parse_text(f"poll h user u pass {quote(password)} is u here\n", NAME)
    again = parse_text(export(config), NAME)
    assert again.servers[0].users[0].password == password
    assert again.servers[0].users[0].mda is None


def test_hostile_password_stays_a_password() -> None:
    evil = '"\n mda "rm -rf /"'
    config = parse_text("poll h user u pass " + quote(evil) + " is u here\n", NAME)
    text = export(config)
    assert "\n mda" not in text
    user = parse_text(text, NAME).servers[0].users[0]
    assert (user.password, user.mda) == (evil, None)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_rcfile_error(data: bytes) -> None:
    try:
        parse_bytes(data, "fuzz")
    except RcfileError as exc:
        assert exc.line >= 1
        assert exc.render().startswith("fuzz:")


_PIECES = st.sampled_from(
    [
        "poll",
        "skip",
        "defaults",
        "set",
        "user",
        "pass",
        "is",
        "to",
        "here",
        "there",
        "=",
        "no",
        "keep",
        "nokeep",
        "auth",
        "password",
        "proto",
        "imap",
        "envelope",
        "1",
        "-2",
        '"',
        "'",
        "#",
        "\\",
        "\n",
        " ",
        ",",
        "x",
        "*",
        "\0",
        "\xff",
        "folder",
        "antispam",
        "interface",
        "service",
        "lmtp",
        "smtp",
        "idle",
        "via",
        "daemon",
        "logfile",
    ]
)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_PIECES, max_size=40))
def test_token_soup_raises_only_rcfile_error(pieces: list[str]) -> None:
    data = " ".join(pieces).encode("utf-8", "surrogateescape")
    with contextlib.suppress(RcfileError):
        parse_bytes(data, "soup")


@pytest.mark.parametrize(
    "data",
    [
        b"a" * 5_000_000,
        b'"' * 200_000,
        b"'x" * 200_000,
        b"poll a user b pass " + b"\\x41" * 500_000 + b"\n",
        b"# " + b"x" * 2_000_000,
        b"\n" * 1_000_000,
        b"poll a aka " + b"x " * 300_000 + b"\n",
        b"\0" * 1_000_000,
        bytes(range(256)) * 10_000,
    ],
    ids=[
        "long-word",
        "quotes",
        "unclosed-single",
        "escapes",
        "comment",
        "newlines",
        "long-list",
        "nuls",
        "all-bytes",
    ],
)
def test_hostile_input_is_parsed_in_bounded_time(data: bytes) -> None:
    """Each input ends in a result or an RcfileError. The suite's timeout
    (pytest-timeout, 300 s) guards against a hang; it is not a speed measure:
    these take a few seconds on a loaded machine, where a parser quadratic in
    any of them would take hours. A wall-clock threshold here failed under load."""
    with contextlib.suppress(RcfileError):
        parse_bytes(data, "big")


def test_oversized_input_is_refused() -> None:
    with pytest.raises(RcfileError):
        parse_bytes(b" " * (64 * 1024 * 1024 + 1), "huge")
