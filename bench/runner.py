"""One measured run: refill the mailbox, run one tool, check what arrived.

A run is valid only if the listener received exactly the source messages, each
Message-ID once, each byte-identical apart from prepended trace fields, the tool
exited 0, and the source mailbox is empty after a delete run (untouched after a
keep run). Anything else is written down in ``problems`` and the run is left
out of the medians.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from bench.env import PASSWORD, SINK
from bench.job import Job
from bench.tools import Workspace
from bench.verify import check
from tests.support.dovecot import SERVER_NAME

if TYPE_CHECKING:
    from pathlib import Path

    from bench.env import Bench, Plan
    from bench.tools import Tool

_MAX_LISTED = 5  # Message-IDs quoted per problem


def run_once(
    bench: Bench, plan: Plan, tool: Tool, index: int, order: int
) -> dict[str, Any]:
    case = plan.case
    expected: dict[str, Any] = {}
    for user, count in plan.loads.items():
        expected.update(bench.store.expected(user, count))
    bench.store.load(plan.loads)

    records: Path | None = None
    if case.lmtp:
        bench.store.empty(SINK)
        deliver_port = bench.dovecot.lmtp_port
    else:
        deliver_port, records = bench.listener(case.ack)
        os.truncate(records, 0)
    job = Job(
        protocol=case.protocol,
        host=SERVER_NAME,
        port=bench.server_port(case),
        tls=case.tls,
        ca_file=bench.dovecot.ca_file,
        users=plan.users,
        password=PASSWORD,
        keep=case.keep,
        deliver_port=deliver_port,
        lmtp=case.lmtp,
        recipient=SINK,
    )
    work = _workspace(
        bench.root / "runs" / case.name / f"{tool.name}-{index}",
        tool,
        records,
        len(expected),
    )
    job.write(work.rcfile, work.job)
    _give(work, tool)

    total = sum(e.size for e in expected.values())
    started = time.time()
    m = tool.measure(work, timeout=120 + 0.25 * len(expected) + total / 2e6)

    verdicts = _read_records(records) if records is not None else _sink_verdicts(bench)
    # A download-only tool delivers nothing and deletes nothing: its exit status
    # (every listed message downloaded) is the whole check.
    problems = [] if tool.download_only else _problems(verdicts, expected)
    if m.timed_out:
        problems.insert(0, "killed: timed out")
    elif m.exit_code != 0:
        problems.insert(0, f"exit code {m.exit_code} (see {work.log})")
    if not tool.download_only:
        problems += _source_problems(bench, plan)
    delivered = len(verdicts)
    notes = Counter(v["why"] for v in verdicts if v.get("ok") and v.get("why"))
    valid = not problems
    done = len(expected) if valid else sum(1 for v in verdicts if v.get("ok"))
    return {
        "kind": "run",
        "case": case.name,
        "tool": tool.name,
        "run": index,
        "order": order,
        "started": started,
        "messages": len(expected),
        "bytes": total,
        "delivered": delivered,
        "wall_s": round(m.wall_s, 4),
        "user_s": round(m.user_s, 4),
        "sys_s": round(m.sys_s, 4),
        "cpu_s": round(m.user_s + m.sys_s, 4),
        "maxrss_kb": m.maxrss_kb,
        "rss_source": m.rss_source,
        "exit": m.exit_code,
        "valid": valid,
        "problems": problems,
        "notes": dict(notes),
        "msgs_per_s": round(done / m.wall_s, 3) if m.wall_s else 0.0,
        "mb_per_s": round((total if valid else 0) / 1e6 / m.wall_s, 3)
        if m.wall_s
        else 0.0,
    }


def _workspace(
    path: Path, tool: Tool, records: Path | None, expected: int
) -> Workspace:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return Workspace(
        dir=path,
        rcfile=path / "fetchmailrc",
        job=path / "job.json",
        log=path / "output.log",
        records=records,
        expected=expected,
    )


def _give(work: Workspace, tool: Tool) -> None:
    """fetchmail insists that its rcfile belongs to the user running it (the
    directories above are 0711 or 0755: see bench.cli)."""
    if tool.uid is None or os.geteuid() != 0:
        return
    gid = tool.gid if tool.gid is not None else -1
    for path in (work.dir, work.rcfile, work.job):
        os.chown(path, tool.uid, gid)


def _read_records(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def _sink_verdicts(bench: Bench) -> list[dict[str, Any]]:
    out = []
    for raw in bench.store.delivered(SINK):
        v = check(raw, bench.store.manifest)
        out.append({"mid": v.mid, "ok": v.ok, "why": v.why})
    return out


def _problems(verdicts: list[dict[str, Any]], expected: dict[str, Any]) -> list[str]:
    problems = []
    seen = Counter(v.get("mid") for v in verdicts)
    if len(verdicts) != len(expected):
        problems.append(f"{len(verdicts)} messages received, {len(expected)} expected")
    missing = [m for m in expected if m not in seen]
    if missing:
        problems.append(f"{len(missing)} lost: {', '.join(missing[:_MAX_LISTED])}")
    dups = [str(m) for m, n in seen.items() if n > 1]
    if dups:
        problems.append(f"{len(dups)} duplicated: {', '.join(dups[:_MAX_LISTED])}")
    strangers = [str(m) for m in seen if m not in expected]
    if strangers:
        problems.append(
            f"{len(strangers)} not from this mailbox: "
            f"{', '.join(strangers[:_MAX_LISTED])}"
        )
    bad = Counter(v.get("why", "?") for v in verdicts if not v.get("ok"))
    problems += [f"{n} altered: {why}" for why, n in bad.items()]
    return problems


def _source_problems(bench: Bench, plan: Plan) -> list[str]:
    problems = []
    for user, count in plan.loads.items():
        left = bench.store.count(user)
        if plan.case.keep and left != count:
            problems.append(f"keep: {user} has {left} of its {count} messages")
        elif not plan.case.keep and left:
            problems.append(f"delete: {left} messages left in {user}'s mailbox")
    return problems
