"""manage.py export_fetchmailrc --owner EMAIL | --domain NAME: mailboxes -> rcfile.

The file parses back (and imports back) to the same configuration. Mailboxes whose
server options are the same are written as one ``poll`` entry with several users;
disabled ones as ``skip`` entries. fetchweb keeps a poll interval per mailbox and
global options (``set ...``) per mailbox: where they differ, ``set daemon`` is their
greatest common divisor and each entry says its ``interval``; for other globals the
first mailbox's value is written and the command says so on stderr. A mailbox
delivered into an IMAP mailbox is left out, named with the reason in a comment
at the top of the file and on stderr (see :mod:`retrieval.rcexport`).

Passwords are left out unless ``--with-passwords``, which only a superuser may ask
for (``--as``): a placeholder comment stands where each would be (see
:mod:`retrieval.rcexport`, shared with the export pages). ``-o FILE`` writes the file atomically, readable by its owner only.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from retrieval.rcexport import ExportFailed, not_exported, rcfile_of
from retrieval.rcimport import command_scope


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step; the file is mode 0600 throughout."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Command(BaseCommand):
    help = "Write the mailboxes of --owner or --domain as a .fetchmailrc."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--owner", help="the person whose mailboxes to export")
        parser.add_argument(
            "--domain",
            help="the domain whose mailboxes to export (with --owner: only theirs)",
        )
        parser.add_argument(
            "--as",
            dest="as_email",
            metavar="EMAIL",
            help="the person exporting, whose rights count (default: the owner, "
            "or the domain's first administrator)",
        )
        parser.add_argument(
            "--with-passwords",
            action="store_true",
            help="include the passwords (superusers only)",
        )
        parser.add_argument(
            "-o",
            "--output",
            metavar="FILE",
            help="write here (mode 0600, replaced atomically) instead of stdout",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        scope = command_scope(options)
        if options["with_passwords"] and not scope.trusted:
            raise CommandError(
                f"Only a superuser may export passwords; {scope.actor.email} is not "
                "one (see --as)."
            )
        mailboxes = list(scope.mailboxes().order_by("pk").prefetch_related("rules"))
        try:
            text, notes = rcfile_of(mailboxes, with_passwords=options["with_passwords"])
        except ExportFailed as exc:
            raise CommandError(str(exc)) from exc
        left_out = [why for m in mailboxes if (why := not_exported(m))]
        for note in notes + [f"not exported: {why}" for why in left_out]:
            self.stderr.write(f"note: {note}")
        if options["output"]:
            write_private(Path(options["output"]), text)
            self.stderr.write(
                f"{len(mailboxes) - len(left_out)} mailbox(es) written to "
                f"{options['output']}."
            )
        else:
            self.stdout.write(text, ending="")
