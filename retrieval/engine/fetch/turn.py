"""The client side of an ESMTP dialogue with the ISP's mail server, for ETRN and ODMR.

Both protocols ask a server to send a domain's queued mail instead of fetching
a mailbox: :class:`TurnClient` connects (TLS as the spec says, never
downgraded), reads the greeting, says EHLO and knows the extensions offered.
:class:`TurnRefused` carries the exit code fetchmail gives each refusal.
"""

from __future__ import annotations

import re
import socket
from typing import TYPE_CHECKING

from retrieval.engine.errors import (
    ConfigError,
    EngineError,
    ProtocolError,
    TlsError,
    TurnRefused,
)
from retrieval.engine.report import ExitCode
from retrieval.engine.spec import TlsMode
from retrieval.engine.wire.tls import check_fingerprint, client_context
from retrieval.engine.wire.tunnel import connect_server

if TYPE_CHECKING:
    from retrieval.engine.ports import Transcript
    from retrieval.engine.spec import MailboxSpec
    from retrieval.engine.wire.transport import Connection

MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 100
_REPLY = re.compile(rb"^([2-5][0-9][0-9])([ -])(.*?)\r?\n\Z", re.S)
# RFC 1985's node names: a domain, "@domain" (and its subdomains) or "#queue".
_NODE = re.compile(r"[@#]?[A-Za-z0-9](?:[A-Za-z0-9._-]{0,253})")


def check_turn_options(spec: MailboxSpec, protocol: str) -> tuple[str, ...]:
    """fetchmail refuses mailbox options for ETRN/ODMR (exit 5); the domains."""
    for option, used in (
        ("keep", spec.keep),
        ("flush", spec.flush),
        ("folder", bool(spec.folders)),
    ):
        if used:
            raise ConfigError(f"The option {option} cannot be used with {protocol}.")
    if not spec.fetchdomains:
        raise ConfigError(
            f"{protocol} needs the domains to ask for (fetchdomains); none is set."
        )
    for domain in spec.fetchdomains:
        if _NODE.fullmatch(domain) is None:
            raise ConfigError(
                f"{domain!r} is not a domain name {protocol} can ask for."
            )
    return spec.fetchdomains


class TurnClient:
    """One ESMTP client conversation; ``extensions`` maps keyword -> parameters."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.extensions: dict[str, str] = {}

    @classmethod
    def open(
        cls, spec: MailboxSpec, transcript: Transcript, local_name: str
    ) -> tuple[TurnClient, str]:
        """Connect, secure as configured, read the greeting, EHLO; and the greeting."""
        server = spec.server
        mode = server.tls.mode
        context = client_context(server.tls) if mode is not TlsMode.NONE else None
        name = server.tls.server_name or server.host
        conn = connect_server(server, transcript)  # TCP, or the plugin program
        client = cls(conn)
        try:
            if context is not None and mode is TlsMode.IMPLICIT:
                conn.start_tls(context, name)
                check_fingerprint(conn.peer_certificate(), server.tls.fingerprint)
            code, greeting = client.reply()
            if code != 220:
                raise TurnRefused(
                    f"The server did not greet us ({code} {greeting}).",
                    ExitCode.PROTOCOL,
                )
            client.ehlo(local_name)
            if context is not None and mode is TlsMode.STARTTLS:
                if "STARTTLS" not in client.extensions:
                    raise TlsError(
                        "The server does not offer STARTTLS, which this mailbox "
                        "requires; nothing was sent."
                    )
                code, text = client.command("STARTTLS")
                if code != 220:
                    raise TlsError(f"The server refused STARTTLS: {code} {text}.")
                conn.start_tls(context, name)
                check_fingerprint(conn.peer_certificate(), server.tls.fingerprint)
                client.ehlo(local_name)
        except BaseException:
            conn.close()
            raise
        return client, greeting

    def ehlo(self, local_name: str) -> None:
        code, text = self.command(f"EHLO {local_name}")
        if code != 250:
            raise TurnRefused(
                f"The server does not speak ESMTP ({code} {text}).", ExitCode.PROTOCOL
            )
        self.extensions = {}
        for line in text.splitlines()[1:]:
            keyword, _, value = line.strip().partition(" ")
            if keyword:
                self.extensions[keyword.upper()] = value.strip()

    def reply(self) -> tuple[int, str]:
        """A (possibly multi-line) reply; anything malformed ends the poll."""
        lines: list[str] = []
        code = 0
        for _ in range(MAX_REPLY_LINES):
            raw = self.conn.readline(MAX_REPLY_LINE)
            match = _REPLY.match(raw)
            if match is None or (code and int(match.group(1)) != code):
                raise ProtocolError(f"The server sent a malformed reply: {raw[:80]!r}.")
            code = int(match.group(1))
            lines.append(match.group(3).decode("utf-8", "replace"))
            if match.group(2) == b" ":
                return code, "\n".join(lines)
        raise ProtocolError("The server sent an endless multi-line reply.")

    def command(self, line: str, *, shown: str | None = None) -> tuple[int, str]:
        self.conn.send_line(line, shown=shown)
        return self.reply()

    def quit(self) -> None:
        """Say goodbye; a rude answer changes nothing once the work is done."""
        try:
            self.command("QUIT")
        except EngineError:
            pass
        finally:
            self.conn.close()


def local_fqdn(spec: MailboxSpec) -> str:
    """The name we give in EHLO (fetchmail: this host's FQDN)."""
    return spec.delivery.helo_name or socket.gethostname() or "localhost"
