"""One poll of one mailbox: connect, log in, fetch, deliver, record, delete.

Contract (the Django service and the command line both rely on it)::

    report = poll(spec, ledger=ledger, transcript=transcript)

``poll`` never raises for anything the network, the server or the listener does: each
fault ends in a :class:`PollReport` whose ``exit_code`` and ``error`` say what went
wrong in plain words. Programming errors, and failures of the ledger itself, still
raise: without a durable record nothing may be deleted, so stopping is right.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from retrieval.engine import hooks, unsupported
from retrieval.engine.append import AppendSink
from retrieval.engine.deliver.handover import Handed, Prepared, deliver, prepare
from retrieval.engine.deliver.headers import is_valid_address, message_id
from retrieval.engine.deliver.multidrop import DomainRouter
from retrieval.engine.deliver.sink import Sink, open_sink
from retrieval.engine.deliver.trace import TraceInfo
from retrieval.engine.errors import (
    ConfigError,
    EngineError,
    ListenerError,
    MessageFetchError,
    ServerError,
)
from retrieval.engine.fetch import idle, selection
from retrieval.engine.fetch.etrn import etrn
from retrieval.engine.fetch.imap import ImapSession
from retrieval.engine.fetch.session import (
    FolderListing,
    MailSession,
    RemoteMessage,
    open_session,
)
from retrieval.engine.odmr import odmr
from retrieval.engine.ports import MessageKey, RecipientLedger, utc_now
from retrieval.engine.progress import ProgressTicker
from retrieval.engine.redact import RedactingTranscript
from retrieval.engine.report import ExitCode, MessageOutcome, MessageStatus, PollReport
from retrieval.engine.spec import DeliveryKind, MailProtocol
from retrieval.engine.wire.spool import MEMORY_BYTES

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from retrieval.engine.deliver.kept_listeners import KeptListeners
    from retrieval.engine.deliver.multidrop import Routed
    from retrieval.engine.deliver.policy import Decision
    from retrieval.engine.fetch.kept import KeptSessions
    from retrieval.engine.ports import (
        Ledger,
        PollStep,
        Progress,
        StepObserver,
        Transcript,
    )
    from retrieval.engine.spec import MailboxSpec
    from retrieval.engine.wire.spool import MessageSpool


# The largest message read while the listener judges the one before it: a
# spool's in-memory size, a few socket buffers' worth.
MEANWHILE_BYTES = MEMORY_BYTES


def poll(
    spec: MailboxSpec,
    *,
    ledger: Ledger,
    transcript: Transcript,
    observe: StepObserver | None = None,
    stop: Callable[[], bool] | None = None,
    clock: Callable[[], datetime] = utc_now,
    progress: Progress | None = None,
    kept: KeptSessions | None = None,
    listeners: KeptListeners | None = None,
) -> PollReport:
    """Run one poll and describe it; see the module docstring for the contract.

    ``observe`` is told each step every message reaches (tests crash there).
    ``progress`` is told how far the poll has come, for a person watching it:
    the session's steps, and "N of M messages" a few times a second at most.
    ``stop`` ends an IMAP IDLE poll (``spec.idle``) when it returns True; it is
    asked about once a second while waiting (see :mod:`retrieval.engine.fetch.idle`).
    ``clock`` (aware UTC times) dates deliveries in the ledger and decides the
    age of kept messages (``delete_after_days``); tests move it.
    ``kept``: IMAP sessions kept open between polls (``fetch/kept.py``): this
    poll uses the account's one if there is one, and leaves its session there
    when it ends cleanly. ``listeners``: the same for the connection to the
    local listener (``deliver/kept_listeners.py``).
    """
    report = PollReport(properties=spec.properties)
    wire = RedactingTranscript(transcript, spec.secrets())
    report.notes.extend(unsupported.notes(spec))
    if spec.delete_after_days and not spec.keep:
        report.notes.append(
            f"'Delete after {spec.delete_after_days} days' works with 'keep' only; "
            "without it every message is deleted once delivered."
        )

    def session() -> None:
        job: _Poll | None = None
        try:
            if spec.server.protocol is MailProtocol.ETRN:
                etrn(spec, wire, report)
            elif spec.server.protocol is MailProtocol.ODMR:
                odmr(spec, wire, report)
            else:
                job = _Poll(
                    spec,
                    ledger,
                    wire,
                    report,
                    observe,
                    stop,
                    clock,
                    ProgressTicker(progress),
                    kept,
                    listeners,
                )
                job.run()
        except EngineError as exc:
            report.exit_code = exc.exit_code
            report.error = str(exc)
            report.permanent = exc.permanent
            wire.record("*", f"poll ended: {exc}")
        else:
            _conclude(report)
            if job is None and report.exit_code is ExitCode.NOMAIL:
                report.exit_code = ExitCode.SUCCESS  # ETRN/ODMR, as fetchmail counts
            if job and job.fetchlimit_hit and report.exit_code is ExitCode.SUCCESS:
                report.exit_code = ExitCode.MAXFETCH  # as fetchmail: more mail waits

    # Link checks, preconnect and postconnect around the session (hooks.py).
    hooks.around(spec, wire, report, session)
    _mask_report(report, wire)
    return report


def _mask_report(report: PollReport, wire: RedactingTranscript) -> None:
    """Server words reach the report too; a server may echo the password back."""
    report.greeting = wire.mask(report.greeting)
    report.error = wire.mask(report.error)
    report.notes = [wire.mask(note) for note in report.notes]
    for result in report.messages:
        result.listener_reply = wire.mask(result.listener_reply)


def _conclude(report: PollReport) -> None:
    """Exit code and words for a poll that ran to its end."""
    statuses = [m.status for m in report.messages]
    unaccepted = [
        m
        for m in report.messages
        if m.status in (MessageStatus.DEFERRED, MessageStatus.REFUSED)
    ]
    failed = [m for m in report.messages if m.status is MessageStatus.FAILED]
    if MessageStatus.DELIVERED in statuses:
        report.exit_code = ExitCode.SUCCESS
        if unaccepted or failed:
            report.notes.append(
                f"{len(unaccepted) + len(failed)} message(s) were not delivered and "
                "stay on the server."
            )
    elif unaccepted:
        report.exit_code = ExitCode.SMTP
        first = unaccepted[0]
        report.error = (
            f"The local mail listener did not accept {len(unaccepted)} message(s); "
            f"they stay on the server. It said: {first.listener_reply}"
        )
    elif failed:
        report.exit_code = ExitCode.ERROR
        report.error = (
            f"{len(failed)} message(s) could not be read from the server and stay "
            "there for the next poll."
        )
    else:
        report.exit_code = ExitCode.NOMAIL


def default_recipients(spec: MailboxSpec) -> tuple[str, ...]:
    """Envelope recipients: the configured ones, else the mailbox's user name."""
    recipients = spec.delivery.recipients or (spec.username,)
    for recipient in recipients:
        if not is_valid_address(recipient):
            raise ConfigError(
                f"The delivery address {recipient!r} is not a valid mail address; "
                "nothing was fetched."
            )
    return recipients


