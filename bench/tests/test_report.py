import pytest

from bench.job import Job
from bench.report import Spread, render, summarise


def run(case, tool, i, rate, valid=True, rss=10_000):
    return {
        "kind": "run",
        "case": case,
        "tool": tool,
        "run": i,
        "valid": valid,
        "msgs_per_s": rate,
        "mb_per_s": rate / 20,
        "wall_s": 100 / rate,
        "cpu_s": 1.0,
        "maxrss_kb": rss,
        "messages": 100,
        "problems": [],
        "notes": {},
    }


RECORDS = [
    {"kind": "meta", "options": {"runs": 3}, "smoke": True},
    run("pop3", "fetchmail", 0, 100),
    run("pop3", "fetchweb", 0, 300),
    run("pop3", "fetchmail", 1, 200),
    run("pop3", "fetchweb", 1, 300),
    run("pop3", "fetchmail", 2, 100),
    run("pop3", "fetchweb", 2, 9999, valid=False),
    run("pop3-big", "fetchmail", 0, 1),
    run("pop3-big", "fetchweb", 0, 2, rss=80_000),
    {"kind": "skip", "case": "pop3", "tool": "fetchweb-service", "reason": "not wired"},
]


def test_ratios_are_paired_by_run_and_skip_invalid_runs():
    s = summarise(RECORDS)[("pop3", "fetchweb")]
    assert sorted(s.ratios) == [1.5, 3.0]
    assert s.spread("msgs_per_s") == Spread(300, 300, 300)


def test_the_page_states_targets_and_problems(tmp_path):
    pytest.importorskip("matplotlib")
    docs = tmp_path / "benchmarks.md"
    render(RECORDS, "results.jsonl", docs)
    text = docs.read_text()
    assert "Smoke run" in text
    assert "| pop3 | 2.25" in text and "**met**" in text  # POP3 target 2x
    assert "78.1 MB (worst run) | **missed**" in text  # RSS target
    assert "skipped fetchweb-service: not wired" in text
    assert (tmp_path / "benchmarks.png").stat().st_size > 1000


def test_the_rcfile_says_what_the_job_says():
    job = Job(
        protocol="imap",
        host="localhost",
        port=1993,
        tls=True,
        ca_file="/ca.pem",
        users=("u1", "u2"),
        password='p"w',
        keep=True,
        deliver_port=2525,
        lmtp=False,
        recipient="sink",
    )
    text = job.rcfile()
    assert "poll localhost service 1993 protocol IMAP" in text
    assert text.count('with password "p\\"w"') == 2
    assert 'ssl sslcertck sslcertfile "/ca.pem"' in text
    assert "    keep\n" in text and 'smtphost "127.0.0.1/2525"\n' in text
    plain = Job(**{**job.__dict__, "tls": False, "keep": False, "lmtp": True}).rcfile()
    assert "sslproto ''" in plain and "no keep" in plain and " lmtp" in plain
