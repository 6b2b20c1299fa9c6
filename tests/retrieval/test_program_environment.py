"""The programs a poll runs on the server (mda, plugin, plugout, preconnect,
postconnect) do not inherit the worker's secrets: a poll through the service
starts each with an allow-listed environment (PATH, HOME, LANG, LC_*...), while
the command line passes its whole environment on, as fetchmail does.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import pytest

from retrieval import services
from retrieval.cli.config import polls
from retrieval.engine.wire.commands import program_environment
from retrieval.models import Mailbox, PollRun
from retrieval.rcfile.env import Environment
from retrieval.rcfile.parser import parse_text
from tests.factories import make_mailbox, make_user
from tests.support.fake_servers import FakePop3Server, FakeSmtpServer

if TYPE_CHECKING:
    from pathlib import Path

SECRETS = {
    "SECRET_KEY": "worker-secret-key",
    "FIELD_ENCRYPTION_KEYS": "worker-field-keys",
    "DATABASE_URL": "postgres://u:worker-db-password@db/fetchweb",
    "REDIS_URL": "redis://:worker-redis-password@redis:6379/0",
    "FETCH_WEBHOOK_SECRET": "worker-webhook-secret",
    "FETCH_METRICS_TOKEN": "worker-metrics-token",
}

# Writes its environment as JSON to argv[1]; reads standard input to its end
# first when argv[2] is "read" (an MDA), exits 0.
DUMP = (
    "import json, os, sys\n"
    "if sys.argv[2:] == ['read']:\n"
    "    sys.stdin.buffer.read()\n"
    "open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))\n"
)


@pytest.fixture
def dump_script(tmp_path: Path) -> Path:
    script = tmp_path / "dump_env.py"
    script.write_text(DUMP)
    return script


@pytest.fixture
def worker_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LC_TIME", "C")


def assert_scrubbed(path: Path) -> None:
    seen = json.loads(path.read_text())
    assert seen.get("PATH"), "PATH is passed"
    assert seen.get("LC_TIME") == "C", "LC_* is passed"
    for key, value in SECRETS.items():
        assert key not in seen
        assert value not in json.dumps(seen)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "program", ["mda", "preconnect", "postconnect", "plugin", "plugout"]
)
def test_a_poll_through_the_service_keeps_the_workers_secrets_from_its_programs(
    program: str, tmp_path: Path, dump_script: Path, worker_secrets: None
) -> None:
    out = tmp_path / "env.json"
    command = f"{sys.executable} {dump_script} {out}"
    fields: dict[str, object] = {}
    options: dict[str, dict[str, str]] = {}
    if program == "mda":
        fields["delivery_kind"] = Mailbox.DeliveryKind.MDA
        options = {"user": {"mda": f"{command} read"}}
    elif program in ("preconnect", "postconnect"):
        options = {"user": {program: command}}
    else:  # plugin, plugout: the program exits at once; its environment is enough
        options = {"server": {program: f"{command} %h"}}
    server = FakePop3Server([b"Subject: env\r\n\r\nbody\r\n"], user="joe")
    with server, FakeSmtpServer() as listener:
        mailbox = make_mailbox(
            make_user(superuser=True),
            password="secret",
            protocol="pop3",
            host="127.0.0.1",
            port=server.port,
            tls_mode="none",
            username="joe",
            delivery_host="127.0.0.1",
            delivery_port=listener.port,
            recipient="alice@example.org",
            timeout=5,
            options=options,
            **fields,
        )
        summary = services.mailbox_poll(mailbox_id=mailbox.pk)
    assert summary.run_id is not None
    run = PollRun.objects.get(pk=summary.run_id)
    assert out.exists(), run.transcript
    if program in ("mda", "preconnect", "postconnect"):
        assert run.outcome == PollRun.Outcome.SUCCESS, run.error
    assert_scrubbed(out)


def test_the_command_line_passes_its_whole_environment(
    tmp_path: Path, worker_secrets: None
) -> None:
    rc = parse_text(
        "poll mail.example.org proto pop3 plugin 'nc %h %p' "
        "user joe password x mda '/usr/bin/procmail -d %T'\n"
    )
    (spec,) = [p.spec for p in polls(rc, [], Environment.fixed("me@example.org"))]
    assert spec.server.inherit_env and spec.delivery.inherit_env
    assert program_environment(inherit=spec.server.inherit_env) is None  # inherit


def test_the_allow_list() -> None:
    source = {
        "PATH": "/bin",
        "HOME": "/home/w",
        "LANG": "C.UTF-8",
        "LC_ALL": "C",
        "TZ": "UTC",
        "USER": "w",
        "LOGNAME": "w",
        "SHELL": "/bin/sh",
        "TMPDIR": "/tmp",
        "PYTHONPATH": "/app",
        "DJANGO_SETTINGS_MODULE": "fetchweb.settings",
        "AWS_SECRET_ACCESS_KEY": "x",
        **SECRETS,
    }
    kept = program_environment(inherit=False, source=source)
    allowed = {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "SHELL"}
    assert kept == {k: v for k, v in source.items() if k in allowed | {"TMPDIR"}}
