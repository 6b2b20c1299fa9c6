"""manage.py import_fetchmailrc FILE --owner EMAIL | --domain NAME: rcfile -> mailboxes.

Every user description of every entry (``skip`` ones too, disabled) becomes one
Mailbox with its delivery target, multidrop rules and options (see
:mod:`retrieval.rcmap`). Everything is checked, and written in one transaction: a
file with one refused line imports nothing, and every refusal is listed as
FILE:LINE: why (an entry refused by a quota too). The import pages run the same
checks and writes (services.rcfile_import); they list the refused entries and
store the others.

Who may set what: see :mod:`retrieval.rcimport` (the import pages share it).

``--domain`` alone: the mailboxes belong to the domain and to its first
administrator by address; ``--owner`` names another owner, who must be an
administrator or a member of the domain. Importing is for the owner, a superuser,
or an administrator of the domain (the owner's, or ``--domain``).

The same remote account imported again is updated in place, so its record of
delivered messages is kept; a password missing from the file keeps the stored
one. The same account is: same protocol, server name, port (the protocol's
usual one when none is given) and user name, among the owner's mailboxes (the
domain's, for ``--domain`` without ``--owner``). Two entries for one account
(different folders, say) stay two mailboxes, matched in file order.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from retrieval import services
from retrieval.rcfile import RcfileError, parse_file
from retrieval.rcfile.export import quote
from retrieval.rcimport import command_scope, import_environment

if TYPE_CHECKING:
    from retrieval.rcimport import Entry

PS_SYNTAX = 5  # fetchmail's exit status for a file it cannot accept
PS_IOERR = 6


class Command(BaseCommand):
    help = (
        "Import a .fetchmailrc: one mailbox per user entry, for --owner or --domain. "
        "Refuses, with file:line, what the importing person may not set."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the rcfile")
        parser.add_argument("--owner", help="the person the mailboxes belong to")
        parser.add_argument(
            "--domain",
            help="the domain the mailboxes belong to; the owner is --owner, else "
            "the domain's first administrator (by address)",
        )
        parser.add_argument(
            "--as",
            dest="as_email",
            metavar="EMAIL",
            help="the person importing, whose rights count (default: the owner)",
        )
        parser.add_argument(
            "--netrc",
            help="where passwords missing from the file are looked up "
            "(default: ~/.netrc of the user running this command, as fetchmail)",
        )
        parser.add_argument(
            "--login",
            help="the login name a missing 'user' stands for "
            "(default: the owner's address before the @)",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="check and report everything, save nothing",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        scope = command_scope(options)
        path = str(Path(options["file"]).absolute())
        try:
            config = parse_file(path)
        except OSError as exc:
            raise CommandError(
                f"{options['file']}: {exc.strerror or exc}", returncode=PS_IOERR
            ) from exc
        except RcfileError as exc:
            raise CommandError(exc.render(), returncode=PS_SYNTAX) from exc
        env = import_environment(
            scope,
            login=options["login"],
            netrc_path=options["netrc"] or str(Path("~/.netrc").expanduser()),
        )
        try:
            plan = services.rcfile_import(
                config=config, scope=scope, env=env, dry_run=options["dry_run"]
            )
        except services.ImportRefused as exc:
            problems = exc.plan.problems
            raise CommandError(
                "\n".join(
                    [
                        *problems,
                        f"Import refused: nothing was imported "
                        f"({len(problems)} problem(s)).",
                    ]
                )
            ) from exc
        for line in plan.globals_said:
            self.stdout.write(line)
        for entry in plan.entries:
            self._report(entry)
        created = sum(e.created for e in plan.entries)
        self.stdout.write(
            f"{len(plan.entries)} mailbox(es) for {scope.owner.email}"
            + (f" in {scope.domain.name}" if scope.domain else "")
            + f": {created} created, {len(plan.entries) - created} updated"
            + ("; dry run, nothing was saved." if options["dry_run"] else ".")
        )

    def _report(self, entry: Entry) -> None:
        mailbox = entry.mailbox
        assert mailbox is not None
        state = "" if mailbox.enabled else ", disabled (a skip entry)"
        self.stdout.write(
            f"{entry.where}: {'created' if entry.created else 'updated'} mailbox "
            f"{mailbox.pk}: {mailbox.protocol.upper()} {quote(mailbox.host)} "
            f"user {quote(mailbox.username)}{state}"
        )
        if entry.options:
            self.stdout.write("    options: " + ", ".join(entry.options))
        self.stdout.write("    " + entry.password)
        for note in entry.notes:
            self.stdout.write(f"    at poll time: {note}")
        if entry.command_warning:
            self.stdout.write(f"    warning: {entry.command_warning}")
