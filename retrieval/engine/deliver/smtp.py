"""SMTP (RFC 5321) and LMTP (RFC 2033) delivery to the local listener.

One connection serves the whole poll (RSET between messages, a fresh one after
``batchlimit`` messages), as fetchmail's does. The listener list is tried in
order; an absolute path is a unix socket spoken to in LMTP, as in fetchmail.
ESMTP extensions used when offered: PIPELINING (RFC 2920: RSET, MAIL, every
RCPT and DATA go out in one write and the replies are read in order; when the
poll announces the next message (``then``), that write is the one carrying this
message's final dot (3.1), so a message costs one round trip; when the MAIL,
every RCPT or any RCPT temporarily is refused, no body is sent, and a listener
that nonetheless answered DATA with 354 is hung up on, which aborts the
transaction rather than sending it an empty message; so is one holding an
early envelope for a message that does not come next, such as when a bounce
must go first), SIZE (``SIZE=`` on MAIL; a message over the listener's limit is
refused here with 552 and never sent) and 8BITMIME (``BODY=8BITMIME`` for 8-bit
content).

A listener that drops, times out or answers nonsense makes that message
DEFERRED and the next message opens a fresh connection; when no listener in
the list accepts a connection at all, :class:`ListenerUnavailable` ends the poll.

``plugout`` replaces the TCP connection with a program (:mod:`retrieval.engine.
tunnel`); ``esmtpname``/``esmtppassword`` log in after EHLO, upgrading with
STARTTLS first (:mod:`retrieval.engine.deliver.listener_auth`).
"""

from __future__ import annotations

import functools
import re
import time
from typing import TYPE_CHECKING

from retrieval.engine.deliver import listener_auth
from retrieval.engine.deliver.headers import domain_literal
from retrieval.engine.deliver.sink import (
    DeliveryOutcome,
    Envelope,
    RecipientReply,
    Verdict,
)
from retrieval.engine.errors import (
    DnsError,
    EngineError,
    ListenerError,
    ListenerFault,
    ListenerUnavailable,
    StaleConnection,
    UnexpectedReply,
)
from retrieval.engine.wire.encoding import SmtpDataEncoder
from retrieval.engine.wire.numbers import SIZE, wire_number_or_none
from retrieval.engine.wire.transport import Connection
from retrieval.engine.wire.tunnel import open_tunnel

if TYPE_CHECKING:
    from retrieval.engine.deliver.kept_listeners import KeptListeners
    from retrieval.engine.deliver.sink import Deliverable, Handoff, Upcoming
    from retrieval.engine.ports import Transcript
    from retrieval.engine.spec import DeliverySpec

MAX_REPLY_LINE = 4096  # RFC 5321 says 512; be lenient, never unbounded
MAX_REPLY_LINES = 100
SEND_BUFFER = 64 * 1024
_REPLY = re.compile(rb"^([2-5][0-9][0-9])([ -])(.*?)\r?\n\Z", re.S)


class _Listener:
    """What one connection's greeting told us."""

    def __init__(
        self,
        conn: Connection,
        *,
        lmtp: bool,
        domain: str,
        host: str = "",
        local: bool = True,
    ) -> None:
        self.conn = conn
        self.lmtp = lmtp
        self.domain = domain  # for bare recipient names (fetchmail's destaddr)
        self.host = host  # "" for a unix socket
        self.local = local  # on this host: see listener_auth
        self.extensions: dict[str, str] = {}
        self.transactions = 0
        self.opened_at = time.time()  # shown when a later poll reuses it

    @property
    def name(self) -> str:
        return "LMTP" if self.lmtp else "SMTP"

    @property
    def size_limit(self) -> int:
        # An unreadable SIZE (or "SIZE ²") is no known limit, not a crash.
        return _size_limit(self.extensions.get("SIZE", ""))


