"""Delivery kind IMAP: each message is APPENDed into a remote mailbox.

The replacement for Gmail's fetcher: mail fetched from an old account goes not
to a local MTA but into a folder of another account (Gmail, Microsoft 365, any
IMAP server). Accepted means the tagged OK of the APPEND (with UIDPLUS its
``[APPENDUID v n]`` is the reply the run shows); only then may the source copy
be deleted, by the same policy and ledger as after an SMTP 250. Any other answer
keeps the message on the source:

* ``NO`` (over quota, folder missing, server busy) defers it: retried next poll;
* ``BAD`` (the server cannot take this message at all) refuses it, which with
  the default soft bounce still keeps it;
* a dropped or garbled conversation defers it and the next message logs in
  anew; a destination that cannot be reached or logged in to ends the poll
  (:class:`ListenerUnavailable`) before anything is deleted.

The message is appended as the poll hands it over (no Received header is added
for this kind: see deliver/handover.py), with the date of its Date: header as
the internal date so that the destination sorts it where it belongs.

This module sits at the top of the engine because it joins both rooms: a
deliver/ sink that speaks IMAP through fetch/'s session (TLS, STARTTLS, SASL
with XOAUTH2 and OAUTHBEARER, literals).
"""

from __future__ import annotations

import re
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from retrieval.engine.deliver.sink import DeliveryOutcome, RecipientReply
from retrieval.engine.errors import (
    ConfigError,
    EngineError,
    ListenerFault,
    ListenerUnavailable,
)
from retrieval.engine.fetch import imap_parse
from retrieval.engine.fetch.imap import ImapSession
from retrieval.engine.fetch.session import open_session
from retrieval.engine.spec import MailboxSpec, MailProtocol

if TYPE_CHECKING:
    from retrieval.engine.deliver.sink import Handoff
    from retrieval.engine.fetch.imap import Response
    from retrieval.engine.ports import Transcript
    from retrieval.engine.spec import AppendTarget

# RFC 3501 flag: a system flag (\Seen ...) or an atom keyword; \Recent is the
# server's own and may not be set by a client.
_FLAG = re.compile(r"\\?[A-Za-z0-9$_.-]{1,64}")
_MONTHS = [
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
]
_HEADER_LIMIT = 256 * 1024  # where a Date: header is looked for


def check_target(target: AppendTarget) -> None:
    """ConfigError for a destination that can never work, before any poll."""
    if target.server.protocol is not MailProtocol.IMAP:
        raise ConfigError("Delivery into a mailbox needs an IMAP server.")
    if not target.folder or any(ch in target.folder for ch in "\r\n\0"):
        raise ConfigError("The destination folder name is empty or has a line break.")
    for flag in target.flags:
        if problem := flag_problem(flag):
            raise ConfigError(problem)


def flag_problem(flag: str) -> str | None:
    """Why ``flag`` cannot be set by an APPEND, in words; None when it can."""
    if _FLAG.fullmatch(flag) and flag.lower() != "\\recent":
        return None
    return (
        f"{flag!r} is not a flag the destination can be asked to set "
        "(for example \\Seen, \\Flagged or a keyword such as $Imported)."
    )


def imap_date(message: bytes) -> str | None:
    """The message's Date: header as an IMAP date-time, or None (server's clock)."""
    head = message[:_HEADER_LIMIT]
    end = head.find(b"\r\n\r\n")
    if end < 0:
        end = head.find(b"\n\n")
    header = BytesHeaderParser().parsebytes(head if end < 0 else head[: end + 2])
    value = header.get("Date")
    if not value:
        return None
    try:
        when = parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if not 1 <= when.year <= 9999:
        return None
    offset = when.utcoffset()
    minutes = int(offset.total_seconds()) // 60 if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return (
        f"{when.day:02d}-{_MONTHS[when.month - 1]}-{when.year:04d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} "
        f"{sign}{hours:02d}{rest:02d}"
    )


class AppendSink:
    """One IMAP session to the destination serves the whole poll."""

    def __init__(self, target: AppendTarget, transcript: Transcript) -> None:
        check_target(target)
        self._target = target
        self._transcript = transcript
        self._session: ImapSession | None = None
        self._label = (
            f"the destination mailbox {target.username} at {target.server.host}"
        )

    def _open(self) -> ImapSession:
        if self._session is not None:
            return self._session
        target = self._target
        spec = MailboxSpec(
            server=target.server,
            username=target.username,
            password=target.password,
            folders=(target.folder,),
        )
        try:
            session = open_session(spec, self._transcript)
        except EngineError as exc:
            raise ListenerUnavailable(
                f"Messages could not be handed to {self._label}: {exc}"
            ) from exc
        if not isinstance(session, ImapSession):  # pragma: no cover - IMAP checked
            session.abort()
            raise ConfigError("Delivery into a mailbox needs an IMAP server.")
        self._session = session
        return session

    def check(self) -> None:
        """Log in to the destination and out again (Test connection)."""
        self._open()
        self.close()

    sends_ahead = False  # nothing to gain from knowing the next message

    def deliver(self, handoff: Handoff) -> DeliveryOutcome:
        session = self._open()
        envelope = handoff.envelope
        data = b"".join(handoff.message.chunks(envelope.recipients))
        handoff.reached("data")
        try:
            response = self._append(session, data)
        except EngineError as exc:
            self._session = None
            session.abort()
            raise ListenerFault(
                f"The conversation with {self._label} broke during APPEND: {exc}"
            ) from exc
        handoff.reached("dot")
        code = {"OK": 250, "NO": 450}.get(response.status, 550)
        text = f"{response.status} {response.text}".strip()
        recipients = envelope.recipients or (self._target.username,)
        return DeliveryOutcome.from_replies(
            [RecipientReply(r, code, text) for r in recipients]
        )

    def _append(self, session: ImapSession, data: bytes) -> Response:
        target = self._target
        date = imap_date(data)
        response = session.append(target.folder, data, flags=target.flags, date=date)
        code = imap_parse.response_code(response.text.encode())
        if not response.ok and code and code[0] == "TRYCREATE" and target.create_folder:
            created = session.create(target.folder)
            self._transcript.record(
                "*", f"created the folder {target.folder!r}: {created.status}"
            )
            response = session.append(
                target.folder, data, flags=target.flags, date=date
            )
        return response

    def close(self, *, keep: bool = False) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.logout()
