"""The Django project: settings, URLs, WSGI entry point and the Celery app.

The Celery app (fetchweb/celery.py) is not loaded with the package: Celery and
kombu are a tenth of a second of every Django process's start, and most never
send a task (``manage.py poll``, migrations). ``celery -A fetchweb`` finds
``fetchweb.celery`` by itself, ``retrieval/tasks.py`` imports it (so a task
queued from a page goes through this app), and ``fetchweb.celery_app`` still
names it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fetchweb.celery import app as celery_app
else:

    def __getattr__(name: str) -> object:
        if name == "celery_app":
            from fetchweb.celery import app

            return app
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["celery_app"]
