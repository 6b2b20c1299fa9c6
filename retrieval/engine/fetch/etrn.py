"""ETRN (RFC 1985): ask the ISP's mail server to send a domain's queued mail now.

No mail flows through us: the server delivers the queue to the domain's own
mail exchanger by SMTP, as its routing says. We connect to its SMTP port, say
EHLO, refuse clearly when ETRN is not offered, send ``ETRN domain`` for each of
``fetchdomains`` and report each answer. Exit codes are fetchmail's
(``etrn.c``): 250/252/253 started and 251 nothing waiting are success; 458 is
a protocol error (4), 459 "node not allowed" an authentication failure (3),
anything else a protocol error (4); a server without ETRN is 4.

Unlike fetchmail, a 251 for one domain does not stop the others from being
asked.

TLS: ETRN sends no secret, and fetchmail never upgrades it, so an rcfile entry
without any TLS option asks in clear (``retrieval.rcfile.specs``); a stock MTA
offering STARTTLS with a self-signed certificate is then never refused for it.
Whatever TLS the spec does ask for (``ssl``, ``sslcertck``, a pinned
certificate) is verified as for POP3 and IMAP. ODMR sends a password and keeps
the POP3/IMAP rule: verified STARTTLS by default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrieval.engine.errors import TurnRefused
from retrieval.engine.fetch.turn import (
    TurnClient,
    check_turn_options,
    local_fqdn,
)
from retrieval.engine.report import ExitCode

if TYPE_CHECKING:
    from retrieval.engine.ports import Transcript
    from retrieval.engine.report import PollReport
    from retrieval.engine.spec import MailboxSpec

STARTED = {
    250: "queuing started",
    251: "no messages waiting",
    252: "pending messages started",
    253: "pending messages started",
}
REFUSED = {
    458: ("unable to queue messages", ExitCode.PROTOCOL),
    459: ("node not allowed", ExitCode.AUTHFAIL),
    500: ("syntax error", ExitCode.PROTOCOL),
    501: ("syntax error in parameters", ExitCode.PROTOCOL),
}


def etrn(spec: MailboxSpec, transcript: Transcript, report: PollReport) -> None:
    """Run the ETRN exchange; raises an EngineError subclass when it fails."""
    domains = check_turn_options(spec, "ETRN")
    client, report.greeting = TurnClient.open(spec, transcript, local_fqdn(spec))
    try:
        if "ETRN" not in client.extensions:
            raise TurnRefused(
                f"The server {spec.server.host} does not offer ETRN; nothing was "
                "asked.",
                ExitCode.PROTOCOL,
            )
        for domain in domains:
            code, text = client.command(f"ETRN {domain}")
            if code in STARTED:
                report.notes.append(f"ETRN {domain}: {STARTED[code]} ({code} {text})")
                continue
            meaning, exit_code = REFUSED.get(
                code, ("unknown ETRN error", ExitCode.PROTOCOL)
            )
            raise TurnRefused(
                f"The server refused ETRN for {domain}: {meaning} ({code} {text}).",
                exit_code,
            )
    finally:
        client.quit()
    report.exit_code = ExitCode.SUCCESS
