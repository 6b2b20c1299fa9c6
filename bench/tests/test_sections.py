"""Other benchmarks' sections of docs/benchmarks.md: written in place, kept when
``python -m bench`` regenerates the page."""

from bench import report, sections


def test_a_section_is_replaced_in_place_and_others_stay(tmp_path):
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\ngenerated part\n")
    sections.write(docs, "idle", "## IDLE\n\nfirst\n")
    sections.write(docs, "backoff", "## Backoff\n\nb\n")
    sections.write(docs, "idle", "## IDLE\n\nsecond\n")
    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\ngenerated part\n")
    assert "first" not in text and text.count("## IDLE") == 1
    assert text.index("## IDLE") < text.index("## Backoff")
    assert sections.kept(text).count("<!-- section:") == 2


def test_regenerating_the_page_keeps_the_sections(tmp_path, monkeypatch):
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# old page\n")
    sections.write(docs, "throughput", "## Whole service\n\nfigures\n")
    monkeypatch.setattr(report, "_plot", lambda *args: None)
    report.render([{"kind": "meta"}], "results.jsonl", docs)
    text = docs.read_text()
    assert "# old page" not in text
    assert "## Whole service\n\nfigures\n<!-- end: throughput -->" in text