class _Poll:
    """The steps of one poll, with the state they share."""

    def __init__(
        self,
        spec: MailboxSpec,
        ledger: Ledger,
        wire: RedactingTranscript,
        report: PollReport,
        observe: StepObserver | None = None,
        stop: Callable[[], bool] | None = None,
        clock: Callable[[], datetime] = utc_now,
        progress: ProgressTicker | None = None,
        kept: KeptSessions | None = None,
        listeners: KeptListeners | None = None,
    ) -> None:
        self.spec = spec
        self.kept = kept
        self.listeners = listeners
        self.progress = progress or ProgressTicker(None)
        self.ledger = ledger
        # Checked once: a runtime Protocol check walks the class every time.
        self.recipient_ledger = ledger if isinstance(ledger, RecipientLedger) else None
        self.wire = wire
        self.report = report
        self.observe = observe
        self.stop = stop
        self.clock = clock
        self.fetchlimit_hit = False
        self.recipients = default_recipients(spec)
        self.router = DomainRouter.for_spec(
            spec, self.recipients, lambda text: wire.record("*", text)
        )
        self.local_name = spec.delivery.helo_name or socket.gethostname()
        # Messages whose delete was sent but not yet confirmed, by (folder, uid).
        self.pending: dict[tuple[str, str], MessageOutcome] = {}
        self.folder = ""

    def run(self) -> None:
        """1. log in; 2. each folder; 3. commit deletes (QUIT/EXPUNGE) and log out.

        A listener failure still ends the session politely, so that deletes of
        messages already delivered and recorded are committed; any other fault
        drops the connection, which rolls back whatever was not yet committed.
        """

        def greeted(text: str) -> None:
            self.report.greeting = text

        if note := idle.check(self.spec):
            self.report.notes.append(note)
        session = open_session(
            self.spec,
            self.wire,
            on_greeting=greeted,
            make_durable=self._sync,
            on_step=self.progress.step,
            kept=self.kept,
        )
        sink: Sink | None = None
        clean = False
        try:
            sink = self._open_sink()
            for folder in self.spec.folders or ("INBOX",):
                self._folder(session, sink, folder)
            self._idle(session, sink, folder)
        except ListenerError:
            self._finish(session)
            raise
        except BaseException:
            session.abort()
            raise
        else:
            self._finish(session, keep=True)
            clean = True
        finally:
            if sink is not None:
                sink.close(keep=clean)

    def _open_sink(self) -> Sink:
        delivery = self.spec.delivery
        if delivery.kind is DeliveryKind.IMAP:
            if delivery.mailbox is None:
                raise ConfigError("Delivery into a mailbox needs its server and login.")
            return AppendSink(delivery.mailbox, self.wire)
        return open_sink(
            delivery,
            self.wire,
            batch_limit=self.spec.batchlimit,
            # set invisible: the listener is told the mail server sent it.
            helo=self.spec.server.host if delivery.invisible else self.local_name,
            message=self.spec.message,
            kept=self.listeners,
        )

    def _finish(self, session: MailSession, *, keep: bool = False) -> None:
        """Commit the deletes and log out; or, after a clean poll with sessions
        kept between polls, leave an IMAP session there for the next one."""
        self.progress.step("logging_out")
        try:
            kept = self.kept if keep else None
            imap = session if isinstance(session, ImapSession) else None
            if kept is not None and imap is not None and imap.kept_as is not None:
                self._confirm(imap.close_and_leave())
                self._session_notes(imap)
                kept.give(imap.kept_as, imap)
                return
            self._confirm(session.close_folder())
            self._confirm(session.logout())
        except EngineError as exc:
            self.report.notes.append(f"Ending the session failed: {exc}")
            session.abort()
        self._session_notes(session)

    def _session_notes(self, session: MailSession) -> None:
        self.report.notes.extend(session.notes)
        session.notes.clear()

    def _idle(self, session: MailSession, sink: Sink, folder: str) -> None:
        """spec.idle: wait for new mail on ``folder`` and fetch it, within bounds."""

        def settle() -> None:
            self._confirm(session.close_folder())
            self._session_notes(session)
            sink.close()  # reopened by the next delivery

        idle.watch(
            self.spec,
            session,
            settle=settle,
            again=lambda: self._folder(session, sink, folder),
            stop=self.stop,
            note=lambda text: self.wire.record("*", text),
        )

    def _confirm(self, uids: list[str]) -> None:
        for uid in uids:
            result = self.pending.pop((self.folder, uid), None)
            if result is not None:
                result.deleted = True

    def _folder(self, session: MailSession, sink: Sink, folder: str) -> None:
        """List, sort (see :mod:`retrieval.engine.fetch.selection`), then act."""
        spec = self.spec
        if self.folder:
            self._confirm(session.close_folder())
        listing = session.open_folder(
            folder,
            read_only=selection.read_only(spec),
            known=self._fast_known() if selection.fastuidl_applies(spec) else None,
        )
        self.folder = listing.folder
        self.report.notes.extend(listing.notes)
        if self._uidvalidity_changed(listing):
            return
        known = self._known(listing)
        plan = selection.plan_folder(
            spec,
            listing,
            known,
            sized=session.with_sizes,
            ages=self._ages(listing) if known and selection.expires(spec) else None,
        )
        self.report.notes.extend(plan.notes)
        self.fetchlimit_hit = self.fetchlimit_hit or plan.left > 0
        session.prefetch(plan.fetch)
        done, total = 0, len(plan.fetch)
        self.progress.messages(done, total, listing.folder)
        steps = plan.in_order(listing)
        # Messages read ahead of their turn, by their index in ``steps``.
        read: dict[int, _Fetched] = {}
        try:
            for at, step in enumerate(steps):
                if isinstance(step, selection.Untouched):
                    self._untouched(session, listing, step)
                    continue
                current = read.pop(at, None) or self._fetch(session, listing, step)
                try:
                    then = self._read_ahead(
                        session, listing, sink, steps, at, read, current
                    )
                    self._message(
                        session,
                        sink,
                        current,
                        then,
                        read,
                        self._meanwhile(session, listing, sink, steps, at, read),
                    )
                finally:
                    current.close()
                done += 1
                self.progress.messages(done, total, listing.folder)
        finally:
            for fetched in read.values():
                fetched.close()
        self._session_notes(session)

    def _aheadable(
        self, sink: Sink, steps: list[RemoteMessage | selection.Untouched], at: int
    ) -> RemoteMessage | None:
        """``steps[at]`` when it is a message that may be read before its turn:
        with a sink that sends the next envelope behind a final dot, and
        without multidrop (whose routing settles per message, in order)."""
        following = steps[at] if at < len(steps) else None
        if (
            isinstance(following, RemoteMessage)
            and self.router is None
            and sink.sends_ahead
        ):
            return following
        return None

    def _read_ahead(
        self,
        session: MailSession,
        listing: FolderListing,
        sink: Sink,
        steps: list[RemoteMessage | selection.Untouched],
        at: int,
        read: dict[int, _Fetched],
        current: _Fetched,
    ) -> _Fetched | None:
        """The message after ``steps[at]``, read now so that its envelope can
        go out behind this one's final dot (see _Fetched); not past a broken
        session."""
        if current.error is not None or _broken(read):
            return read.get(at + 1)
        following = self._aheadable(sink, steps, at + 1)
        if following is None:
            return None
        if at + 1 not in read:
            read[at + 1] = self._fetch(session, listing, following)
        return read[at + 1]

    def _meanwhile(
        self,
        session: MailSession,
        listing: FolderListing,
        sink: Sink,
        steps: list[RemoteMessage | selection.Untouched],
        at: int,
        read: dict[int, _Fetched],
    ) -> Callable[[], None] | None:
        """Reading the message after next while the listener judges
        ``steps[at]`` (Handoff.meanwhile): the listener's work and ours
        overlap instead of taking turns. Not with ``expunge N``, whose
        sessions must find nothing in flight at the Nth delete, and only for
        a message declared small: the read falls in the window where a crash
        costs ``steps[at]`` a second delivery, which a large (or slow)
        message would keep open long."""
        if self.spec.expunge or at + 1 not in read:
            return None
        later = self._aheadable(sink, steps, at + 2)
        if later is None or not 0 <= later.size <= MEANWHILE_BYTES:
            return None

        def read_later() -> None:
            if at + 2 not in read and not _broken(read):
                read[at + 2] = self._fetch(session, listing, later)

        return read_later

    def _fast_known(self) -> Callable[[str], bool]:
        """fastuidl: POP3's binary search asks the ledger one UID at a time."""
        known: set[str] = set()
        loaded = False

        def is_known(uid: str) -> bool:
            nonlocal known, loaded
            if not loaded:
                known, loaded = self.ledger.delivered_uids("INBOX", None), True
            return uid in known

        return is_known

    def _uidvalidity_changed(self, listing: FolderListing) -> bool:
        """True when the folder must be left alone this time (keep mode only).

        A new UIDVALIDITY makes every recorded UID meaningless. Without keep,
        whatever is still on the server was not delivered (we delete after
        delivery), so fetching it all is right. With keep it would deliver the
        whole folder again: stop and tell the user instead (invariant 8).
        """
        if listing.ephemeral_uids or listing.uidvalidity is None:
            return False
        previous = self.ledger.last_uidvalidity(listing.folder)
        if previous is None or previous == listing.uidvalidity:
            return False
        if not self.spec.keep or self.spec.fetchall:
            self.report.notes.append(
                f"The folder {listing.folder} was renumbered by the server "
                f"(UIDVALIDITY {previous} -> {listing.uidvalidity}); its messages "
                "count as new."
            )
            return False
        self.report.notes.append(
            f"The folder {listing.folder} was renumbered by the server (UIDVALIDITY "
            f"{previous} -> {listing.uidvalidity}). To avoid delivering every kept "
            "message again it was skipped; poll once with 'fetch all' to accept "
            "the new numbering."
        )
        return True

    def _known(self, listing: FolderListing) -> set[str]:
        if listing.ephemeral_uids:
            return set()
        known = self.ledger.delivered_uids(listing.folder, listing.uidvalidity)
        present = {message.uid for message in listing.messages}
        if known - present and not listing.truncated:
            # Prune what the server no longer has, as fetchmail prunes .fetchids;
            # skipped when the listing was cut short and so is incomplete.
            self.ledger.forget_missing(listing.folder, listing.uidvalidity, present)
        return known & present

    def _ages(self, listing: FolderListing) -> selection.Ages:
        """delete_after_days: the ledger's delivery dates and this poll's time."""
        now = self.clock()
        dates = self.ledger.delivery_dates(listing.folder, listing.uidvalidity, now=now)
        return selection.Ages(dates, now)

    def _untouched(
        self,
        session: MailSession,
        listing: FolderListing,
        untouched: selection.Untouched,
    ) -> None:
        """A message not fetched: reported, and deleted when the plan says so."""
        message = untouched.message
        result = MessageOutcome(
            folder=listing.folder,
            uid=message.uid,
            size=max(message.size, 0),
            status=untouched.status,
            listener_reply=untouched.reason,
        )
        self.report.messages.append(result)
        if untouched.delete:
            self._delete(session, message, result)

    def _fetch(
        self, session: MailSession, listing: FolderListing, message: RemoteMessage
    ) -> _Fetched:
        """Read one message into its spool and prepare its envelope.

        What goes wrong waits in the result for the message's turn (see
        :meth:`_message`): read ahead, this message must not keep the one
        before it from its listener, nor show in the report before its turn.
        """
        result = MessageOutcome(
            folder=listing.folder,
            uid=message.uid,
            size=max(message.size, 0),
            recipients=self.recipients,
        )
        fetched = _Fetched(listing, message, result)
        try:
            self._read(session, fetched)
        except MessageFetchError as exc:
            fetched.failure = str(exc)
        except EngineError as exc:
            fetched.error = exc  # the session broke: ends the poll at its turn
        return fetched

    def _read(self, session: MailSession, fetched: _Fetched) -> None:
        """The fetch itself, into ``fetched``: spool, envelope, routing."""
        spec = self.spec
        listing, message, result = fetched.listing, fetched.message, fetched.result
        spool = session.fetch(message)
        fetched.spool = spool
        try:
            self.report.bytes_fetched += spool.size
            if message.size >= 0 and spool.size != message.size:
                self.wire.record(
                    "*",
                    f"message {message.uid}: server declared {message.size} octets, "
                    f"sent {spool.size}",
                )
            self._step("fetched", message.uid)
            result.size = spool.size
            result.message_id = message_id(spool.header_block)
            fetched.served = self._served(listing, message.uid)
            recipients = self.recipients
            if self.router is not None:  # multidrop: per message, from its header
                fetched.routed = self.router.route(
                    spool.header_block, result.message_id
                )
                recipients = fetched.routed.recipients
                fetched.served = fetched.served | fetched.routed.duplicates
                if not fetched.routed.routing.to_postmaster:
                    # fetchmail: what every recipient refuses goes to the postmaster.
                    fetched.postmaster = self.router.postmaster
            fetched.ready = prepare(
                spool,
                spec=spec,
                recipients=recipients,
                served=fetched.served,
                trace=self._trace(session, listing),
            )
        except BaseException:
            spool.close()
            raise

    def _message(
        self,
        session: MailSession,
        sink: Sink,
        fetched: _Fetched,
        then: _Fetched | None,
        read: dict[int, _Fetched],
        meanwhile: Callable[[], None] | None,
    ) -> None:
        """Deliver -> record -> delete, for one fetched message; ``then`` is
        the next one, already read (its envelope may go out early), ``read``
        every message read ahead, and ``meanwhile`` reads one more while the
        listener judges this one."""
        listing, message, result = fetched.listing, fetched.message, fetched.result
        self.report.messages.append(result)
        if fetched.error is not None:
            raise fetched.error
        if fetched.ready is None or fetched.spool is None:
            result.status = MessageStatus.FAILED
            result.listener_reply = fetched.failure
            self.report.notes.append(fetched.failure)
            return
        upcoming = then.ready if then is not None else None
        with fetched.spool:
            handed = deliver(
                fetched.ready,
                spec=self.spec,
                sink=sink,
                local_name=self.local_name,
                observe=lambda step: self._step(step, message.uid),
                postmaster=fetched.postmaster,
                then=upcoming if isinstance(upcoming, Prepared) else None,
                meanwhile=meanwhile,
            )
        self._step("replied", message.uid)
        if self.router is not None and fetched.routed is not None:
            self.router.settle(fetched.routed, handed)
        decision = handed.decision
        result.recipients = handed.recipients
        result.listener_reply = handed.reply
        result.status = decision.status
        for note in [decision.note, *handed.notes]:
            if note:
                self.report.notes.append(f"Message {message.uid}: {note}")
        if not listing.ephemeral_uids:
            # Record first (written, made durable by _sync before the server
            # may commit the delete): a killed process after this line causes
            # no loss and no redelivery; before it, one duplicate at most.
            self._record(listing, message.uid, result, decision, fetched.served)
            self._step("recorded", message.uid)
        if decision.delete and not _broken(read):
            # (A session that broke reading a later message cannot commit a
            # delete any more: its error ends the poll at that message's turn.)
            self._delete(session, message, result)

    def _sync(self) -> None:
        """Group commit: the records written since the last call become durable,
        right before the server may commit deletions (the session calls this)."""
        self.ledger.sync()
        self._step("synced", "")

    def _step(self, step: PollStep, uid: str) -> None:
        if self.observe is not None:
            self.observe(step, uid)

    def _served(self, listing: FolderListing, uid: str) -> set[str]:
        """Recipients that got this message in an earlier, partial delivery."""
        if listing.ephemeral_uids or self.recipient_ledger is None:
            return set()
        return self.recipient_ledger.delivered_recipients(
            MessageKey(listing.folder, listing.uidvalidity, uid)
        )

    def _record(
        self,
        listing: FolderListing,
        uid: str,
        result: MessageOutcome,
        decision: Decision,
        served: set[str],
    ) -> None:
        key = MessageKey(listing.folder, listing.uidvalidity, uid)
        if decision.delete or decision.status is MessageStatus.DELIVERED:
            self.ledger.mark_delivered(key, result.message_id, at=self.clock())
        elif decision.served and self.recipient_ledger is not None:
            self.recipient_ledger.mark_recipients_delivered(
                key, served | set(decision.served)
            )

    def _trace(self, session: MailSession, listing: FolderListing) -> TraceInfo:
        spec = self.spec
        return TraceInfo(
            server_host=spec.server.host,
            server_address=session.server_address,
            local_name=self.local_name,
            protocol=session.protocol_label,
            poll_name=spec.name or spec.server.host,
            account=spec.username,
            folder=listing.folder if spec.folders else "",
            tracepolls=spec.message.tracepolls,
            multidrop=spec.multidrop is not None,
        )

    def _delete(
        self, session: MailSession, message: RemoteMessage, result: MessageOutcome
    ) -> None:
        try:
            confirmed = session.delete(message)
        except ServerError as exc:
            # Recorded already, so the next poll deletes it without redelivery.
            self.report.notes.append(str(exc))
            return
        self._step("deleted", message.uid)
        self.pending[(self.folder, message.uid)] = result
        self._confirm(confirmed)


def _broken(read: dict[int, _Fetched]) -> bool:
    """A message read ahead found the session broken."""
    return any(fetched.error is not None for fetched in read.values())


@dataclass
class _Fetched:
    """One message read from the server, waiting for its turn at the sink.

    The poll reads message N+1 before it hands message N over when the sink
    can send N+1's envelope behind N's final dot (one round trip a message
    instead of two). It reads message N+2 while the listener judges N (after
    N's final dot, before its reply; see Handoff.meanwhile), so that neither
    waits for the other. So at most two messages wait in spools, and a poll
    killed while N+2 is read is in N's window between the final dot and the
    ledger record: N may be delivered once more by the next poll (the one
    duplicate a crash may cost), and nothing is lost, since nothing is
    deleted before its record.
    """

    listing: FolderListing
    message: RemoteMessage
    result: MessageOutcome
    spool: MessageSpool | None = None
    ready: Prepared | Handed | None = None  # None: the fetch failed
    failure: str = ""  # the server's refusal to send it (MessageFetchError)
    error: EngineError | None = None  # the session broke reading it
    served: set[str] = field(default_factory=set)
    routed: Routed | None = None
    postmaster: tuple[str, ...] = ()

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()
