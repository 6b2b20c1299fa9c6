"""Re-encrypt every stored secret with the first key of FIELD_ENCRYPTION_KEYS.

Two secrets live on a mailbox row: the remote password and the listener's SMTP
AUTH password (fetchmail's esmtppassword); two more on its OAuth2 grant, the
access and refresh tokens. All must move, or removing the old key afterwards
makes the one left behind unreadable.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from retrieval import services


class Command(BaseCommand):
    help = (
        "Re-encrypt stored passwords (remote and SMTP AUTH) and OAuth2 tokens with "
        "the first key in "
        "FIELD_ENCRYPTION_KEYS, so older keys can be removed afterwards."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        rotated = services.mailbox_passwords_rotate()
        self.stdout.write(f"{rotated} password(s) re-encrypted.")
