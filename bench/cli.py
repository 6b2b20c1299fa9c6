"""``python -m bench``: run the benchmark, write bench/results/*.jsonl, render
docs/benchmarks.md and docs/benchmarks.png.

Examples::

    .venv/bin/python -m bench                                   # everything (~30 min)
    .venv/bin/python -m bench --cases pop3,imap --messages 200  # smoke run, < 1 min
    .venv/bin/python -m bench --render bench/results/X.jsonl    # redo the docs only
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import report
from bench.cases import DEFAULT_CASES, CaseError, parse_cases
from bench.env import Bench, Sizes, plan
from bench.runner import run_once
from bench.tools import ALL_TOOLS, REPO, Tool, Unavailable, make_tools

RESULTS = REPO / "bench" / "results"
DOCS = REPO / "docs" / "benchmarks.md"
DEFAULTS = {"runs": 3, "users": 200, "per_user": 20, "big_mb": 200}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--cases",
        default="all",
        help="comma-separated case names, or 'all' (see --list)",
    )
    ap.add_argument(
        "--tools",
        default="fetchmail,fetchweb,stdlib,fetchweb-service",
        help=f"comma-separated, from: {', '.join(ALL_TOOLS)}",
    )
    ap.add_argument(
        "--runs",
        type=int,
        default=DEFAULTS["runs"],
        help="measured runs per tool and case (default 3)",
    )
    ap.add_argument(
        "--messages",
        type=int,
        help="messages in the single mailbox (default: 2000, and 500 "
        "in the latency-bound delayed/slow cases)",
    )
    ap.add_argument(
        "--users",
        type=int,
        default=DEFAULTS["users"],
        help="mailboxes in the 'many' cases (default 200)",
    )
    ap.add_argument(
        "--per-user",
        type=int,
        default=DEFAULTS["per_user"],
        help="messages per mailbox in the 'many' cases (default 20)",
    )
    ap.add_argument(
        "--big-mb",
        type=int,
        default=DEFAULTS["big_mb"],
        help="size of the message in the 'big' cases (default 200)",
    )
    ap.add_argument(
        "--delay-ms",
        type=float,
        default=10.0,
        help="one-way delay of the slow link (default 10)",
    )
    ap.add_argument("--seed", default="fetchweb-bench", help="message mix seed")
    ap.add_argument(
        "--fetchweb-cmd",
        help="fetchweb command template, default: "
        "'{python} -m retrieval.engine -f {rcfile} --idfile {idfile}'",
    )
    ap.add_argument(
        "--out", type=Path, help="results file (default bench/results/DATE.jsonl)"
    )
    ap.add_argument("--docs", type=Path, default=DOCS, help="markdown to render")
    ap.add_argument("--no-docs", action="store_true", help="do not render the docs")
    ap.add_argument(
        "--workdir",
        type=Path,
        help="where to make the servers' temporary directory (default: "
        "the system's temp dir; it must be traversable by 'nobody')",
    )
    ap.add_argument(
        "--keep-tmp",
        action="store_true",
        help="keep the servers' directory (logs, maildirs) afterwards",
    )
    ap.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS",
        help="only render the docs from an existing results file",
    )
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        print("\n".join(DEFAULT_CASES))
        return 0
    if args.render:
        report.render(report.load(args.render), _rel(args.render), args.docs)
        print(f"rendered {args.docs}")
        return 0
    try:
        cases = parse_cases(args.cases)
        tools = make_tools(
            [t.strip() for t in args.tools.split(",") if t.strip()], args.fetchweb_cmd
        )
    except (CaseError, ValueError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    return _run(args, cases, tools)


def _run(args: argparse.Namespace, cases: list[Any], tools: list[Tool]) -> int:
    os.umask(0o022)  # fetchmail runs as another user: directories must be traversable
    usable, skipped = [], []
    for tool in tools:
        try:
            tool.check()
            usable.append(tool)
        except Unavailable as exc:
            skipped.append((tool.name, str(exc)))
            print(f"skipping {tool.name}: {exc}")
    sizes = Sizes(args.messages, args.users, args.per_user, args.big_mb)
    plans = [plan(c, sizes) for c in cases]
    meta = _meta(args, cases, tools)
    suffix = "-smoke" if meta["smoke"] else ""
    out = args.out or RESULTS / f"{dt.datetime.now():%Y%m%d-%H%M%S}{suffix}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="fetchweb-bench-", dir=args.workdir))
    root.chmod(0o711)
    bench = Bench(root, seed=args.seed, delay_ms=args.delay_ms)
    invalid = 0
    try:
        print(f"preparing {len(plans)} case(s) in {root} ...", flush=True)
        bench.start(plans, args.big_mb)
        with out.open("w") as results:
            _write(results, meta)
            for p in plans:
                for name, reason in skipped:
                    _write(
                        results,
                        {
                            "kind": "skip",
                            "case": p.case.name,
                            "tool": name,
                            "reason": reason,
                        },
                    )
                fits = [
                    t
                    for t in usable
                    if (p.case.many or not t.many_only)
                    and (p.case.single or not t.single_only)
                ]
                for i in range(args.runs):
                    # rotate the order so that no tool always goes first
                    turn = fits[i % len(fits) :] + fits[: i % len(fits)] if fits else []
                    for order, tool in enumerate(turn):
                        record = run_once(bench, p, tool, i, order)
                        invalid += not record["valid"]
                        _write(results, record)
                        _progress(record)
    finally:
        bench.stop()
        if args.keep_tmp or invalid:
            print(f"servers' files, logs and failed messages kept in {root}")
            shutil.rmtree(root / "store", ignore_errors=True)  # the bulky part
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"results: {_rel(out)}")
    if not args.no_docs:
        report.render(report.load(out), _rel(out), args.docs)
        print(f"rendered {_rel(args.docs)} and {_rel(args.docs.with_suffix('.png'))}")
    return 1 if invalid else 0


def _write(results: Any, record: dict[str, Any]) -> None:
    results.write(json.dumps(record) + "\n")
    results.flush()


def _progress(r: dict[str, Any]) -> None:
    state = "ok" if r["valid"] else "INVALID: " + "; ".join(r["problems"])
    print(
        f"{r['case']:16} {r['tool']:10} run {r['run']}: {r['msgs_per_s']:9.1f} msg/s "
        f"{r['mb_per_s']:7.2f} MB/s {r['wall_s']:8.2f} s  cpu {r['cpu_s']:7.2f} s  "
        f"rss {r['maxrss_kb'] / 1024:7.1f} MB  {state}",
        flush=True,
    )


def _rel(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(REPO))
    return str(path)


def _output(*argv: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=10, cwd=REPO
        )
        return done.stdout + done.stderr
    return ""


def _meta(
    args: argparse.Namespace, cases: list[Any], tools: list[Tool]
) -> dict[str, Any]:
    fetchmail = next(
        (
            line.strip().rstrip(".").replace("This is fetchmail release ", "fetchmail ")
            for line in _output("fetchmail", "--version").splitlines()
            if "release" in line
        ),
        "fetchmail ?",
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "?",
    )
    commit = _output("git", "rev-parse", "--short", "HEAD").strip() or "?"
    if _output("git", "status", "--porcelain").strip():
        commit += " (with uncommitted changes)"
    smoke = (
        args.messages is not None
        or args.runs < DEFAULTS["runs"]
        or [c.name for c in cases] != list(DEFAULT_CASES)
        or any(getattr(args, k) < v for k, v in DEFAULTS.items())
    )
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    return {
        "kind": "meta",
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "fetchmail": fetchmail,
        "dovecot": "Dovecot " + _output("/usr/sbin/dovecot", "--version").strip(),
        "commit": commit,
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "options": options,
        "smoke": smoke,
        "tools": {t.name: t.description for t in tools},
    }
