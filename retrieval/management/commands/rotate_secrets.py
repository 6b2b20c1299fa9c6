"""Re-encrypt every stored secret with the first key of FIELD_ENCRYPTION_KEYS.

Two secrets live on a mailbox row: the remote password and the listener's SMTP
AUTH password (fetchmail's esmtppassword). Both must move, or removing the old
key afterwards makes the one left behind unreadable.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction
from django.db.models import Q

from retrieval import crypto
from retrieval.models import Mailbox


class Command(BaseCommand):
    help = (
        "Re-encrypt stored passwords (remote and SMTP AUTH) with the first key in "
        "FIELD_ENCRYPTION_KEYS, so older keys can be removed afterwards."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        rotated = 0
        with transaction.atomic():
            rows = Mailbox.objects.select_for_update().filter(
                ~Q(password_encrypted="") | ~Q(esmtp_password_encrypted="")
            )
            for mailbox in rows:
                fields = []
                if crypto.needs_rotation(mailbox.password_encrypted):
                    mailbox.set_password(mailbox.get_password())
                    fields.append("password_encrypted")
                if crypto.needs_rotation(mailbox.esmtp_password_encrypted):
                    mailbox.set_esmtp_password(mailbox.get_esmtp_password())
                    fields.append("esmtp_password_encrypted")
                if fields:
                    mailbox.save(update_fields=fields)
                    rotated += len(fields)
        self.stdout.write(f"{rotated} password(s) re-encrypted.")
