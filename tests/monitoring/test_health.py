"""/healthz and `manage.py healthcheck`: readiness of database, broker and IDLE."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from fetchweb.logformat import JsonFormatter

pytestmark = pytest.mark.django_db


@pytest.fixture
def file_broker(settings, tmp_path):
    settings.REDIS_URL = ""
    settings.FETCH_IDLE_HEALTH = ""
    queue = tmp_path / "queue"
    queue.mkdir()
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(queue)}
    return queue


class HealthzTests:
    def test_ok_with_the_database_and_a_file_broker(self, client, file_broker):
        response = client.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {
            "status": "ok",
            "checks": {"database": "ok", "broker": "ok"},
        }

    def test_ok_with_redis(self, client, settings, redis_url):
        settings.REDIS_URL = redis_url
        settings.FETCH_IDLE_HEALTH = ""
        response = client.get("/healthz")
        assert response.status_code == 200
        assert response.json()["checks"] == {"database": "ok", "broker": "ok"}

    def test_broker_down_is_503_naming_the_broker(self, client, settings, unused_port):
        settings.FETCH_IDLE_HEALTH = ""
        settings.REDIS_URL = f"redis://:hunter2pass@127.0.0.1:{unused_port}/0"
        response = client.get("/healthz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "fail"
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["broker"].startswith("fail")
        assert "hunter2pass" not in response.content.decode()

    def test_a_missing_file_broker_folder_fails(self, client, file_broker):
        file_broker.rmdir()
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["checks"]["broker"] == "fail: FileNotFoundError"

    def test_idle_is_checked_only_when_configured(
        self, client, file_broker, settings, unused_port
    ):
        settings.FETCH_IDLE_HEALTH = f"http://127.0.0.1:{unused_port}/healthz"
        response = client.get("/healthz")
        assert response.status_code == 503
        checks = response.json()["checks"]
        assert checks["idle"].startswith("fail")
        assert checks["database"] == checks["broker"] == "ok"


class HealthcheckCommandTests:
    def test_exit_0_and_the_json_when_ready(self, file_broker):
        out = io.StringIO()
        call_command("healthcheck", stdout=out)
        assert json.loads(out.getvalue())["status"] == "ok"

    def test_exit_1_when_the_broker_is_down(self, settings, unused_port):
        settings.FETCH_IDLE_HEALTH = ""
        settings.REDIS_URL = f"redis://127.0.0.1:{unused_port}/0"
        out = io.StringIO()
        with pytest.raises(CommandError) as raised:
            call_command("healthcheck", stdout=out)
        assert raised.value.returncode == 1
        assert json.loads(out.getvalue())["checks"]["broker"].startswith("fail")

    def test_url_of_a_server_that_is_not_there(self, unused_port):
        out = io.StringIO()
        with pytest.raises(CommandError):
            call_command(
                "healthcheck", url=f"http://127.0.0.1:{unused_port}/healthz", stdout=out
            )
        assert json.loads(out.getvalue())["status"] == "fail"


class JsonFormatterTests:
    def test_one_object_per_record_with_the_extra_fields(self):
        record = logging.LogRecord(
            "fetchweb.polls", logging.INFO, __file__, 1, "run %s done", (7,), None
        )
        record.mailbox_id = 3
        record.event = "poll"
        line = JsonFormatter().format(record)
        assert "\n" not in line
        data = json.loads(line)
        assert data["message"] == "run 7 done"
        assert data["level"] == "INFO"
        assert data["logger"] == "fetchweb.polls"
        assert data["mailbox_id"] == 3 and data["event"] == "poll"
        assert "args" not in data and "msg" not in data

    def test_an_exception_stays_on_one_line(self):
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            import sys

            record = logging.LogRecord(
                "x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
            )
        line = JsonFormatter().format(record)
        assert "\n" not in line
        assert "ValueError" in json.loads(line)["exception"]


class HealthcheckProcessTests:
    def test_a_production_container_with_its_broker_down_prints_json_and_exits_1(
        self, unused_port, tmp_path
    ):
        """As compose runs it: a process of its own, DEBUG off, no system checks
        in the way of the answer."""
        import os
        import subprocess
        import sys
        from pathlib import Path

        from django.conf import settings

        root = Path(__file__).resolve().parents[2]
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}
        }
        db = settings.DATABASES["default"]
        if db["ENGINE"].endswith("postgresql"):
            env["DATABASE_URL"] = (
                f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
            )
        else:
            env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
        env.update(DEBUG="false", REDIS_URL=f"redis://127.0.0.1:{unused_port}/0")
        result = subprocess.run(
            [sys.executable, "manage.py", "healthcheck"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1, result.stderr
        body = json.loads(result.stdout)
        assert body["status"] == "fail"
        assert body["checks"]["broker"].startswith("fail")
        assert body["checks"]["database"] == "ok"