class SmtpSink:
    """SMTP or LMTP client over TCP, or LMTP over a unix socket (absolute path)."""

    def __init__(
        self,
        delivery: DeliverySpec,
        transcript: Transcript,
        *,
        lmtp: bool,
        batch_limit: int = 0,
        helo: str = "",
        kept: KeptListeners | None = None,
    ) -> None:
        self._delivery = delivery
        self._batch_limit = batch_limit  # fetchmail's batchlimit
        self._transcript = transcript
        self._lmtp = lmtp
        self._helo = helo or "localhost"
        self._listener: _Listener | None = None
        # The next message, whose envelope went out behind the last final dot.
        self._ahead: Upcoming | None = None
        # Connections kept between polls (kept_listeners.py), and this one's key.
        self._kept = kept
        self._kept_key = (
            kept.key(delivery, lmtp=lmtp, helo=self._helo) if kept is not None else None
        )

    # -- connection ------------------------------------------------------------

    def _connect(self) -> _Listener:
        """Try each listener in order, like fetchmail's smtphost list."""
        failures: list[str] = []
        for entry in self._delivery.hosts:
            try:
                listener = self._open(entry)
            except (ListenerError, DnsError) as exc:
                failures.append(str(exc))
                continue
            try:
                self._greet(listener)
            except EngineError as exc:
                listener.conn.close()
                failures.append(str(exc))
                continue
            return listener
        raise ListenerUnavailable(
            "Local delivery is unavailable: "
            + ("; ".join(failures) or "no listener is configured")
            + " Nothing was deleted from the server."
        )

    def _open(self, entry: str) -> _Listener:
        timeout = self._delivery.timeout
        if entry.startswith("/"):
            conn = Connection.open_unix(
                entry,
                timeout=timeout,
                transcript=self._transcript,
                side="the local LMTP listener",
                error=ListenerError,
            )
            return _Listener(
                conn, lmtp=True, domain=self._delivery.smtpaddress or "localhost"
            )
        host, port = split_host_port(entry, self._delivery.port)
        side = f"the local {'LMTP' if self._lmtp else 'SMTP'} listener"
        if self._delivery.plugout:  # fetchmail's plugout: a program speaks for it
            opened: Connection = open_tunnel(
                self._delivery.plugout,
                host=host,
                port=port,
                timeout=timeout,
                transcript=self._transcript,
                label="plugout",
                inherit_env=self._delivery.inherit_env,
                side=side,
                error=ListenerError,
            )
        else:
            opened = Connection.open_tcp(
                host,
                port,
                timeout=timeout,
                transcript=self._transcript,
                side=side,
                error=ListenerError,
            )
        domain = self._delivery.smtpaddress or domain_literal(host)
        local = bool(self._delivery.plugout) or listener_auth.on_this_host(host)
        return _Listener(opened, lmtp=self._lmtp, domain=domain, host=host, local=local)

    def _greet(self, listener: _Listener) -> None:
        conn = listener.conn
        code, text = self._reply(conn)
        if code != 220:
            raise ListenerFault(f"The listener's greeting was {code} {text}.")
        self._hello(listener)
        if self._delivery.esmtp_password is not None:
            listener_auth.login(
                conn,
                listener.extensions,
                delivery=self._delivery,
                host=listener.host,
                local=listener.local,
                command=lambda line: self._command(conn, line),
                reply=lambda: self._reply(conn),
                hello=lambda: self._hello(listener),
            )

    def _hello(self, listener: _Listener) -> dict[str, str]:
        """EHLO (LHLO), HELO as a fallback; the extensions it announced."""
        conn = listener.conn
        code, text = self._command(
            conn, f"{'LHLO' if listener.lmtp else 'EHLO'} {self._helo}"
        )
        if code != 250 and not listener.lmtp:
            code, text = self._command(conn, f"HELO {self._helo}")
        if code != 250:
            raise ListenerFault(f"The listener refused our greeting: {code} {text}.")
        # The first line of the EHLO reply is the server's name, not an extension.
        listener.extensions.clear()
        for line in text.splitlines()[1:]:
            keyword, _, value = line.strip().partition(" ")
            if keyword:
                listener.extensions[keyword.upper()] = value.strip()
        return listener.extensions

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

    @property
    def sends_ahead(self) -> bool:
        """True unless the listener is known not to offer PIPELINING."""
        listener = self._listener
        return listener is None or "PIPELINING" in listener.extensions

    def deliver(self, handoff: Handoff) -> DeliveryOutcome:
        message, envelope = handoff.message, handoff.envelope
        listener = self._listener
        ahead, self._ahead = self._ahead, None
        if ahead is not None and (
            ahead.message is not message or ahead.envelope != envelope
        ):
            # The listener has DATA for the message announced and will wait
            # for its body: only hanging up cancels that (see _no_body).
            self._drop()
            ahead, listener = None, None
        if listener is None:
            listener = self._listener = self._kept_listener()
        if listener is not None and self._batch_full(listener):
            self.close()
            listener = None
        if listener is not None and listener.transactions:
            try:
                return self._attempt(listener, handoff, sent=ahead is not None)
            except StaleConnection:
                # The kept connection went stale between messages (idle
                # timeout, 421): nothing of this message was sent; start afresh.
                self._drop()
        self._listener = listener = self._connect()
        try:
            return self._attempt(listener, handoff)
        except StaleConnection as exc:
            return self._failed(envelope, str(exc))

    def _kept_listener(self) -> _Listener | None:
        """A connection an earlier poll left open for polls like this one."""
        if self._kept is None or self._kept_key is None:
            return None
        return self._kept.take(self._kept_key, self._transcript)

    def _attempt(
        self, listener: _Listener, handoff: Handoff, *, sent: bool = False
    ) -> DeliveryOutcome:
        """One transaction; RSET first on a connection that had one before.

        ``sent``: its commands went out behind the last message's final dot.
        """
        try:
            outcome = self._transaction(listener, handoff, sent=sent)
        except StaleConnection:
            raise
        except ListenerError as exc:
            # Dropped, timed out or garbled: we cannot know whether the listener
            # kept the message, so keep ours and start afresh next time.
            self._drop()
            return self._failed(handoff.envelope, str(exc))
        listener.transactions += 1
        if any(r.code == 421 for r in outcome.recipients):
            self._drop()  # 421: the listener is closing this connection
        return outcome

    def _failed(self, envelope: Envelope, reason: str) -> DeliveryOutcome:
        return DeliveryOutcome(
            Verdict.DEFERRED,
            reason,
            [RecipientReply(r, 0, reason) for r in envelope.recipients],
        )

    def _drop(self) -> None:
        self._ahead = None  # whatever went out early dies with the connection
        if self._listener is not None:
            self._listener.conn.close()
        self._listener = None

    def _batch_full(self, listener: _Listener, *, after: int = 0) -> bool:
        """batchlimit reached (``after`` more transactions from now)."""
        return (
            bool(self._batch_limit)
            and listener.transactions + after >= self._batch_limit
        )

    def _commands(
        self,
        listener: _Listener,
        message: Deliverable,
        envelope: Envelope,
        *,
        reset: bool,
    ) -> list[str] | None:
        """RSET (``reset``), MAIL, every RCPT, and DATA when pipelining; None
        when the message is over the listener's SIZE and must not be offered."""
        limit = listener.size_limit
        if limit and message.size > limit:
            return None
        params = ""
        if message.needs_8bit and "8BITMIME" in listener.extensions:
            params += " BODY=8BITMIME"
        if "SIZE" in listener.extensions:
            params += f" SIZE={message.size}"
        commands = [f"MAIL FROM:<{envelope.mail_from}>{params}"]
        commands += [
            f"RCPT TO:<{self._qualify(listener, r)}>" for r in envelope.recipients
        ]
        if reset:
            commands.insert(0, "RSET")
        if "PIPELINING" in listener.extensions:
            commands.append("DATA")  # RFC 2920: the whole envelope in one write
        return commands

    def _transaction(
        self, listener: _Listener, handoff: Handoff, *, sent: bool
    ) -> DeliveryOutcome:
        message, envelope = handoff.message, handoff.envelope
        conn = listener.conn
        recipients = [self._qualify(listener, r) for r in envelope.recipients]
        reset = bool(listener.transactions)
        commands = self._commands(listener, message, envelope, reset=reset)
        if commands is None:
            text = (
                f"5.3.4 The message ({message.size} octets) is larger than the "
                f"{listener.name} listener takes ({listener.size_limit} octets); "
                "not sent."
            )
            return DeliveryOutcome.from_replies(
                [RecipientReply(r, 552, text) for r in recipients]
            )
        pipelined = "PIPELINING" in listener.extensions
        replies = self._envelope_replies(listener, commands, reset=reset, sent=sent)
        data_reply = replies.pop() if pipelined else None
        mail_code, mail_text = _expect(replies[0], MAIL_OK, "MAIL FROM")
        if mail_code != 250:
            self._no_body(data_reply)
            return DeliveryOutcome.from_replies(
                [RecipientReply(r, mail_code, mail_text) for r in recipients]
            )
        rcpts = [
            RecipientReply(r, *_expect(reply, RCPT_OK, "RCPT TO"))
            for r, reply in zip(recipients, replies[1:], strict=True)
        ]
        accepted = [r for r in rcpts if r.accepted]
        if not accepted or any(400 <= r.code < 500 for r in rcpts):
            # A temporary RCPT failure sends no DATA at all (fetchmail: "do not
            # risk dataloss"); RSET clears the half-built transaction.
            self._no_body(data_reply)
            return DeliveryOutcome.from_replies(rcpts)
        if data_reply is None:
            data_reply = self._command(conn, "DATA")
        code, text = _expect(data_reply, DATA_OK, "DATA")
        if code != 354:
            return DeliveryOutcome.from_replies(
                [RecipientReply(r.recipient, code, text) for r in rcpts]
            )
        following = self._following(listener, handoff.then)
        self._send_data(
            conn,
            handoff,
            [r.recipient for r in accepted],
            following[1] if following else [],
        )
        handoff.reached("dot")
        # The listener checks and stores the message now; the poll reads a
        # later one from the server meanwhile instead of waiting idle.
        handoff.awaiting_verdict()
        finals = {r.recipient: r for r in rcpts}
        if listener.lmtp:
            # One reply per accepted recipient, in RCPT order (RFC 2033 4.2).
            # An odd code is a temporary failure for that recipient alone, so
            # those the listener did accept are not offered the message again.
            odd = False
            for r in accepted:
                code, text = self._reply(conn)
                odd = odd or _unexpected(code, FINAL_OK)
                finals[r.recipient] = RecipientReply(
                    r.recipient, *_judged((code, text), FINAL_OK, "the final dot")
                )
            if odd:
                self._drop()
                following = None
        else:
            code, text = _expect(self._reply(conn), FINAL_OK, "the final dot")
            for r in accepted:
                finals[r.recipient] = RecipientReply(r.recipient, code, text)
        # Only now: a reply that failed above dropped the connection, and the
        # early envelope with it.
        self._ahead = following[0] if following else None
        return DeliveryOutcome.from_replies([finals[r] for r in recipients])

    def _following(
        self, listener: _Listener, then: Upcoming | None
    ) -> tuple[Upcoming, list[str]] | None:
        """The next message's envelope, to go out right behind the final dot.

        RFC 2920 3.1 lets the end of the data be followed by more commands in
        the same write, so the next message costs one round trip instead of
        two. Only with PIPELINING, within batchlimit, and under SIZE: the same
        commands the next transaction would send itself.
        """
        if then is None or "PIPELINING" not in listener.extensions:
            return None
        if self._batch_full(listener, after=1):
            return None  # the next message goes on a new connection
        commands = self._commands(listener, then.message, then.envelope, reset=True)
        return (then, commands) if commands is not None else None

    def _no_body(self, data_reply: tuple[int, str] | None) -> None:
        """The message will not be sent, yet a pipelined DATA may have been taken.

        A listener that refused the MAIL or every RCPT answers DATA with 503 or
        554 (RFC 2920 3.1), and the connection goes on with RSET. One that said
        354 waits for a body: an empty one would be a message, so the only safe
        way out is to close the connection, which aborts the transaction. Any
        other answer leaves its state unknown: closed too.
        """
        if data_reply is not None and not 400 <= data_reply[0] < 600:
            self._drop()

    def _envelope_replies(
        self, listener: _Listener, commands: list[str], *, reset: bool, sent: bool
    ) -> list[tuple[int, str]]:
        """Send RSET/MAIL/RCPT (and DATA) in one write when the listener offers
        PIPELINING, one by one otherwise; the replies after RSET's, in order.

        ``sent``: the commands already went out behind the last final dot; a
        failure before any reply of this message's own is then a stale
        connection too, since no byte of this message's body was sent.
        """
        conn = listener.conn
        replies: list[tuple[int, str]] = []
        try:
            if "PIPELINING" in listener.extensions:
                if not sent:
                    conn.send_lines([(line, None) for line in commands])
                if reset:
                    self._check_reset(*self._reply(conn))
                replies = [self._reply(conn) for _ in commands[reset:]]
                return replies
            if reset:
                self._check_reset(*self._command(conn, commands[0]))
            for line in commands[reset:]:
                replies.append(self._command(conn, line))
                if replies[0][0] != 250:
                    break  # MAIL refused: no RCPT
        except ListenerError as exc:
            if sent or (reset and not replies):
                raise StaleConnection(str(exc)) from exc
            raise
        return replies + [replies[0]] * (len(commands) - reset - len(replies))

    @staticmethod
    def _check_reset(code: int, text: str) -> None:
        if code != 250:
            raise StaleConnection(f"The listener answered {code} {text} to RSET.")

    def _send_data(
        self,
        conn: Connection,
        handoff: Handoff,
        recipients: list[str],
        following: list[str],
    ) -> None:
        """The body and its final dot; ``following`` commands in the same last
        write (the next message's envelope, see :meth:`_following`)."""
        encoder = SmtpDataEncoder()
        pending: list[bytes] = []  # joined only when sent: one copy at most
        size = sent = 0
        for chunk in handoff.message.chunks(recipients):
            pending.append(encoder.feed(chunk))
            size += len(pending[-1])
            if size >= SEND_BUFFER or not sent:
                conn.send_raw(pending[0] if len(pending) == 1 else b"".join(pending))
                if not sent:
                    handoff.reached("data")  # the listener has the first bytes
                sent += size
                pending.clear()
                size = 0
        pending.append(encoder.finish())
        data = b"".join(pending)
        conn.send_lines([(line, None) for line in following], before=data)
        conn.note(f"message data: {sent + len(data)} octets sent")

    def _qualify(self, listener: _Listener, recipient: str) -> str:
        """fetchmail's rcpt_address: a bare name gets the listener's domain.

        LMTP servers (Dovecot, Cyrus) look bare names up themselves, so over
        LMTP a bare name is qualified only when ``smtpaddress`` asks for it.
        """
        if "@" in recipient:
            return recipient
        if listener.lmtp and not self._delivery.smtpaddress:
            return recipient
        return f"{recipient}@{listener.domain}"

    def close(self, *, keep: bool = False) -> None:
        """QUIT; or, with ``keep`` (the poll ended cleanly, every reply read)
        and connections kept between polls, leave it open for the next poll."""
        if self._ahead is not None:
            # A listener that took an early DATA reads a QUIT as body text.
            self._drop()
            return
        listener, self._listener = self._listener, None
        if listener is None:
            return
        if (
            keep
            and self._kept is not None
            and self._kept_key is not None
            and listener.transactions
            and not self._batch_full(listener)
        ):
            self._kept.give(self._kept_key, listener)
            return
        try:
            self._command(listener.conn, "QUIT")
        except EngineError:
            pass  # a rude goodbye changes nothing once the replies are in
        finally:
            listener.conn.close()


