from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "People and domains"

    def ready(self) -> None:
        from accounts import audit

        audit.connect()
