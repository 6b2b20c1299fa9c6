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
from typing import TYPE_CHECKING

from retrieval.engine.errors import (
    ConfigError,
    EngineError,
    ListenerError,
    MessageFetchError,
    ServerError,
)
from retrieval.engine.headers import is_valid_address, message_id, return_path
from retrieval.engine.redact import RedactingTranscript
from retrieval.engine.report import ExitCode, MessageResult, MessageStatus, PollReport
from retrieval.engine.session import FolderListing, MailSession, open_session
from retrieval.engine.sink import DeliveryOutcome, Envelope, Sink, Verdict, open_sink
from retrieval.engine.spool import MessageSpool
from retrieval.engine.trace import received_header

if TYPE_CHECKING:
    from retrieval.engine.ports import Ledger, Transcript
    from retrieval.engine.session import RemoteMessage
    from retrieval.engine.spec import MailboxSpec


def poll(spec: MailboxSpec, *, ledger: Ledger, transcript: Transcript) -> PollReport:
    """Run one poll and describe it; see the module docstring for the contract."""
    report = PollReport()
    wire = RedactingTranscript(
        transcript, [spec.password.reveal()] if spec.password else []
    )
    for key, value in spec.extra:
        report.notes.append(f"The option {key} {value!r} is not supported yet.")
    try:
        _Poll(spec, ledger, wire, report).run()
    except EngineError as exc:
        report.exit_code = exc.exit_code
        report.error = str(exc)
        wire.record("*", f"poll ended: {exc}")
    else:
        _conclude(report)
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
    ) -> None:
        self.spec = spec
        self.ledger = ledger
        self.wire = wire
        self.report = report
        self.recipients = default_recipients(spec)
        self.local_name = spec.delivery.helo_name or socket.gethostname()
        # Messages whose delete was sent but not yet confirmed, by (folder, uid).
        self.pending: dict[tuple[str, str], MessageResult] = {}
        self.folder = ""

    def run(self) -> None:
        """1. log in; 2. each folder; 3. commit deletes (QUIT/EXPUNGE) and log out.

        A listener failure still ends the session politely, so that deletes of
        messages already delivered and recorded are committed; any other fault
        drops the connection, which rolls back whatever was not yet committed.
        """

        def greeted(text: str) -> None:
            self.report.greeting = text

        session = open_session(self.spec, self.wire, on_greeting=greeted)
        sink: Sink | None = None
        try:
            sink = open_sink(
                self.spec.delivery, self.wire, batch_limit=self.spec.batchlimit
            )
            for folder in self.spec.folders or ("INBOX",):
                self._folder(session, sink, folder)
        except ListenerError:
            self._finish(session)
            raise
        except BaseException:
            session.abort()
            raise
        else:
            self._finish(session)
        finally:
            if sink is not None:
                sink.close()

    def _finish(self, session: MailSession) -> None:
        try:
            self._confirm(session.close_folder())
            self._confirm(session.logout())
        except EngineError as exc:
            self.report.notes.append(f"Ending the session failed: {exc}")
            session.abort()

    def _confirm(self, uids: list[str]) -> None:
        for uid in uids:
            result = self.pending.pop((self.folder, uid), None)
            if result is not None:
                result.deleted = True

    def _folder(self, session: MailSession, sink: Sink, folder: str) -> None:
        spec = self.spec
        if self.folder:
            self._confirm(session.close_folder())
        read_only = spec.keep and not spec.flush
        listing = session.open_folder(folder, read_only=read_only)
        self.folder = listing.folder
        self.report.notes.extend(listing.notes)
        if self._uidvalidity_changed(listing):
            return
        known = self._known(listing)
        new: list[RemoteMessage] = []
        for message in listing.messages:
            if message.uid in known and not spec.fetchall:
                if not read_only:
                    # Delivered and recorded by an earlier poll that did not get
                    # to delete it (invariant 5): delete now, never redeliver.
                    self._delete_known(session, listing, message)
                continue
            new.append(message)
        if spec.fetchlimit and len(new) > spec.fetchlimit:
            self.report.notes.append(
                f"{len(new) - spec.fetchlimit} message(s) in {folder} are left for "
                "the next poll (fetch limit)."
            )
            new = new[: spec.fetchlimit]
        for message in session.with_sizes(new):
            self._message(session, sink, listing, message)

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

    def _delete_known(
        self, session: MailSession, listing: FolderListing, message: RemoteMessage
    ) -> None:
        result = MessageResult(
            folder=listing.folder,
            uid=message.uid,
            size=max(message.size, 0),
            status=MessageStatus.SKIPPED,
            listener_reply="delivered by an earlier poll",
        )
        self.report.messages.append(result)
        self._delete(session, message, result)

    def _message(
        self,
        session: MailSession,
        sink: Sink,
        listing: FolderListing,
        message: RemoteMessage,
    ) -> None:
        """Fetch to spool -> deliver -> record -> delete, for one message."""
        spec = self.spec
        result = MessageResult(
            folder=listing.folder,
            uid=message.uid,
            size=max(message.size, 0),
            recipients=self.recipients,
        )
        self.report.messages.append(result)
        too_big = self._size_refusal(message.size)
        if too_big:
            result.status = MessageStatus.SKIPPED
            result.listener_reply = too_big
            self.report.notes.append(f"Message {message.uid}: {too_big}")
            return
        with MessageSpool(spec.max_message_bytes) as spool:
            try:
                session.fetch(message, spool)
            except MessageFetchError as exc:
                result.status = MessageStatus.FAILED
                result.listener_reply = str(exc)
                self.report.notes.append(str(exc))
                return
            self.report.bytes_fetched += spool.size
            if message.size >= 0 and spool.size != message.size:
                self.wire.record(
                    "*",
                    f"message {message.uid}: server declared {message.size} octets, "
                    f"sent {spool.size}",
                )
            result.size = spool.size
            result.message_id = message_id(spool.header_block)
            envelope = Envelope(return_path(spool.header_block), self.recipients)
            trace = received_header(
                server_host=spec.server.host,
                server_address=session.server_address,
                local_name=self.local_name,
                protocol=session.protocol_label,
                recipients=self.recipients,
            )
            outcome = sink.deliver(spool, envelope, trace)
        result.listener_reply = outcome.reply
        if self._should_delete(outcome, result):
            if not listing.ephemeral_uids:
                # Durable record first: a crash after this line causes no loss
                # and no redelivery; a crash before it one duplicate at most.
                self.ledger.mark_delivered(
                    listing.folder, listing.uidvalidity, message.uid, result.message_id
                )
            self._delete(session, message, result)
        elif result.status is MessageStatus.DELIVERED and not listing.ephemeral_uids:
            self.ledger.mark_delivered(
                listing.folder, listing.uidvalidity, message.uid, result.message_id
            )

    def _size_refusal(self, size: int) -> str:
        spec = self.spec
        if spec.limit and size > spec.limit:
            return f"larger than the size limit ({size} > {spec.limit} bytes); kept"
        if spec.max_message_bytes and size > spec.max_message_bytes:
            return (
                f"larger than the largest message accepted ({size} > "
                f"{spec.max_message_bytes} bytes); kept"
            )
        return ""

    def _should_delete(self, outcome: DeliveryOutcome, result: MessageResult) -> bool:
        """Set the status from the listener's answer and decide about the copy."""
        delivery = self.spec.delivery
        if outcome.verdict is Verdict.ACCEPTED:
            result.status = MessageStatus.DELIVERED
            return not self.spec.keep
        if outcome.verdict is Verdict.DEFERRED:
            result.status = MessageStatus.DEFERRED
            return False
        result.status = MessageStatus.REFUSED
        if self.spec.keep:
            return False
        codes = outcome.refusal_codes
        if codes and codes <= set(delivery.antispam):
            self.report.notes.append(
                f"Message {result.uid} was refused as spam ({outcome.reply}); "
                "deleted as configured."
            )
            return True
        if not delivery.softbounce:
            self.report.notes.append(
                f"Message {result.uid} was refused ({outcome.reply}); deleted "
                "because soft bounces are off."
            )
            return True
        return False

    def _delete(
        self, session: MailSession, message: RemoteMessage, result: MessageResult
    ) -> None:
        try:
            confirmed = session.delete(message)
        except ServerError as exc:
            # Recorded already, so the next poll deletes it without redelivery.
            self.report.notes.append(str(exc))
            return
        self.pending[(self.folder, message.uid)] = result
        self._confirm(confirmed)