# The positive reply each step requires (RFC 5321 4.3.2, RFC 2033 4.2). Only
# the reply to the final dot accepts a message; a 2xx anywhere else is merely
# leave to go on, and a different 2xx there is not leave at all. 252 is a VRFY
# reply (RFC 5321 3.5.3) that 4.3.2 does not list for MAIL or RCPT: a
# listener sending it has not promised anything, so it is not taken as yes.
MAIL_OK = frozenset({250})
RCPT_OK = frozenset({250, 251})
DATA_OK = frozenset({354})
FINAL_OK = frozenset({250})


def _unexpected(code: int, wanted: frozenset[int]) -> bool:
    """Neither the required reply nor a 4xx/5xx refusal."""
    return code not in wanted and not 400 <= code < 600


def _why(code: int, text: str, step: str, wanted: frozenset[int]) -> str:
    first = text.splitlines()[0] if text else ""
    return (
        f"The listener answered {code} {first} to {step} where only "
        f"{' or '.join(map(str, sorted(wanted)))} lets delivery go on; "
        "the message is kept for the next poll."
    )


def _expect(
    reply: tuple[int, str], wanted: frozenset[int], step: str
) -> tuple[int, str]:
    """``reply`` when it is the required one or a refusal; UnexpectedReply else."""
    code, text = reply
    if _unexpected(code, wanted):
        raise UnexpectedReply(_why(code, text, step, wanted))
    return reply


def _judged(
    reply: tuple[int, str], wanted: frozenset[int], step: str
) -> tuple[int, str]:
    """As :func:`_expect`, but an odd reply becomes a temporary failure (code 0)."""
    code, text = reply
    if _unexpected(code, wanted):
        return 0, _why(code, text, step, wanted)
    return reply


@functools.lru_cache(maxsize=8)
def _size_limit(value: str) -> int:
    """The SIZE extension's value as a limit (asked twice a message)."""
    return wire_number_or_none(value, SIZE) or 0


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
