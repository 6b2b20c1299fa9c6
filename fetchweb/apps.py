from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class FetchwebConfig(AppConfig):
    name = "fetchweb"
    verbose_name = "fetchweb"

    def ready(self) -> None:
        from fetchweb import checks  # noqa: F401  (registers the system checks)


class FetchwebAdminConfig(AdminConfig):
    """Installed in place of ``django.contrib.admin`` so that ``admin.site`` and
    every ``@admin.register`` use the superusers-only site (fetchweb/adminsite.py)."""

    default_site = "fetchweb.adminsite.SuperuserAdminSite"
