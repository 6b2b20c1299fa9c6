"""The Cost per message section is a marked section (bench/sections.py): written
in place by ``python -m bench.per_message`` and kept by the main renderer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench import per_message, sections

if TYPE_CHECKING:
    from pathlib import Path


def test_the_section_is_written_in_place_and_kept(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n## Results\n\ntable\n")
    texts = iter(["## Cost per message\n\nfirst\n", "## Cost per message\n\nsecond\n"])
    monkeypatch.setattr(per_message, "section", lambda *args: next(texts))
    for _ in range(2):
        per_message.main(["--before", "b", "--after", "a", "--docs", str(docs)])
    text = docs.read_text()
    assert "first" not in text and text.count("second") == 1
    assert text.startswith("# Benchmarks\n\n## Results\n\ntable\n")
    assert "second" in sections.kept(text)
