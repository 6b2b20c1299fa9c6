"""Results file -> summary per case and tool -> docs/benchmarks.md and a plot.

Every figure is a median over the valid runs with the min-max range beside it.
The ratio to fetchmail is computed pair by pair (run i of a tool against run i
of fetchmail in the same case, taken back to back), then summarised the same
way, so slow drifts of a shared machine cancel out of it.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.cases import CaseError, parse_case

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

REFERENCE = "fetchmail"
# typography of the rendered page, spelled out so the source stays ASCII-clean
TIMES, DASH = "\u00d7", "\u2013"
RSS_LIMIT_KB = 64 * 1024


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread | None:
        vals = sorted(values)
        return cls(statistics.median(vals), vals[0], vals[-1]) if vals else None

    def show(self, fmt: str = "{:.3g}") -> str:
        if self.low == self.high:
            return fmt.format(self.median)
        return (
            f"{fmt.format(self.median)} "
            f"({fmt.format(self.low)}{DASH}{fmt.format(self.high)})"
        )


@dataclass
class Summary:
    case: str
    tool: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)

    @property
    def valid(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r["valid"]]

    def spread(self, key: str, scale: float = 1.0) -> Spread | None:
        return Spread.of(r[key] * scale for r in self.valid)

    @property
    def ratio(self) -> Spread | None:
        return Spread.of(self.ratios)


def load(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def summarise(records: list[dict[str, Any]]) -> dict[tuple[str, str], Summary]:
    out: dict[tuple[str, str], Summary] = {}
    for r in records:
        if r.get("kind") == "run":
            out.setdefault(
                (r["case"], r["tool"]), Summary(r["case"], r["tool"])
            ).runs.append(r)
    for (case, _), s in out.items():
        ref = out.get((case, REFERENCE))
        if ref is None or s.tool == REFERENCE:
            continue
        theirs = {r["run"]: r for r in ref.valid}
        s.ratios = [
            r["msgs_per_s"] / theirs[r["run"]]["msgs_per_s"]
            for r in s.valid
            if r["run"] in theirs and theirs[r["run"]]["msgs_per_s"] > 0
        ]
    return out


# -- targets --------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    text: str
    applies: Callable[[str], bool]
    tool: str
    kind: str  # "ratio" (at least `need` times fetchmail) or "rss" (at most `need` KiB)
    need: float


def _flags(case: str) -> tuple[str, set[str]]:
    try:
        c = parse_case(case)
    except CaseError:
        return "", set()
    mods = {
        m for m in ("keep", "delayed", "lmtp", "slow", "big", "many") if getattr(c, m)
    }
    return c.protocol, mods


def _plain(case: str, protocol: str) -> bool:
    proto, mods = _flags(case)
    return proto == protocol and mods <= {"keep"}


TARGETS = (
    Target(
        f"single mailbox, POP3, immediate-ack listener: ≥ 2{TIMES} fetchmail msgs/s",
        lambda c: _plain(c, "pop3"),
        "fetchweb",
        "ratio",
        2.0,
    ),
    Target(
        f"single mailbox, IMAP, immediate-ack listener: ≥ 3{TIMES} fetchmail msgs/s",
        lambda c: _plain(c, "imap"),
        "fetchweb",
        "ratio",
        3.0,
    ),
    Target(
        f"delayed-ACK listener: ≥ 10{TIMES} fetchmail msgs/s",
        lambda c: _flags(c)[1] == {"delayed"},
        "fetchweb",
        "ratio",
        10.0,
    ),
    Target(
        f"slow link (latency proxy): ≥ 10{TIMES} fetchmail msgs/s",
        lambda c: _flags(c)[1] == {"slow"},
        "fetchweb",
        "ratio",
        10.0,
    ),
    Target(
        "one large message (200 MB unless --big-mb): peak RSS ≤ 64 MB",
        lambda c: _flags(c)[1] == {"big"},
        "fetchweb",
        "rss",
        RSS_LIMIT_KB,
    ),
    Target(
        "many mailboxes through the full service: no slower than fetchmail",
        lambda c: _flags(c)[1] == {"many"},
        "fetchweb-service",
        "ratio",
        1.0,
    ),
)


def judge(target: Target, s: Summary | None) -> tuple[str, str]:
    """(measured, status) for one case."""
    if s is None or not s.valid:
        return "—", "not measured"
    if target.kind == "rss":
        worst = max(r["maxrss_kb"] for r in s.valid)
        return (
            f"{worst / 1024:.1f} MB (worst run)",
            "met" if worst <= target.need else "missed",
        )
    ratio = s.ratio
    if ratio is None:
        return "—", "not measured"
    status = "met" if ratio.median >= target.need else "missed"
    return f"{ratio.show('{:.2f}')}{TIMES}", status


# -- rendering ------------------------------------------------------------------


def _mb(kb: float) -> float:
    return kb / 1024


def render(records: list[dict[str, Any]], source: str, docs: Path) -> None:
    meta = next((r for r in records if r.get("kind") == "meta"), {})
    summaries = summarise(records)
    cases = list(dict.fromkeys(r["case"] for r in records if r.get("kind") == "run"))
    tools = list(dict.fromkeys(r["tool"] for r in records if r.get("kind") == "run"))
    plot = docs.with_suffix(".png")
    _plot(summaries, cases, tools, plot)
    page = _markdown(meta, records, summaries, cases, tools, source, plot.name)
    docs.write_text(page + kept_sections(docs))


_SECTION = re.compile(r"<!-- section:(\w+) -->.*?<!-- /section:\1 -->\n?", re.S)


def kept_sections(docs: Path) -> str:
    """The sections other benches wrote into ``docs`` (bench/console.py), between
    their markers: rendering the page must not drop them."""
    if not docs.exists():
        return ""
    blocks = [m.group(0).rstrip("\n") for m in _SECTION.finditer(docs.read_text())]
    return "".join(f"\n{block}\n" for block in blocks)


def _markdown(
    meta: dict[str, Any],
    records: list[dict[str, Any]],
    summaries: dict[tuple[str, str], Summary],
    cases: list[str],
    tools: list[str],
    source: str,
    plot: str,
) -> str:
    opts = meta.get("options", {})
    out = [
        "# Benchmarks",
        "",
        f"<!-- Generated by `python -m bench` from {source}; edits are overwritten. -->",
        "",
        "fetchweb's engine against fetchmail 6.4 on the same rcfile and the same "
        "mailbox, alternating, on one machine; a plain Python client "
        "(poplib/imaplib + smtplib) gives context. Reproduce with "
        "`.venv/bin/python -m bench` (see [bench/README.md](../bench/README.md)).",
        "",
    ]
    if meta.get("smoke"):
        out += [
            "> **Smoke run**: reduced sizes or cases, on a machine that was not "
            "quiet. These figures validate the harness; they are not the "
            "benchmark.",
            "",
        ]
    out += [
        "| | |",
        "| --- | --- |",
        f"| date | {meta.get('date', '?')} |",
        f"| machine | {meta.get('cpu', '?')}, {meta.get('cpus', '?')} CPUs, "
        f"load average at start {meta.get('loadavg', '?')} |",
        f"| software | {meta.get('fetchmail', '?')}; {meta.get('dovecot', '?')}; "
        f"Python {meta.get('python', '?')} |",
        f"| fetchweb commit | {meta.get('commit', '?')} |",
        f"| command | `{meta.get('command', '?')}` |",
        f"| sizes | {opts.get('runs', '?')} runs per tool and case; single mailbox: "
        f"{opts.get('messages') or 'default'} messages; many: {opts.get('users', '?')} {TIMES} "
        f"{opts.get('per_user', '?')}; big: {opts.get('big_mb', '?')} MB; slow link: "
        f"{opts.get('delay_ms', '?')} ms each way |",
        "",
        f"![messages per second, per case and tool]({plot})",
        "",
        "## Results",
        "",
        f"Median ({DASH.join(('min', 'max'))}) of the valid runs. MB = 10⁶ bytes "
        "of source messages; CPU = user + system seconds of the client process; "
        f"RSS = its peak resident set; {TIMES} fetchmail = messages/s ratio, pair "
        "by pair.",
        "",
        "| case | tool | msgs/s | MB/s | wall s | CPU s | peak RSS MB | valid "
        f"| {TIMES} fetchmail |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case in cases:
        for tool in tools:
            s = summaries.get((case, tool))
            if s is None:
                continue
            cells = [
                s.spread("msgs_per_s"),
                s.spread("mb_per_s"),
                s.spread("wall_s"),
                s.spread("cpu_s"),
                s.spread("maxrss_kb", 1 / 1024),
            ]
            shown = [c.show() if c else "—" for c in cells]
            ratio = s.ratio.show("{:.2f}") + TIMES if s.ratio else "—"
            n = s.runs[0]["messages"]
            out.append(
                f"| {case} ({n}) | {tool} | "
                + " | ".join(shown)
                + f" | {len(s.valid)}/{len(s.runs)} | {ratio} |"
            )
    out += [
        "",
        "## Targets",
        "",
        "Met when the median pairwise ratio reaches the target (no test asserts "
        "timings; this table only states it).",
        "",
        "| target | case | measured | status |",
        "| --- | --- | --- | --- |",
    ]
    for target in TARGETS:
        matched = [c for c in cases if target.applies(c)]
        if not matched:
            out.append(f"| {target.text} | — | — | case not run |")
            continue
        if not any((c, target.tool) in summaries for c in matched):
            out.append(
                f"| {target.text} | {', '.join(matched)} | — "
                f"| **not measured**: {target.tool} did not run |"
            )
            continue
        for case in matched:
            measured, status = judge(target, summaries.get((case, target.tool)))
            out.append(f"| {target.text} | {case} | {measured} | **{status}** |")
    out += _problems(records)
    out += _method()
    return "\n".join(out) + "\n"


def _problems(records: list[dict[str, Any]]) -> list[str]:
    out = ["", "## Invalid runs, notes and skipped tools", ""]
    lines = []
    for r in records:
        if r.get("kind") == "run" and not r["valid"]:
            lines.append(
                f"- **invalid** {r['case']} / {r['tool']} run {r['run']}: "
                + "; ".join(r["problems"])
            )
    notes: dict[tuple[str, str], int] = {}
    for r in records:
        if r.get("kind") == "run":
            for why, n in r.get("notes", {}).items():
                notes[(r["tool"], why)] = notes.get((r["tool"], why), 0) + n
    lines += [
        f"- note: {tool}: {why} ({n} messages; a trace field, allowed)"
        for (tool, why), n in notes.items()
    ]
    skipped = {(r["tool"], r["reason"]) for r in records if r.get("kind") == "skip"}
    lines += [f"- skipped {tool}: {reason}" for tool, reason in sorted(skipped)]
    return out + (lines or ["None."])


def _method() -> list[str]:
    return [
        "",
        "## Method",
        "",
        "- Dovecot 2.3 on loopback, started by the harness, mailboxes refilled "
        "before every run (hard links to a pristine maildir store; the index is "
        "rebuilt outside the timed part). The message mix is generated from a seed: "
        f"mostly 2{DASH}20 KB text, about one in fifteen 100 KB{DASH}2 MB with a base64 "
        "attachment (2000 messages ≈ 108 MB).",
        "- The bench SMTP listener (bench/listener.py) acknowledges either at once "
        "(TCP_NODELAY, TCP_QUICKACK after every read) or with the kernel's ordinary "
        "delayed ACKs (*delayed* cases). *lmtp* cases deliver into Dovecot's LMTP.",
        "- *slow* cases go through a proxy that delays every chunk 10 ms each way.",
        "- Every run is checked: as many messages as the source, each Message-ID "
        "once, each byte-identical to its source apart from trace fields put in "
        "front (Received:; Dovecot's LMTP also adds Return-Path: and Delivered-To:; "
        "a client may drop the source's own leading Return-Path:), the source "
        "mailbox empty after a delete run, exit code 0. A run failing any check is "
        "invalid and left out.",
        "- Wall time is from spawning the client to its exit; CPU seconds come from "
        "wait4() on it; peak RSS from GNU time, which forks the client (the "
        "harness's own wait4 would count the harness's peak too: Linux carries "
        "maxrss across exec). fetchmail runs as an unprivileged user with "
        "`--nosyslog --nodetach` and its idfile in a fresh directory.",
        "- Messages/s counts messages delivered per second of wall time. Tools take "
        "turns within each run, in rotating order.",
    ]


def _plot(
    summaries: dict[tuple[str, str], Summary],
    cases: list[str],
    tools: list[str],
    path: Path,
) -> None:
    """Messages/s per case and tool; beside it, for the ``big`` cases (one
    message: a rate says little there), peak RSS against the 64 MB target."""
    import matplotlib

    matplotlib.use("Agg")  # no display; and pick the backend before pyplot loads
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    rates = [c for c in cases if "big" not in _flags(c)[1]]
    bigs = [c for c in cases if "big" in _flags(c)[1]]
    panels = [
        p for p in ((rates, "msgs_per_s", 1.0), (bigs, "maxrss_kb", 1 / 1024)) if p[0]
    ]
    widths = [max(3.0, 0.9 * len(p[0]) + 1.5) for p in panels] or [4.0]
    fig, axes = plt.subplots(
        1,
        max(1, len(panels)),
        squeeze=False,
        figsize=(sum(widths) + 1.5, 5.5),
        gridspec_kw={"width_ratios": widths},
    )
    for ax, (names, key, scale) in zip(axes[0], panels, strict=False):
        tops = _bars(ax, summaries, names, tools, key, scale)
        if key == "msgs_per_s":
            positive = [t for t in tops if t > 0]
            if positive and max(positive) / min(positive) > 20:
                ax.set_yscale("log")  # latency-bound cases are 10-100x slower
                ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.set_ylabel(f"messages per second (median, min{DASH}max)")
            ax.set_title("throughput")
        else:
            ax.axhline(RSS_LIMIT_KB / 1024, color="red", linestyle="--", linewidth=1)
            ax.set_ylabel("peak RSS, MB (median, min" + DASH + "max)")
            ax.set_title("one large message: memory")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bars(
    ax: Any,
    summaries: dict[tuple[str, str], Summary],
    cases: list[str],
    tools: list[str],
    key: str,
    scale: float,
) -> list[float]:
    width = 0.8 / max(1, len(tools))
    tops: list[float] = []
    for i, tool in enumerate(tools):
        xs, heights, lows, highs = [], [], [], []
        for x, case in enumerate(cases):
            s = summaries.get((case, tool))
            spread = s.spread(key, scale) if s else None
            if spread is None:
                continue
            xs.append(x + (i - (len(tools) - 1) / 2) * width)
            heights.append(spread.median)
            lows.append(spread.median - spread.low)
            highs.append(spread.high - spread.median)
        ax.bar(
            xs, heights, width, label=tool, yerr=[lows, highs], capsize=2, color=f"C{i}"
        )
        tops += heights
    ax.set_xticks(range(len(cases)), cases, rotation=40, ha="right")
    ax.grid(axis="y", which="both", alpha=0.3)
    return tops
