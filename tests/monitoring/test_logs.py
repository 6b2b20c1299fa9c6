"""FETCH_LOG_FORMAT and FETCH_LOG_LEVEL reach the logging configuration of every
process (read by settings; the workers use Django's LOGGING)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SNIPPET = (
    "import django, logging; django.setup(); "
    "logging.getLogger('fetchweb.polls').info('hello %s', 1, "
    "extra={'event': 'poll', 'run_id': 5}); "
    "logging.getLogger('fetchweb.polls').debug('hidden')"
)


def _run(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"FETCH_LOG_FORMAT", "FETCH_LOG_LEVEL", "LOG_LEVEL", "DATABASE_URL"}
    }
    return subprocess.run(
        [sys.executable, "-c", SNIPPET],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "fetchweb.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_text_is_the_default():
    result = _run()
    assert result.returncode == 0, result.stderr
    assert "INFO fetchweb.polls hello 1" in result.stderr
    assert "hidden" not in result.stderr


def test_json_lines_with_the_record_fields():
    result = _run(FETCH_LOG_FORMAT="json")
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.splitlines()
    data = json.loads(line)
    assert data["message"] == "hello 1"
    assert data["event"] == "poll" and data["run_id"] == 5


def test_the_level_is_a_setting():
    result = _run(FETCH_LOG_FORMAT="json", FETCH_LOG_LEVEL="debug")
    assert result.returncode == 0, result.stderr
    assert [json.loads(x)["message"] for x in result.stderr.splitlines()] == [
        "hello 1",
        "hidden",
    ]
    assert "hello" not in _run(FETCH_LOG_LEVEL="WARNING").stderr


def test_an_unknown_format_is_refused():
    result = _run(FETCH_LOG_FORMAT="xml")
    assert result.returncode != 0
    assert "FETCH_LOG_FORMAT must be text or json" in result.stderr
