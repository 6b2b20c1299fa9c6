"""SMTP (RFC 5321) and LMTP (RFC 2033) delivery to the local listener.

One connection serves the whole poll (RSET between messages), as fetchmail's
does. A listener that drops, times out or answers nonsense makes that message
DEFERRED and the next message opens a fresh connection; when no listener in the
list accepts a connection at all, :class:`ListenerUnavailable` ends the poll.
"""

from __future__ import annotations

import re
import socket
from typing import TYPE_CHECKING

from retrieval.engine.encoding import SmtpDataEncoder
from retrieval.engine.errors import (
    DnsError,
    EngineError,
    ListenerError,
    ListenerUnavailable,
)
from retrieval.engine.sink import DeliveryOutcome, Envelope, RecipientReply, Verdict
from retrieval.engine.transport import Connection

if TYPE_CHECKING:
    from retrieval.engine.ports import Transcript
    from retrieval.engine.spec import DeliverySpec
    from retrieval.engine.spool import MessageSpool

MAX_REPLY_LINE = 4096  # RFC 5321 says 512; be lenient, never unbounded
MAX_REPLY_LINES = 100
SEND_BUFFER = 64 * 1024
_REPLY = re.compile(rb"^([2-5][0-9][0-9])([ -])(.*?)\r?\n\Z", re.S)


class ListenerFault(ListenerError):
    """The conversation with the listener broke; this message is deferred."""


