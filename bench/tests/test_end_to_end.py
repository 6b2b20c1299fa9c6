"""The whole harness on tiny mailboxes: Dovecot, listeners, proxy, checks, page."""

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from bench.cli import main

pytestmark = pytest.mark.skipif(
    not (Path("/usr/sbin/dovecot").exists() and shutil.which("fetchmail")),
    reason="needs Dovecot and fetchmail (bin/install-system-deps)",
)
EVERY_KIND = "pop3,imaps-keep,pop3-delayed,imap-lmtp,pop3s-slow,imap-big,pop3-many"
TINY = "--messages 6 --runs 1 --users 3 --per-user 2 --big-mb 1"


@pytest.fixture
def workdir():
    """Under the system temp dir: pytest's own is 0700, and Dovecot's auth and
    login processes (other users) must traverse the servers' directory."""
    path = Path(tempfile.mkdtemp(prefix="bench-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def runs(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return [r for r in rows if r["kind"] == "run"]


def test_a_small_run_of_every_kind_is_valid_and_rendered(tmp_path, workdir):
    pytest.importorskip("matplotlib")
    out, docs = tmp_path / "r.jsonl", tmp_path / "benchmarks.md"
    args = f"--cases {EVERY_KIND} {TINY} --tools fetchmail,stdlib --out {out}"
    code = main([*args.split(), "--docs", str(docs), "--workdir", str(workdir)])
    done = runs(out)
    assert code == 0, [r["problems"] for r in done if not r["valid"]]
    assert len(done) == 14
    assert all(r["rss_source"] == "time" for r in done if shutil.which("time"))
    assert "| pop3-many (6) | fetchmail |" in docs.read_text()


def test_a_lost_message_makes_the_run_invalid(tmp_path, workdir):
    """fetchmail told to fetch only 2 of 6: the checks must say 4 were lost."""
    out = tmp_path / "r.jsonl"
    command = "fetchmail -f {rcfile} --fetchlimit 2 --idfile {idfile} --nosyslog"
    args = f"--cases pop3 {TINY} --tools fetchweb --out {out} --no-docs"
    code = main([*args.split(), "--fetchweb-cmd", command, "--workdir", str(workdir)])
    [run] = runs(out)
    assert code == 1
    assert not run["valid"]
    assert "4 lost" in " ".join(run["problems"])


def test_the_engine_timed_inside_its_process_delivers_everything(tmp_path, workdir):
    """bench/warm.py's figures replace the spawn's: the call alone, less CPU than
    the whole process (Python's and the imports' start are outside)."""
    out = tmp_path / "r.jsonl"
    args = f"--cases pop3,imap {TINY} --tools fetchweb,fetchweb-warm --out {out}"
    code = main([*args.split(), "--no-docs", "--workdir", str(workdir)])
    done = runs(out)
    assert code == 0, [r["problems"] for r in done if not r["valid"]]
    warm = [r for r in done if r["tool"] == "fetchweb-warm"]
    assert len(warm) == 2 and all(r["valid"] and r["messages"] == 6 for r in warm)
    cold = {r["case"]: r for r in done if r["tool"] == "fetchweb"}
    assert all(r["cpu_s"] < cold[r["case"]]["cpu_s"] for r in warm)
