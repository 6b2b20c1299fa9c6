"""The Django project: settings, URLs, WSGI entry point and the Celery app."""

from __future__ import annotations

from fetchweb.celery import app as celery_app

__all__ = ["celery_app"]
