"""fetchmail's ``--check``: log in, count the messages a poll would fetch, log out.

Nothing is fetched, delivered, recorded or deleted: folders are opened read-only
and the session ends with a plain logout. A message counts as waiting by the rule
a poll applies (:func:`retrieval.engine.fetch.selection.waiting`): the ledger has no
record of it, and it is unread or ``fetchall`` is set; with ``keep`` and
``fetchall`` every message waits. The exit code is fetchmail's: 0 when something waits, 1 when nothing
does, the error's code when the session fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from retrieval.engine import hooks
from retrieval.engine.errors import EngineError
from retrieval.engine.fetch import selection
from retrieval.engine.fetch.session import open_session
from retrieval.engine.redact import RedactingTranscript
from retrieval.engine.report import ExitCode
from retrieval.engine.spec import MailProtocol

if TYPE_CHECKING:
    from retrieval.engine.ports import Ledger, Transcript
    from retrieval.engine.spec import MailboxSpec


@dataclass
class CheckReport:
    exit_code: ExitCode = ExitCode.NOMAIL
    error: str = ""
    permanent: bool = False  # retrying cannot help (EngineError.permanent)
    greeting: str = ""
    waiting: int = 0  # messages a poll would fetch
    total: int = 0  # messages in the folders
    notes: list[str] = field(default_factory=list)


def check(spec: MailboxSpec, *, ledger: Ledger, transcript: Transcript) -> CheckReport:
    report = CheckReport()
    wire = RedactingTranscript(transcript, spec.secrets())

    def greeted(text: str) -> None:
        report.greeting = text

    def session() -> None:
        try:
            session = open_session(spec, wire, on_greeting=greeted)
            try:
                for n, folder in enumerate(spec.folders or ("INBOX",)):
                    if n:
                        session.close_folder()
                    listing = session.open_folder(folder, read_only=_read_only(spec))
                    report.notes.extend(listing.notes)
                    known: set[str] = set()
                    if not listing.ephemeral_uids:
                        known = ledger.delivered_uids(
                            listing.folder, listing.uidvalidity
                        )
                    report.total += len(listing.messages)
                    report.waiting += sum(
                        selection.waiting(spec, m, known) for m in listing.messages
                    )
                session.close_folder()
                session.logout()
            except BaseException:
                session.abort()
                raise
        except EngineError as exc:
            report.exit_code = exc.exit_code
            report.error = str(exc)
            report.permanent = exc.permanent
            return
        report.exit_code = ExitCode.SUCCESS if report.waiting else ExitCode.NOMAIL

    # As fetchmail -c: link checks, preconnect and postconnect around it.
    hooks.around(spec, wire, report, session)
    report.error = wire.mask(report.error)
    return report


def _read_only(spec: MailboxSpec) -> bool:
    """EXAMINE for IMAP; POP3 has no such mode, and asking for one there only
    refuses servers without UIDL, which a poll without keep accepts."""
    return spec.server.protocol is not MailProtocol.POP3 or (spec.keep and not spec.flush)
