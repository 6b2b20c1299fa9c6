"""The console bench's section of docs/benchmarks.md survives both writers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.console import write_section
from bench.report import kept_sections

if TYPE_CHECKING:
    from pathlib import Path


def test_the_section_is_appended_then_replaced_in_place(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nfetchmail figures\n")
    write_section(docs, "## Console\n\nfirst\n")
    write_section(docs, "## Console\n\nsecond\n")
    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nfetchmail figures\n")
    assert "second" in text and "first" not in text
    assert text.count("<!-- section:console -->") == 1


def test_rendering_the_main_page_keeps_the_section(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    write_section(docs, "## Console\n\nfigures\n")
    kept = kept_sections(docs)
    assert "<!-- section:console -->\n## Console\n\nfigures\n" in kept
    assert kept.rstrip().endswith("<!-- /section:console -->")
    assert kept_sections(tmp_path / "missing.md") == ""
