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


def _run(case: str, tool: str, run: int, wall: float) -> dict[str, object]:
    return {
        "kind": "run",
        "case": case,
        "tool": tool,
        "run": run,
        "valid": True,
        "wall_s": wall,
        "msgs_per_s": 2000 / wall,
        "cpu_s": wall / 2,
        "messages": 2000,
    }


def test_the_service_target_is_the_worker_against_the_engine_command() -> None:
    walls = {"fetchweb": (1.0, 2.0), "fetchweb-warm": (0.8, 1.6)}
    walls["fetchweb-worker"] = (1.2, 2.6)  # 1.2x and 1.3x the command
    records = [
        _run(case, tool, i, wall)
        for case in ("pop3", "imap")
        for tool, pair in walls.items()
        for i, wall in enumerate(pair)
    ]
    rows = [line for line in per_message.table(records, "After", "x") if "| pop3" in line]
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    header = per_message.table(records, "After", "x")[2]
    heads = [cell.strip() for cell in header.strip("|").split("|")]
    row = dict(zip(heads, cells, strict=True))
    assert row["fetchweb-poll"] == "not run"
    assert row["service in a worker / engine command"] == "1.25 (1.20\u20131.30)\u00d7 (met)"
    assert row["service / engine, both started"] == "1.56 (1.50\u20131.62)\u00d7"
    assert row["manage.py poll / engine command"] == "not measured"
