"""ODMR (RFC 2645): the ISP's server hands a domain's queued mail over our connection.

We connect to port 366, say EHLO, authenticate (AUTH is mandatory in ODMR;
any mechanism :mod:`retrieval.engine.wire.sasl` can do, CRAM-MD5 first) and send
``ATRN`` with ``fetchdomains``. On 250 the roles reverse: we greet as an SMTP
server and the ISP's server sends us its queue, message by message.

Nothing is lost because nothing is acknowledged early: MAIL and RCPT are only
checked and noted, and the reply to the final dot is given after the local
listener (the mailbox's sink: SMTP, LMTP or MDA) answered for that message:
250 when it took it for every recipient, 451 when it deferred (the server keeps
it queued), 554 when it refused it. fetchmail instead copies bytes both ways
between the two sockets. Its exit codes are kept (``odmr.c``): 450 and 502 to
ATRN are protocol errors (4), 451 "try later" is 8, 453 "no mail" counts as
success, 530 is an authentication failure (3).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from retrieval.engine.deliver.headers import is_valid_address, message_id
from retrieval.engine.deliver.sink import Envelope, Handoff, Verdict, open_sink
from retrieval.engine.deliver.trace import TraceInfo
from retrieval.engine.deliver.transforms import Edits, OutgoingMessage
from retrieval.engine.errors import (
    AuthError,
    ConfigError,
    EngineError,
    MessageTooLarge,
    TransportError,
    TurnRefused,
)
from retrieval.engine.fetch.turn import (
    TurnClient,
    check_turn_options,
    local_fqdn,
)
from retrieval.engine.report import ExitCode, MessageOutcome, MessageStatus
from retrieval.engine.wire import sasl
from retrieval.engine.wire.spool import MessageSpool

if TYPE_CHECKING:
    from retrieval.engine.deliver.sink import DeliveryOutcome, Sink
    from retrieval.engine.ports import Transcript
    from retrieval.engine.report import PollReport
    from retrieval.engine.spec import MailboxSpec
    from retrieval.engine.wire.transport import Connection

ATRN_REFUSED = {
    450: ("the ATRN request was refused", ExitCode.PROTOCOL),
    451: ("the server cannot process ATRN now; try later", ExitCode.EXCLUDE),
    502: ("the server does not implement ATRN", ExitCode.PROTOCOL),
    530: ("the server wants authentication first", ExitCode.AUTHFAIL),
}
MAX_COMMAND_LINE = 2048
MAX_COMMANDS = 100_000  # per session: a server that never stops is cut off
MAX_RECIPIENTS = 1000
DATA_FRAGMENT = 64 * 1024
_PATH = re.compile(r"^(MAIL FROM|RCPT TO):\s*<([^<>]*)>(.*)$", re.I)


def odmr(spec: MailboxSpec, transcript: Transcript, report: PollReport) -> None:
    """Run one ODMR session; messages relayed land in ``report.messages``."""
    domains = check_turn_options(spec, "ODMR")
    local = local_fqdn(spec)
    client, report.greeting = TurnClient.open(spec, transcript, local)
    try:
        if "ATRN" not in client.extensions:
            raise TurnRefused(
                f"The server {spec.server.host} does not offer ATRN (ODMR); "
                "nothing was asked.",
                ExitCode.PROTOCOL,
            )
        _authenticate(client, spec)
        code, text = client.command("ATRN " + ",".join(domains))
        if code == 453:
            report.notes.append(f"ODMR: no mail waiting ({code} {text})")
            client.quit()
            return
        if code != 250:
            meaning, exit_code = ATRN_REFUSED.get(
                code, ("unknown ODMR error", ExitCode.PROTOCOL)
            )
            raise TurnRefused(f"ATRN: {meaning} ({code} {text}).", exit_code)
        client.conn.note("ODMR: the connection is turned around; receiving mail")
        _Relay(client.conn, spec, transcript, report, local).run()
    finally:
        client.conn.close()


# -- AUTH ----------------------------------------------------------------------


def _authenticate(client: TurnClient, spec: MailboxSpec) -> None:
    if spec.password is None:
        raise ConfigError("ODMR needs a password (AUTH is mandatory); none is set.")
    offered = frozenset(client.extensions.get("AUTH", "").upper().split())
    order = sasl.plan(
        spec.server.auth,
        sasl.Offer(sasl=offered, cleartext=()),
        client_cert=bool(spec.server.tls.cert_file),
    )
    refusal: EngineError | None = None
    for name in order:
        mech = sasl.mechanism(
            name,
            spec.username,
            spec.password.reveal(),
            host=spec.server.host,
            port=spec.server.effective_port,
        )
        try:
            sasl.exchange(mech, _SmtpSaslWire(client), initial_response=True)
        except AuthError as exc:
            refusal = exc
            continue
        return
    raise refusal or AuthError("No authentication method worked.")


class _SmtpSaslWire(sasl.CommandSaslWire):
    """SMTP AUTH (RFC 4954) for :func:`retrieval.engine.wire.sasl.exchange`."""

    def __init__(self, client: TurnClient) -> None:
        self._client = client
        self._conn = client.conn

    def read(self) -> sasl.Reply:
        code, text = self._client.reply()
        if code == 334:
            return sasl.Reply("continue", text)
        return sasl.Reply("ok" if code == 235 else "fail", f"{code} {text}")

    def refusal(self, text: str) -> EngineError:
        return AuthError(f"The ODMR server refused the login: {text}.")


# -- the reversed session: we are the SMTP server now ------------------------------


class _Relay:
    def __init__(
        self,
        conn: Connection,
        spec: MailboxSpec,
        transcript: Transcript,
        report: PollReport,
        local: str,
    ) -> None:
        self.conn = conn
        self.spec = spec
        self.transcript = transcript
        self.report = report
        self.local = local
        self.mail_from: str | None = None
        self.recipients: list[str] = []

    def run(self) -> None:
        sink = open_sink(
            self.spec.delivery,
            self.transcript,
            helo=self.local,
            message=self.spec.message,
        )
        try:
            self._say(f"220 {self.local} ready to receive mail")
            for _ in range(MAX_COMMANDS):
                try:
                    line = self.conn.readline(MAX_COMMAND_LINE)
                except TransportError as exc:
                    self.report.notes.append(f"ODMR: the session ended early: {exc}")
                    return
                if not self._command(line.decode("latin-1").rstrip("\r\n"), sink):
                    return
            self._say("421 4.7.0 too many commands; closing")
        finally:
            sink.close()

    def _say(self, line: str) -> None:
        self.conn.send_line(line)

    def _command(self, line: str, sink: Sink) -> bool:
        """Answer one command; False after QUIT."""
        verb = line.split(" ", 1)[0].upper()
        if verb in ("EHLO", "HELO"):
            self._reset()
            if verb == "HELO":
                self._say(f"250 {self.local}")
            else:
                self._say(f"250-{self.local}")
                self._say("250-8BITMIME")
                self._say(f"250 SIZE {self.spec.max_message_bytes}")
        elif verb in ("MAIL", "RCPT"):
            self._path(line)
        elif verb == "DATA":
            self._data(sink)
        elif verb == "RSET":
            self._reset()
            self._say("250 2.0.0 OK")
        elif verb == "NOOP":
            self._say("250 2.0.0 OK")
        elif verb == "QUIT":
            self._say(f"221 2.0.0 {self.local} closing connection")
            return False
        else:
            self._say("502 5.5.1 command not implemented")
        return True

    def _reset(self) -> None:
        self.mail_from, self.recipients = None, []

    def _path(self, line: str) -> None:
        match = _PATH.match(line)
        if match is None:
            self._say("501 5.5.4 syntax: MAIL FROM:<address> / RCPT TO:<address>")
            return
        verb, address = match.group(1).upper(), match.group(2).strip()
        if verb == "MAIL FROM":
            if address and not is_valid_address(address):
                self._say("553 5.1.7 unusable sender address")
                return
            self.mail_from, self.recipients = address, []
            self._say("250 2.1.0 sender noted")
            return
        if self.mail_from is None:
            self._say("503 5.5.1 MAIL first")
        elif not address or not is_valid_address(address):
            self._say("553 5.1.3 unusable recipient address")
        elif len(self.recipients) >= MAX_RECIPIENTS:
            self._say("452 4.5.3 too many recipients")
        else:
            self.recipients.append(address)
            # Only noted: the listener's verdict comes with the reply to DATA.
            self._say("250 2.1.5 recipient noted")

    def _data(self, sink: Sink) -> None:
        if self.mail_from is None or not self.recipients:
            self._say("503 5.5.1 MAIL and RCPT first")
            return
        self._say("354 go ahead; end with <CRLF>.<CRLF>")
        with MessageSpool(self.spec.max_message_bytes) as spool:
            too_big = self._receive(spool)
            result = MessageOutcome(
                folder="ODMR",
                uid=str(len(self.report.messages) + 1),
                size=spool.size,
                message_id=message_id(spool.header_block),
                recipients=tuple(self.recipients),
            )
            self.report.messages.append(result)
            if too_big:
                result.status = MessageStatus.REFUSED
                result.listener_reply = "larger than the largest message accepted"
                self._say("552 5.3.4 message too large")
            else:
                self.report.bytes_fetched += spool.size
                message = OutgoingMessage(spool, Edits(trace=self._trace()))
                envelope = Envelope(self.mail_from, tuple(self.recipients))
                outcome = sink.deliver(Handoff(message, envelope))
                self._answer(outcome, result)
        self._reset()

    def _receive(self, spool: MessageSpool) -> bool:
        """Read the data up to the lone dot, unstuffed; True if over the limit."""
        too_big = False
        at_line_start = True
        while True:
            piece = self.conn.read_fragment(DATA_FRAGMENT)
            if at_line_start and piece in (b".\r\n", b".\n"):
                return too_big
            at_line_start = piece.endswith(b"\n")
            if piece.startswith(b".") and not too_big:
                piece = piece[1:]
            if not too_big:
                try:
                    spool.write(piece)
                except MessageTooLarge:
                    too_big = True

    def _answer(self, outcome: DeliveryOutcome, result: MessageOutcome) -> None:
        """Tell the server what the listener said (one line, no CR/LF)."""
        said = " ".join(outcome.reply.split())[:400]
        result.listener_reply = outcome.reply
        if outcome.verdict is Verdict.ACCEPTED:
            result.status, result.deleted = MessageStatus.DELIVERED, True
            self._say(f"250 2.0.0 delivered: {said}")
        elif outcome.verdict is Verdict.DEFERRED:
            result.status = MessageStatus.DEFERRED
            self._say(f"451 4.3.0 local delivery deferred: {said}")
        else:
            result.status = MessageStatus.REFUSED
            accepted = [r.recipient for r in outcome.recipients if r.accepted]
            also = f" (delivered to {', '.join(accepted)})" if accepted else ""
            self._say(f"554 5.0.0 local delivery refused: {said}{also}"[:500])

    def _trace(self) -> TraceInfo:
        spec = self.spec
        return TraceInfo(
            server_host=spec.server.host,
            server_address=self.conn.peer_address(),
            local_name=self.local,
            protocol="ODMR",
            poll_name=spec.name or spec.server.host,
            account=spec.username,
            tracepolls=spec.message.tracepolls,
        )
