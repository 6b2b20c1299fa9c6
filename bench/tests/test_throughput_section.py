"""bench.throughput's page section: the kept-sessions run says how it ran and
goes to a section of its own, beside the default run's."""

from __future__ import annotations

import argparse

from bench.throughput import Figures, Pass, section, section_name


def _args(keep_sessions: int = 0, shards: int = 0) -> argparse.Namespace:
    return argparse.Namespace(
        mailboxes=10,
        workers=4,
        interval=60,
        lateness_minutes=0.0,
        cost_polls=200,
        keep_sessions=keep_sessions,
        shards=shards,
    )


def _figures(first: Pass | None = None) -> Figures:
    figures = Figures(mailboxes=10, cost_ms=1.0, cost_wall_ms=2.0, cost_statements=3)
    figures.passes["empty"] = [
        Pass("fetchmail", 10, 2.0),
        Pass("fetchweb service", 10, 1.0),
    ]
    figures.first_pass = first
    return figures


def test_the_default_run_keeps_its_section_and_words():
    args = _args()
    text = section(_figures(), args, "0.1 0.1 0.1")
    assert section_name(args) == "throughput"
    assert "one worker process with 4 pool processes" in text
    assert "--workers 4 --interval 60" in text
    assert "| empty | fetchweb service | 10 | 1.0 | 600 | 0 | 2.00x |" in text


def test_the_kept_sessions_run_has_its_own_section_and_says_so():
    args = _args(keep_sessions=300, shards=4)
    text = section(_figures(Pass("fetchweb service", 10, 5.0)), args, "0.1 0.1 0.1")
    assert section_name(args) == "throughput-kept"
    assert text.startswith("## Whole service with sessions kept between polls")
    assert "4 workers of one process each" in text
    assert "FETCH_KEEP_SESSIONS=300" in text
    assert "--keep-sessions 300 --shards 4 --interval 60" in text
    assert "a first pass over the 10 mailboxes logged each in" in text
    assert "5.0 s (120 polls/min)" in text
