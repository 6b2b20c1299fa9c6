"""The "Cost per message" section of docs/benchmarks.md (issue 14, item 6).

From two results files of the same cases (``pop3``, ``imap``) and tools
(``fetchmail``, ``fetchweb``, ``fetchweb-warm``, ``fetchweb-poll``,
``fetchweb-worker``, ``poplib``), one taken before a change and one after, it
writes a table per file: each tool's messages/s and CPU per message, the engine
against fetchmail (target 4x POP3, 6x IMAP), the service path (PostgreSQL
ledger) against the engine on the same mailbox (target: at most 25 % slower;
see SERVICE_RATIOS), and the engine against poplib's bare download, the
ceiling. Ratios are pair by pair (run i of one tool against run i of the other,
taken back to back), as in the main table. A tool a file lacks shows "not run".

``python -m bench.per_message --before B.jsonl --after A.jsonl [--docs FILE]``
replaces the section in the page (``python -m bench`` keeps it when it renders
the rest).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

from bench import sections
from bench.report import DASH, TIMES, Spread, load

SECTION = "## Cost per message"
TOOLS = (
    "fetchmail",
    "fetchweb",
    "fetchweb-warm",
    "fetchweb-poll",
    "fetchweb-worker",
    "poplib",
)
ENGINE_TARGET = {"pop3": 4.0, "imap": 6.0}
SERVICE_SLOWER_AT_MOST = 1.25
# (service tool, engine tool, whether the target applies), walls pair by pair.
# The target compares the service as it runs (a started worker's poll) with the
# engine command as a user runs it; the second ratio, both without start-up, is
# what the service adds to the engine; the third, both spawned, includes
# Django's start-up, which a worker pays once.
SERVICE_RATIOS = (
    ("fetchweb-worker", "fetchweb", True),
    ("fetchweb-worker", "fetchweb-warm", False),
    ("fetchweb-poll", "fetchweb", False),
)


def _runs(records: list[dict[str, Any]], case: str, tool: str) -> dict[int, Any]:
    return {
        r["run"]: r
        for r in records
        if r.get("kind") == "run"
        and r["case"] == case
        and r["tool"] == tool
        and r["valid"]
    }


def _pairwise(
    records: list[dict[str, Any]], case: str, top: str, bottom: str, key: str
) -> Spread | None:
    a, b = _runs(records, case, top), _runs(records, case, bottom)
    return Spread.of(a[i][key] / b[i][key] for i in a if i in b and b[i][key])


def _rate(records: list[dict[str, Any]], case: str, tool: str) -> str:
    runs = _runs(records, case, tool).values()
    rate = Spread.of(r["msgs_per_s"] for r in runs)
    if rate is None:
        return "not run"
    cpu = statistics.median(r["cpu_s"] / r["messages"] * 1e6 for r in runs)
    return f"{rate.show('{:.0f}')} msg/s, {cpu:.0f} \u00b5s CPU/msg"


def _ratio(spread: Spread | None, target: float | None = None, *, at_most=False) -> str:
    if spread is None:
        return "not measured"
    text = spread.show("{:.2f}") + TIMES
    if target is None:
        return text
    met = spread.median <= target if at_most else spread.median >= target
    return f"{text} ({'met' if met else 'missed'})"


def table(
    records: list[dict[str, Any]], label: str, source: str, commit: str = ""
) -> list[str]:
    meta = next((r for r in records if r.get("kind") == "meta"), {})
    options = meta.get("options", {})
    out = [
        f"**{label}** ({source}; fetchweb commit {commit or meta.get('commit', '?')}; "
        f"{options.get('runs', '?')} runs of {options.get('messages') or 2000} "
        f"messages; load average at start {meta.get('loadavg', '?')})",
        "",
        "| case | " + " | ".join(TOOLS) + f" | engine {TIMES} fetchmail | "
        "service in a worker / engine command | service / engine, both started | "
        "manage.py poll / engine command | engine / ceiling |",
        "| --- " * (len(TOOLS) + 6) + "|",
    ]
    for case in ("pop3", "imap"):
        rates = [_rate(records, case, tool) for tool in TOOLS]
        engine = _ratio(
            _pairwise(records, case, "fetchweb", "fetchmail", "msgs_per_s"),
            ENGINE_TARGET[case],
        )
        service = [
            _ratio(
                _pairwise(records, case, top, bottom, "wall_s"),
                SERVICE_SLOWER_AT_MOST if target else None,
                at_most=True,
            )
            for top, bottom, target in SERVICE_RATIOS
        ]
        ceiling = _ratio(_pairwise(records, case, "fetchweb", "poplib", "msgs_per_s"))
        out.append(
            f"| {case} | " + " | ".join([*rates, engine, *service, ceiling]) + " |"
        )
    return out


def section(
    before: Path,
    after: Path,
    before_commit: str = "",
    notes: str = "",
    after_commit: str = "",
) -> str:
    lines = [
        SECTION,
        "",
        "Issue 14, item 6: the engine command against fetchmail with the immediate-ack",
        "listener on the 2,000-message mix; the service path (lease, advisory lock,",
        "PollRun, the PostgreSQL ledger, the transcript) against the engine on the",
        "same mailbox; `poplib` downloads the mailbox with the standard library and",
        "nothing else (no delivery, no delete, no ledger): the ceiling. Targets:",
        f"engine {ENGINE_TARGET['pop3']:.0f}{TIMES} fetchmail (POP3), "
        f"{ENGINE_TARGET['imap']:.0f}{TIMES} (IMAP); the service at most 25 % slower",
        "than the engine command. `fetchweb` and `fetchweb-poll` (`manage.py poll`)",
        "are timed from spawn to exit; `fetchweb-worker` is the service as a Celery",
        "worker runs it, `services.mailbox_poll` timed inside a process that has",
        "started Django already (`bench/warm.py`); `fetchweb-warm` is the engine's",
        "run timed the same way, without its start-up. Median (min" + DASH + "max) of",
        "the valid runs; ratios pair by pair. The machine (2 cores) was shared with",
        "other jobs: the load average is given with each table, and only ratios",
        "within one table count. Reproduce: `python -m bench --cases pop3,imap",
        "--tools fetchmail,fetchweb,fetchweb-warm,fetchweb-poll,fetchweb-worker,poplib",
        "--no-docs`, then `python -m bench.per_message --before B.jsonl --after",
        "A.jsonl`.",
        "",
        *table(load(before), "Before", before.name, before_commit),
        "",
        *table(load(after), "After", after.name, after_commit),
        "",
        *([notes.strip(), ""] if notes.strip() else []),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.per_message")
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, required=True)
    ap.add_argument("--docs", type=Path, default=Path("docs/benchmarks.md"))
    ap.add_argument(
        "--before-commit", default="", help="when the before run was an export"
    )
    ap.add_argument(
        "--after-commit", default="", help="when the results file made it dirty"
    )
    ap.add_argument(
        "--notes", type=Path, help="markdown put under the tables (what changed)"
    )
    args = ap.parse_args(argv)
    sections.write(
        args.docs,
        "per-message",
        section(
            args.before,
            args.after,
            args.before_commit,
            args.notes.read_text() if args.notes else "",
            args.after_commit,
        ),
    )
    print(f"wrote the {SECTION[3:]} section of {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
