"""manage.py poll MAILBOX_ID [-v]: one poll now, in this process, recorded like any other."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from retrieval.models import Mailbox, PollRun
from retrieval.services import mailbox_poll


class Command(BaseCommand):
    help = "Poll one mailbox now, in the foreground, and record the run."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("mailbox_id", type=int)
        # Django owns -v/--verbosity; fetchmail users type -v, so -v prints the transcript.

    def handle(self, *args: Any, **options: Any) -> None:
        mailbox_id: int = options["mailbox_id"]
        if not Mailbox.objects.filter(pk=mailbox_id).exists():
            raise CommandError(f"There is no mailbox {mailbox_id}.")
        echo = options["verbosity"] >= 2
        summary = mailbox_poll(
            mailbox_id=mailbox_id, trigger=PollRun.Trigger.COMMAND, echo=echo
        )
        self.stdout.write(str(summary))
        if summary.outcome == PollRun.Outcome.ERROR:
            raise CommandError(
                summary.error or "The poll failed.", returncode=summary.exit_code or 1
            )
