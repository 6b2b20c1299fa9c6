"""The project's shape: settings checks, compose file, .env.example, the README's commands."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from retrieval.crypto import generate_key

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    ours = {"DATABASE_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    clean = {k: v for k, v in os.environ.items() if k not in ours}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class SettingsCheckTests:
    def test_it_refuses_production_with_development_defaults(self):
        result = _manage("check", env={"DEBUG": "false"})
        assert result.returncode != 0
        for code in (
            "fetchweb.E001",
            "fetchweb.E002",
            "fetchweb.E003",
            "fetchweb.E004",
        ):
            assert code in result.stderr

    def test_it_refuses_an_unreachable_broker(self):
        result = _manage(
            "check", env={"DEBUG": "false", "REDIS_URL": "redis://127.0.0.1:9/0"}
        )
        assert "fetchweb.E004" in result.stderr
        assert "cannot be reached" in result.stderr

    def test_it_rejects_a_mistyped_boolean(self):
        result = _manage("check", env={"DEBUG": "flase"})
        assert result.returncode != 0
        assert "DEBUG must be true or false" in result.stderr

    def test_check_deploy_is_clean_with_production_settings(self, redis_url):
        from django.conf import settings

        db = settings.DATABASES["default"]
        if db["ENGINE"].endswith("sqlite3"):
            url = ""  # the SQLite pass: only the PostgreSQL pass can show a clean check
        else:
            url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        env = {
            "DEBUG": "false",
            "SECRET_KEY": "x" * 20 + "-production-secret-key-for-the-test-" + "y" * 20,
            "FIELD_ENCRYPTION_KEYS": generate_key(),
            "REDIS_URL": redis_url,
            "ALLOWED_HOSTS": "mail.example.org",
        }
        if url:
            env["DATABASE_URL"] = url
            result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env)
            assert result.returncode == 0, result.stderr
            assert "no issues" in result.stdout
        else:
            result = _manage("check", "--deploy", env=env)
            assert "fetchweb.E002" in result.stderr


def _database_options(**env: str) -> dict[str, object]:
    """settings.DATABASES["default"]["OPTIONS"] as a fresh process reads them."""
    ours = {"DATABASE_URL", "DATABASE_TRANSACTION_POOLING"}
    clean = {k: v for k, v in os.environ.items() if k not in ours}
    code = (
        "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'fetchweb.settings'; "
        "import json; from django.conf import settings; "
        "print(json.dumps(settings.DATABASES['default'].get('OPTIONS', {})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    options: dict[str, object] = json.loads(result.stdout)
    return options


class DatabaseOptionsTests:
    POSTGRES = "postgres://fetchweb@127.0.0.1:5432/fetchweb"

    def test_postgresql_binds_parameters_apart_and_prepares_statements(self):
        options = _database_options(DATABASE_URL=self.POSTGRES)
        assert options["server_side_binding"] is True
        assert options["prepare_threshold"] == 5

    def test_behind_a_transaction_pooler_nothing_is_prepared(self):
        options = _database_options(
            DATABASE_URL=self.POSTGRES, DATABASE_TRANSACTION_POOLING="true"
        )
        assert options["prepare_threshold"] is None

    def test_sqlite_is_left_as_it_was(self):
        options = _database_options()
        assert "server_side_binding" not in options
        assert "prepare_threshold" not in options


class ComposeTests:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())

    def test_it_runs_postgres_redis_web_worker_and_beat(self):
        assert set(self.compose["services"]) == {
            "postgres",
            "redis",
            "web",
            "worker",
            "worker-interactive",
            "beat",
            "idle",
        }

    def test_app_services_share_one_image_built_by_the_dockerfile(self):
        assert (ROOT / "Dockerfile").is_file()
        for name in ("web", "worker", "worker-interactive", "beat", "idle"):
            service = self.compose["services"][name]
            assert service["build"] == "."
            assert service["image"] == "fetchweb:latest"
            assert service["environment"]["DATABASE_URL"].startswith("postgres://")
            assert service["environment"]["REDIS_URL"].startswith("redis://redis:")

    def test_commands_name_real_entry_points(self):
        from fetchweb import celery_app

        services = self.compose["services"]
        web = " ".join(services["web"]["command"])
        assert "manage.py migrate" in web and "gunicorn fetchweb.wsgi" in web
        assert services["worker"]["command"][:4] == [
            "celery",
            "-A",
            "fetchweb",
            "worker",
        ]
        assert services["beat"]["command"][:4] == ["celery", "-A", "fetchweb", "beat"]
        # Connection tests have a worker of their own (issue 11 item 4).
        from retrieval.tasks import INTERACTIVE_QUEUE, probe_connection

        route = celery_app.amqp.router.route({}, probe_connection.name)
        assert route["queue"].name == INTERACTIVE_QUEUE
        interactive = services["worker-interactive"]["command"]
        assert interactive[:4] == ["celery", "-A", "fetchweb", "worker"]
        assert interactive[interactive.index("--queues") + 1] == INTERACTIVE_QUEUE
        polls = services["worker"]["command"]
        assert INTERACTIVE_QUEUE not in polls[polls.index("--queues") + 1].split(",")
        # The IDLE push process (issue 14 item 3): a management command that exists,
        # in compose and in bin/run; the web service's /healthz checks its endpoint.
        from django.core.management import get_commands

        idle = services["idle"]["command"]
        assert idle[:3] == ["python", "manage.py", "idle"]
        assert "idle" in get_commands()
        health = idle[idle.index("--health") + 1]
        port = health.rpartition(":")[2]
        idle_health = services["web"]["environment"]["FETCH_IDLE_HEALTH"]
        assert idle_health == f"http://idle:{port}/healthz"
        assert f"127.0.0.1:{port}/healthz" in " ".join(
            services["idle"]["healthcheck"]["test"]
        )
        assert "manage.py idle --health" in (ROOT / "bin" / "run").read_text()

    def test_every_queue_a_task_is_routed_to_has_a_worker(self):
        """Issue 14: scheduled polls, "Poll now", IDLE polls and beat's tasks each
        land on a queue that a compose worker and a bin/run worker consume."""
        from fetchweb import celery_app
        from retrieval import tasks

        router = celery_app.amqp.router
        routed = {
            router.route({}, task.name, args=args)["queue"].name
            for task, args in [
                (tasks.poll_mailbox, (1,)),
                (tasks.poll_mailbox, (1, "manual")),
                (tasks.poll_mailbox, (1, "push")),
                (tasks.probe_connection, (1,)),
                (tasks.dispatch_due_polls, ()),
                (tasks.delete_old_runs, ()),
                (tasks.send_alert, (1, "failing", "")),
                (tasks.post_webhook, ("{}",)),
            ]
        }
        assert routed == {"polls", "interactive", "push", "celery"}
        consumed: set[str] = set()
        for service in self.compose["services"].values():
            command = service.get("command") or []
            if command[:4] == ["celery", "-A", "fetchweb", "worker"]:
                consumed |= set(command[command.index("--queues") + 1].split(","))
        assert routed <= consumed
        run = (ROOT / "bin" / "run").read_text()
        in_run = set()
        for queues in re.findall(r"worker --queues (\S+)", run):
            in_run |= set(queues.split(","))
        assert routed <= in_run
        # "Poll now" never waits behind the scheduled polls.
        polls = self.compose["services"]["worker"]["command"]
        assert "polls" in polls[polls.index("--queues") + 1].split(",")
        assert "interactive" not in polls[polls.index("--queues") + 1].split(",")
        assert celery_app.main == "fetchweb"
        assert (ROOT / "fetchweb" / "wsgi.py").is_file()

    def test_every_service_has_a_health_check_on_a_real_command(self):
        from django.core.management import get_commands

        services = self.compose["services"]
        assert "healthcheck" in get_commands()
        for name, service in services.items():
            test = service["healthcheck"]["test"]
            assert test[0] in ("CMD", "CMD-SHELL"), name
            text = " ".join(test[1:])
            if name in ("worker", "worker-interactive"):
                command = service["command"]
                node = command[command.index("--hostname") + 1].split("@")[0]
                # $$ is compose's escape: the container's shell sees $HOSTNAME.
                assert f"inspect ping --destination {node}@$$HOSTNAME" in text
            elif name in ("web", "beat", "idle"):
                assert "manage.py healthcheck" in text
            if name in ("web", "worker", "worker-interactive", "beat", "idle"):
                # A health check must not leave metric files behind.
                assert "env -u PROMETHEUS_MULTIPROC_DIR" in text
        web = services["web"]["healthcheck"]["test"]
        assert web[web.index("--url") + 1].endswith(":8000/healthz")

    def test_workers_write_metrics_where_the_web_service_reads_them(self):
        services = self.compose["services"]
        base = services["web"]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
        dirs = []
        for name in ("web", "worker", "worker-interactive", "beat", "idle"):
            service = services[name]
            assert f"metrics:{base}" in service["volumes"], name
            assert service["environment"]["FETCH_LOG_FORMAT"] == "json"
            if name != "web":
                own = service["environment"]["PROMETHEUS_MULTIPROC_DIR"]
                assert own.startswith(base + "/"), name
                dirs.append(own)
        assert len(set(dirs)) == len(dirs)  # process ids repeat across containers

    def test_dockerfile_copies_every_package(self):
        dockerfile = (ROOT / "Dockerfile").read_text()
        for part in (
            "fetchweb",
            "accounts",
            "retrieval",
            "templates",
            "static",
            "manage.py",
        ):
            assert re.search(rf"^COPY {part}\b", dockerfile, re.MULTILINE), part


class EnvExampleTests:
    def test_every_variable_the_settings_read_is_documented(self):
        example = (ROOT / ".env.example").read_text()
        documented = set(re.findall(r"^([A-Z_]+)=", example, re.MULTILINE))
        source = (ROOT / "fetchweb" / "settings.py").read_text()
        read = set(re.findall(r'env(?:\.\w+|_bool|_secret)\(\s*"([A-Z_]+)"', source))
        assert read, "no variables found: the pattern is stale"
        assert read - documented == set()

    def test_the_run_script_variables_are_documented(self):
        example = (ROOT / ".env.example").read_text()
        for name in ("PORT", "WORKER_CONCURRENCY", "DJANGO_SUPERUSER_EMAIL"):
            assert f"\n{name}=" in example
