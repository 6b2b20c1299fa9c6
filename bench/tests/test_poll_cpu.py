"""bench.poll_cpu on two mailboxes: every mode runs and reports (no timing checked)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not Path("/usr/sbin/dovecot").exists(),
    reason="needs Dovecot (bin/install-system-deps)",
)


def test_two_mailboxes_with_mail_through_every_mode():
    args = ["--mailboxes", "2", "--rounds", "1", "--messages", "1"]
    result = subprocess.run(
        [sys.executable, "-m", "bench.poll_cpu", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for mode in ("task", "apply", "celery", "batch"):
        line = re.search(rf"^{mode}: +([\d.]+) ms CPU per poll .*", out, re.M)
        assert line is not None, out
        assert "2 polls: success 2" in line.group(0), line.group(0)
        assert float(line.group(1)) > 0
    # One message per mailbox and round: the warm-up, the round whose first
    # poll's statements are shown, and four modes.
    assert "messages received by the listener: 12" in out, out
    # The statements of an empty poll, then of one with mail.
    assert len(re.findall(r"^SQL statements of one poll: \d+$", out, re.M)) == 2, out
