"""Our JSON equals ``fetchmail --configdump`` on every corpus file, field by field;
files fetchmail rejects we reject too. Runs the real fetchmail (as ``nobody`` when
the suite runs as root)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .differential import _norm, compare, diff
from .oracle import Oracle

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.fetchmail

CORPUS = sorted((Path(__file__).parent / "corpus").glob("*.rc"))
ROOT = Path(__file__).resolve().parents[2]


def test_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 150
    assert sum(p.name.startswith("bad-") for p in CORPUS) >= 15


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_matches_fetchmail(oracle: Oracle, path: Path) -> None:
    outcome = compare(oracle, path.read_bytes())
    assert outcome.agree, outcome.explain()
    if path.name.startswith("bad-"):
        assert not outcome.theirs_ok, (
            "a bad-* corpus file must be rejected by fetchmail"
        )


CLI_SAMPLES = [
    "all-keywords.rc",
    "real-multidrop.rc",
    "real-several-servers.rc",
    "real-etrn-odmr.rc",
    "escapes.rc",
    "bad-server-after-user.rc",
]


@pytest.fixture(scope="module")
def self_oracle() -> Iterator[Oracle]:
    o = Oracle(as_self=True)
    yield o
    o.close()


@pytest.mark.parametrize("name", CLI_SAMPLES)
def test_cli_matches_fetchmail_run_by_the_same_user(
    oracle: Oracle, self_oracle: Oracle, name: str
) -> None:
    """``python -m retrieval.rcfile`` and fetchmail, both run by the current user
    (root in CI) with the same private $HOME, take the invoking user's values
    (login, home, postmaster, idfile) the same way."""
    data = (Path(__file__).parent / "corpus" / name).read_bytes()
    path = self_oracle.write(data)
    try:
        theirs = self_oracle.run_path(path)
        env = self_oracle.env() | {
            "PYTHONPATH": str(ROOT),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        ours = subprocess.run(
            [sys.executable, "-m", "retrieval.rcfile", str(path)],
            cwd=self_oracle.dir,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
    finally:
        path.unlink(missing_ok=True)
    assert "Traceback" not in ours.stderr.decode()
    if theirs.returncode != 0:
        assert ours.returncode == 5, ours.stderr
        assert ours.stdout == b""
        first = ours.stderr.decode().splitlines()[0]
        assert first.startswith(f"{path}:"), first
        return
    assert ours.returncode == 0, ours.stderr.decode()
    differences = diff(_norm(json.loads(ours.stdout)), _norm(theirs.parsed()))
    assert not differences, differences
