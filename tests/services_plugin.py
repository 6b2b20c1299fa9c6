"""pytest plugin: choose the test database before pytest-django reads the settings.

Loaded with ``-p tests.services_plugin`` (pyproject ``addopts``). The settings
read ``DATABASE_URL`` once, at import, and pytest-django imports them in its own
``pytest_load_initial_conftests``; so the decision is made in ours, marked
``tryfirst`` because ``-p`` plugins are registered before entry-point plugins
and pluggy would otherwise call pytest-django's (later registered) hook first.

1. ``DATABASE_URL`` already in the environment: it wins, nothing is started.
2. ``FETCHWEB_TEST_DB=sqlite``: nothing is set; the settings default to SQLite.
3. Otherwise a private PostgreSQL cluster is started on a free loopback port
   (:mod:`tests.support.postgres`) and stopped at the end of the session, unless
   the run cannot touch a database: pytest-django disabled (``-p no:django``),
   ``--help``/``--version``/``--collect-only``, or every path given lives under a
   Django-free test directory (``tests/engine``, ``tests/rcfile``).
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.postgres import PostgresCluster, PostgresError

if TYPE_CHECKING:
    from collections.abc import Iterable

_TESTS_DIR = Path(__file__).resolve().parent
# These suites must not import Django (DESIGN.md); a run limited to them needs no DB.
DJANGO_FREE_DIRS = (_TESTS_DIR / "engine", _TESTS_DIR / "rcfile")

_cluster: PostgresCluster | None = None


def postgres_cluster() -> PostgresCluster | None:
    """The cluster this plugin started for the session, if any."""
    return _cluster


def _paths_need_django(paths: Iterable[str], invocation_dir: Path) -> bool:
    paths = list(paths)
    if not paths:  # testpaths: the whole suite
        return True
    for arg in paths:
        path = (invocation_dir / arg.split("::", 1)[0]).resolve()
        if not any(path.is_relative_to(free) for free in DJANGO_FREE_DIRS):
            return True
    return False


def _wants_postgres(config: pytest.Config) -> bool:
    if "DATABASE_URL" in os.environ:
        return False
    if os.environ.get("FETCHWEB_TEST_DB", "postgres").lower() == "sqlite":
        return False
    if not config.pluginmanager.has_plugin("django"):
        return False
    options = config.known_args_namespace
    if options.help or options.version or getattr(options, "collectonly", False):
        return False
    return _paths_need_django(
        options.file_or_dir or [], Path(config.invocation_params.dir)
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    global _cluster
    if _cluster is not None or not _wants_postgres(early_config):
        return
    try:
        _cluster = PostgresCluster.start()
    except PostgresError as exc:
        raise pytest.UsageError(f"fetchweb test PostgreSQL: {exc}") from exc
    # pytest may die without unconfiguring (a crash in a hook, os._exit in a
    # child): atexit still removes the cluster then.
    atexit.register(_stop_cluster)
    os.environ["DATABASE_URL"] = _cluster.url


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "allow_network: let this test open connections beyond 127.0.0.0/8 and ::1",
    )


def pytest_report_header(config: pytest.Config) -> list[str]:
    if _cluster is not None:
        return [
            f"fetchweb: private PostgreSQL {_cluster.version} on {_cluster.url} "
            f"(started in {_cluster.startup_seconds:.2f}s)"
        ]
    if "DATABASE_URL" in os.environ:
        return ["fetchweb: DATABASE_URL from the environment"]
    return ["fetchweb: no private PostgreSQL (SQLite settings or no Django)"]


def pytest_unconfigure(config: pytest.Config) -> None:
    _stop_cluster()


def _stop_cluster() -> None:
    global _cluster
    if _cluster is None:
        return
    cluster, _cluster = _cluster, None
    cluster.stop()
    # Only ever set by us (an inherited DATABASE_URL means no cluster was started).
    os.environ.pop("DATABASE_URL", None)
