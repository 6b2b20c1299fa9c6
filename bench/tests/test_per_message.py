"""The Cost per message section: written into the page, kept by the main renderer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.per_message import SECTION, kept_section, replace_section

if TYPE_CHECKING:
    from pathlib import Path


def test_the_section_is_appended_then_replaced_in_place() -> None:
    page = "# Benchmarks\n\n## Results\n\ntable\n"
    once = replace_section(page, f"{SECTION}\n\nfirst\n")
    assert once.endswith(f"{SECTION}\n\nfirst\n") and once.startswith(page.rstrip())
    twice = replace_section(once + "\n## Later\n\nmore\n", f"{SECTION}\n\nsecond\n")
    assert "first" not in twice and "second" in twice
    assert twice.endswith("## Later\n\nmore\n")


def test_the_main_renderer_keeps_the_section(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    assert kept_section(docs) == ""
    docs.write_text(f"# Benchmarks\n\n{SECTION}\n\nfigures\n\n## Method\n\nx\n")
    assert kept_section(docs) == f"{SECTION}\n\nfigures\n\n"
