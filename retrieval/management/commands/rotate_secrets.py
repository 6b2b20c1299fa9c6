"""Re-encrypt every stored mailbox password with the first key of FIELD_ENCRYPTION_KEYS."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from retrieval import crypto
from retrieval.models import Mailbox


class Command(BaseCommand):
    help = (
        "Re-encrypt stored passwords with the first key in FIELD_ENCRYPTION_KEYS, "
        "so older keys can be removed afterwards."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        rotated = 0
        with transaction.atomic():
            for mailbox in Mailbox.objects.select_for_update().exclude(
                password_encrypted=""
            ):
                if crypto.needs_rotation(mailbox.password_encrypted):
                    mailbox.set_password(mailbox.get_password())
                    mailbox.save(update_fields=["password_encrypted"])
                    rotated += 1
        self.stdout.write(f"{rotated} password(s) re-encrypted.")
