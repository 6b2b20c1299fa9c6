from __future__ import annotations

from django.apps import AppConfig


class FetchwebConfig(AppConfig):
    name = "fetchweb"
    verbose_name = "fetchweb"

    def ready(self) -> None:
        from fetchweb import checks  # noqa: F401  (registers the system checks)
