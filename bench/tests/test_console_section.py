"""The console bench's section of docs/benchmarks.md is a marked section
(bench/sections.py): written in place, kept when the main page is rendered."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench import sections
from bench.console import SECTION

if TYPE_CHECKING:
    from pathlib import Path


def test_the_section_is_appended_then_replaced_in_place(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nfetchmail figures\n")
    sections.write(docs, SECTION, "## Console\n\nfirst\n")
    sections.write(docs, SECTION, "## Console\n\nsecond\n")
    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nfetchmail figures\n")
    assert "second" in text and "first" not in text
    assert text.count(f"<!-- section: {SECTION} -->") == 1
    assert "second" in sections.kept(text)
