"""The Celery app. Workers and beat read their configuration from Django settings."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fetchweb.settings")

app = Celery("fetchweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
