"""``# fetchweb: delete-after-days N``: our option as a comment fetchmail skips.

The exporter writes it on the user description; our parser reads it back into
``UserOptions.delete_after_days`` (and the spec); fetchmail itself parses the
exported file as if the line were not there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from retrieval.rcfile import configdump, parse_text
from retrieval.rcfile.export import export
from retrieval.rcfile.specs import user_spec

from .test_parser import ENV

if TYPE_CHECKING:
    from .oracle import Oracle


TEXT = """\
defaults
    # fetchweb: delete-after-days 90
    keep
poll mail.example.org proto imap
    user "alice" there password "secret" keep fetchall
    # fetchweb: delete-after-days 30
    user "bob" there password "other" keep
poll pop.example.org proto pop3
    user "carol" there password "third" no keep
# fetchweb: delete-after-days 7
poll last.example.org proto pop3 user "dave" there password "fourth"
#fetchweb:delete-after-days 3
"""


def days(text: str) -> list[tuple[str, int | None]]:
    config = parse_text(text, "/home/alice/.fetchmailrc")
    return [
        (u.remote or "", u.delete_after_days) for s in config.servers for u in s.users
    ]


def test_the_comment_belongs_to_the_user_description_it_follows() -> None:
    assert days(TEXT) == [
        ("alice", 30),  # its own, after its options
        ("bob", 90),  # the defaults record's
        ("carol", 7),  # the comment before the next entry ends carol's options
        ("dave", 3),  # written without blanks, at the end of the file
    ]


def test_other_comments_stay_comments() -> None:
    text = (
        "# fetchweb: delete-after-days\n"  # no number
        "# fetchweb: delete-after-days 5 days\n"  # more words
        "# delete-after-days 5\n"
        'poll a proto pop3 user "u" there password "p" keep\n'
        "    # fetchweb: delete-after-days -5\n"
    )
    assert days(text) == [("u", None)]


def test_the_export_writes_it_and_reads_it_back() -> None:
    config = parse_text(TEXT, "/home/alice/.fetchmailrc")
    written = export(config)
    assert "# fetchweb: delete-after-days 30" in written
    again = parse_text(written, "/home/alice/.fetchmailrc")
    assert again == config
    assert [u.delete_after_days for s in again.servers for u in s.users] == [
        30,
        90,
        7,
        3,
    ]


def test_it_reaches_the_engine_spec() -> None:
    config = parse_text(TEXT, "/rc")
    specs = [
        user_spec(config.globals, s.options, u, ENV)
        for s in config.servers
        for u in s.users
    ]
    assert [(s.username, s.keep, s.delete_after_days) for s in specs] == [
        ("alice", True, 30),
        ("bob", True, 90),
        ("carol", False, 7),  # stored; the engine notes it does nothing here
        ("dave", True, 3),
    ]


def test_fetchmail_parses_the_export_as_if_the_comment_were_not_there(
    oracle: Oracle,
) -> None:
    config = parse_text(TEXT, "/home/alice/.fetchmailrc")
    written = export(config).encode()
    without = b"".join(
        line
        for line in written.splitlines(keepends=True)
        if b"fetchweb: delete-after-days" not in line
    )
    theirs = oracle.run(written)
    assert theirs.accepted, theirs.stderr
    assert theirs.parsed() == oracle.run(without).parsed()
    # And our dump (fetchmail's keys) does not show it either.
    assert configdump(config, ENV) == configdump(parse_text(without.decode()), ENV)


@pytest.mark.parametrize("number", ["0", "1", "36500"])
def test_the_number_is_kept_as_written(number: str) -> None:
    text = f'poll a proto pop3 user "u" there password "p" keep\n# fetchweb: delete-after-days {number}\n'
    assert days(text) == [("u", int(number))]
