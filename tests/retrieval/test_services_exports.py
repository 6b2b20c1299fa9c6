"""retrieval.services loads its modules when a name is first asked for (issue 14:
the start-up of ``manage.py poll``): every name still resolves to its module's
object, and a process that polls loads neither Celery nor the modules it does
not use."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from retrieval import services

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.parametrize("name", services.__all__)
def test_each_name_is_its_modules_object(name):
    module, attr = services._WHERE[name]
    assert getattr(services, name) is getattr(
        importlib.import_module(f"retrieval.services.{module}"), attr
    )


def test_every_exported_name_is_listed_and_nothing_else():
    assert sorted(services.__all__) == sorted(services._WHERE)


def test_a_submodule_is_an_attribute_and_a_missing_name_an_attribute_error():
    assert services.polls is importlib.import_module("retrieval.services.polls")
    with pytest.raises(AttributeError):
        services.no_such_name  # noqa: B018


def test_the_poll_command_starts_without_celery_or_the_pages_services():
    """What ``manage.py poll`` imports before it polls: Django, the poll's
    services and the engine; Celery, kombu and the services of the pages, the
    importer and the alerts only when something uses them."""
    code = (
        "import sys, django\n"
        "django.setup()\n"
        "from django.core.management import load_command_class\n"
        "load_command_class('retrieval', 'poll')\n"
        "from retrieval.services import mailbox_poll\n"
        "heavy = ('celery', 'kombu')\n"
        "unused = ('console', 'alerts', 'imports', 'probes', 'people', 'mailboxes')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy\n"
        "    or m in {f'retrieval.services.{u}' for u in unused})\n"
        "assert not bad, bad\n"
        "import fetchweb\n"
        "assert fetchweb.celery_app.main == 'fetchweb'\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "fetchweb.settings",
        "DATABASE_URL": "sqlite:///:memory:",
    }
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)


def test_the_nightly_cleanup_is_a_crontab_in_beat():
    from celery.schedules import crontab

    from fetchweb.celery import app

    entry = app.conf.beat_schedule["delete-old-runs"]
    assert entry["schedule"] == crontab(hour=3, minute=17)
    assert entry["task"] == "retrieval.tasks.delete_old_runs"
    assert app.conf.beat_schedule["dispatch-due-polls"]["schedule"] > 0
