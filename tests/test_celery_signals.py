"""fetchweb.celery: database connections before each task."""

from __future__ import annotations

import pytest
from django.db import connection

from fetchweb import celery as worker

pytestmark = pytest.mark.django_db(transaction=True)  # a worker's autocommit


def _used() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def test_a_connection_used_by_the_task_just_ended_skips_the_health_check():
    """Back-to-back tasks: no "SELECT 1" round trip before each one."""
    _used()
    worker.task_ended()
    worker.database_connections_fresh_enough()
    assert connection.connection is not None
    assert connection.health_check_done is True


def test_an_idle_connection_is_checked(monkeypatch):
    """The check is for a connection that sat idle while the database restarted."""
    _used()
    worker.task_ended()
    monkeypatch.setattr(worker, "_last_task_ended", float("-inf"))
    worker.database_connections_fresh_enough()
    assert connection.health_check_done is False  # checked at its next query
    _used()
    assert connection.health_check_done is True


def test_after_a_database_error_the_connection_is_checked(monkeypatch):
    _used()
    worker.task_ended()
    connection.errors_occurred = True
    checked = []
    real = connection.is_usable

    def is_usable():
        checked.append(1)
        return real()

    monkeypatch.setattr(connection, "is_usable", is_usable)
    worker.database_connections_fresh_enough()
    assert checked == [1] and connection.errors_occurred is False
