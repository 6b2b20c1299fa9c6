"""The reader of fetchmail's --configdump that the differential tests compare
against (tests/rcfile/oracle.py)."""

from __future__ import annotations

from tests.rcfile.oracle import parse_dump


def dump(body: bytes) -> bytes:
    return b"fetchmailrc = {\n" + body + b"\n}\n# End of initializer\n"


def test_a_misprinted_high_byte_does_not_end_the_string() -> None:
    """fetchmail prints each byte >= 0x80 as "\\0x" and up to two bytes of its
    memory; a run of a clean clone met a stray quote there, before a digit."""
    parsed = parse_dump(dump(b'"password":"\\0x"3\\0xQ9t", "next":"x\\0x", "n":1'))
    assert parsed == {"password": "\\0x?3\\0xQ9t", "next": "x\\0x", "n": 1}


def test_an_escaped_backslash_before_0x_is_left_alone() -> None:
    parsed = parse_dump(dump(b'"a":"x\\\\0x", "b":"\\0x41"'))
    assert parsed == {"a": "x\\0x", "b": "A"}