class SmtpSink:
    """SMTP or LMTP client over TCP, or LMTP over a unix socket (absolute path)."""

    def __init__(
        self,
        delivery: DeliverySpec,
        transcript: Transcript,
        *,
        lmtp: bool,
        batch_limit: int = 0,
    ) -> None:
        self._delivery = delivery
        self._batch_limit = (
            batch_limit  # fetchmail's batchlimit: messages per connection
        )
        self._transcript = transcript
        self._lmtp = lmtp
        self._conn: Connection | None = None
        self._extensions: set[str] = set()
        self._transactions = 0  # on this connection

    @property
    def _name(self) -> str:
        return "LMTP" if self._lmtp else "SMTP"

    # -- connection ------------------------------------------------------------

    def _connect(self) -> Connection:
        """Try each listener in order, like fetchmail's smtphost list."""
        failures: list[str] = []
        for entry in self._delivery.hosts:
            try:
                conn = self._open(entry)
            except (ListenerError, DnsError) as exc:
                failures.append(str(exc))
                continue
            try:
                self._greet(conn)
            except EngineError as exc:
                conn.close()
                failures.append(str(exc))
                continue
            self._transactions = 0
            return conn
        raise ListenerUnavailable(
            "Local delivery is unavailable: "
            + ("; ".join(failures) or "no listener is configured")
            + " Nothing was deleted from the server."
        )

    def _open(self, entry: str) -> Connection:
        side = f"the local {self._name} listener"
        timeout = self._delivery.timeout
        if entry.startswith("/"):
            return Connection.open_unix(
                entry,
                timeout=timeout,
                transcript=self._transcript,
                side=side,
                error=ListenerError,
            )
        host, port = split_host_port(entry, self._delivery.port)
        return Connection.open_tcp(
            host,
            port,
            timeout=timeout,
            transcript=self._transcript,
            side=side,
            error=ListenerError,
        )

    def _greet(self, conn: Connection) -> None:
        code, text = self._reply(conn)
        if code != 220:
            raise ListenerFault(f"The listener's greeting was {code} {text}.")
        helo = self._delivery.helo_name or socket.gethostname() or "localhost"
        conn.send_line(f"{'LHLO' if self._lmtp else 'EHLO'} {helo}")
        code, text = self._reply(conn)
        if code != 250 and not self._lmtp:
            conn.send_line(f"HELO {helo}")
            code, text = self._reply(conn)
        if code != 250:
            raise ListenerFault(f"The listener refused our greeting: {code} {text}.")
        # The first line of the EHLO reply is the server's name, not an extension.
        self._extensions = {
            line.split()[0].upper() for line in text.splitlines()[1:] if line.strip()
        }

    def _reply(self, conn: Connection) -> tuple[int, str]:
        """A (possibly multi-line) reply; anything malformed is a fault (CVE-2025-61962)."""
        lines: list[str] = []
        code = 0
        for _ in range(MAX_REPLY_LINES):
            raw = conn.readline(MAX_REPLY_LINE)
            match = _REPLY.match(raw)
            if match is None or (code and int(match.group(1)) != code):
                raise ListenerFault(
                    f"The listener sent a malformed reply: {raw[:80]!r}."
                )
            code = int(match.group(1))
            lines.append(match.group(3).decode("utf-8", "replace"))
            if match.group(2) == b" ":
                return code, "\n".join(lines)
        raise ListenerFault("The listener sent an endless multi-line reply.")

    def _command(self, conn: Connection, line: str) -> tuple[int, str]:
        conn.send_line(line)
        return self._reply(conn)

    # -- delivery -------------------------------------------------------------

    def deliver(
        self, message: MessageSpool, envelope: Envelope, trace: bytes
    ) -> DeliveryOutcome:
        if self._conn is not None and self._batch_full():
            self.close()
        if self._conn is not None and not self._reset():
            # The kept connection went stale between messages (idle timeout,
            # 421): nothing of this message was sent yet, so start afresh.
            self._drop()
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        try:
            outcome = self._transaction(conn, message, envelope, trace)
        except ListenerError as exc:
            # Dropped, timed out or garbled: we cannot know whether the listener
            # kept the message, so keep ours and start afresh next time.
            self._drop()
            return DeliveryOutcome(
                Verdict.DEFERRED,
                str(exc),
                [RecipientReply(r, 0, str(exc)) for r in envelope.recipients],
            )
        self._transactions += 1
        if any(r.code == 421 for r in outcome.recipients):
            self._drop()  # 421: the listener is closing this connection
        return outcome

    def _reset(self) -> bool:
        """RSET before every transaction but a connection's first one."""
        if self._conn is None or not self._transactions:
            return True
        try:
            code, _ = self._command(self._conn, "RSET")
        except ListenerError:
            return False
        return code == 250

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def _batch_full(self) -> bool:
        return bool(self._batch_limit) and self._transactions >= self._batch_limit

    def _transaction(
        self, conn: Connection, message: MessageSpool, envelope: Envelope, trace: bytes
    ) -> DeliveryOutcome:
        recipients = [self._qualify(r) for r in envelope.recipients]
        body = (
            " BODY=8BITMIME"
            if message.has_8bit and "8BITMIME" in self._extensions
            else ""
        )
        code, text = self._command(conn, f"MAIL FROM:<{envelope.mail_from}>{body}")
        if code != 250:
            return DeliveryOutcome.from_replies(
                [RecipientReply(r, code, text) for r in recipients]
            )
        replies: list[RecipientReply] = []
        for recipient in recipients:
            code, text = self._command(conn, f"RCPT TO:<{recipient}>")
            replies.append(RecipientReply(recipient, code, text))
        accepted = [r for r in replies if 200 <= r.code < 300]
        if not accepted or any(400 <= r.code < 500 for r in replies):
            # A temporary RCPT failure sends no DATA at all: a partial delivery
            # now would become a duplicate for the others on the retry.
            return DeliveryOutcome.from_replies(replies)
        code, text = self._command(conn, "DATA")
        if code != 354:
            return DeliveryOutcome.from_replies(
                [RecipientReply(r.recipient, code, text) for r in replies]
            )
        self._send_data(conn, message, trace)
        finals = {r.recipient: r for r in replies}
        # LMTP answers once per accepted recipient, in RCPT order (RFC 2033 4.2).
        for recipient in (r.recipient for r in accepted) if self._lmtp else ():
            code, text = self._reply(conn)
            finals[recipient] = RecipientReply(recipient, code, text)
        if not self._lmtp:
            code, text = self._reply(conn)
            for r in accepted:
                finals[r.recipient] = RecipientReply(r.recipient, code, text)
        return DeliveryOutcome.from_replies([finals[r] for r in recipients])

    def _send_data(self, conn: Connection, message: MessageSpool, trace: bytes) -> None:
        encoder = SmtpDataEncoder()
        pending = bytearray(encoder.feed(trace))
        sent = 0
        for chunk in message.chunks():
            pending += encoder.feed(chunk)
            if len(pending) >= SEND_BUFFER:
                conn.send_raw(bytes(pending))
                sent += len(pending)
                pending.clear()
        pending += encoder.finish()
        conn.send_raw(bytes(pending))
        sent += len(pending)
        conn.note(f"message data: {sent} octets sent")

    def _qualify(self, recipient: str) -> str:
        # fetchmail appends "@localhost" to a bare local name for SMTP; LMTP
        # servers (Dovecot) look bare names up themselves.
        if self._lmtp or "@" in recipient:
            return recipient
        return f"{recipient}@localhost"

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            self._command(conn, "QUIT")
        except EngineError:
            pass  # a rude goodbye changes nothing once the replies are in
        finally:
            conn.close()


def split_host_port(entry: str, default_port: int) -> tuple[str, int]:
    """ "host", "host/port", "[v6]" or "[v6]/port" (fetchmail's smtphost syntax)."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest.removeprefix("/")
    else:
        host, _, port = entry.partition("/")
    if port and not port.isdigit():
        raise ListenerError(f"The listener address {entry!r} has a bad port.")
    return host, int(port) if port else default_port
