"""What the engine says about the options it does not apply (``MailboxSpec.extra``).

The rcfile mapping keeps every option it cannot turn into engine behaviour in
``extra`` as ``(name, value)``; this module knows why each one is not applied
and whether the poll can go on without it:

* a *refusal* ends the poll before anything is contacted (exit 5): a command
  that would need a shell, a protocol nobody can speak any more;
* a *note* is added to the report and the poll goes on: the option changes
  nothing that matters here (``principal`` without Kerberos), or only partly
  applies (``proto sdps`` is polled as the POP3 it extends).

Keys are the rcfile model's field names (``set NAME`` for globals); a value
refines the key where the reason depends on it (``protocol pop2``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrieval.engine.wire import sasl
from retrieval.engine.wire.commands import shell_refusal

if TYPE_CHECKING:
    from retrieval.engine.spec import MailboxSpec

COMMANDS = ("mda", "plugin", "plugout", "preconnect", "postconnect")
REASONS = {
    "protocol auto": (
        "the server is polled with IMAP, fetchmail's first choice, and POP3 "
        "is not tried after it; say proto pop3 for a POP3-only server"
    ),
    "protocol pop2": (
        "POP2 (RFC 937) is obsolete and no server offers it any more (Debian's "
        "fetchmail is built without it too); use pop3 or imap"
    ),
    "protocol rpop": (
        "RPOP (RFC 1081) logs in by trusting the client's privileged port, which "
        "no server accepts today; use pop3 with a password"
    ),
    "protocol sdps": (
        "SDPS (Demon Internet's POP3 extension) is polled as plain POP3; its "
        "*ENV envelope lookup is not used, so multidrop reads the headers"
    ),
    "principal": (
        "it names the Kerberos service for GSSAPI and Kerberos logins, which "
        "this system cannot do (see auth); other logins do not use it"
    ),
    "set syslog": (
        "the command line writes to standard output and error (redirect them, "
        "or give -L in daemon mode); the web service records every poll itself"
    ),
    "set logfile": "the web service records every poll itself",
    "set idfile": "the web service keeps delivered messages in its database",
    "set pidfile": "the web service runs as a service, not as a daemon per file",
}
REFUSED = {"protocol pop2", "protocol rpop", *COMMANDS}


def reason(key: str, value: str) -> str | None:
    """Why ``key value`` is not applied, when this module knows."""
    return _reason(key, value)


def _reason(key: str, value: str) -> str | None:
    if key in COMMANDS:
        return shell_refusal(value)
    return REASONS.get(f"{key} {value}") or REASONS.get(key)


def _fatal(key: str, value: str) -> bool:
    return key in REFUSED or f"{key} {value}" in REFUSED


def refusal(spec: MailboxSpec) -> str:
    """Why this spec cannot be polled at all; empty when it can."""
    reasons = [
        f"{key} {value!r}: {_reason(key, value)}"
        for key, value in spec.extra
        if _fatal(key, value)
    ]
    if not reasons:
        return ""
    return "This mailbox cannot be polled as configured: " + "; ".join(reasons) + "."


def notes(spec: MailboxSpec) -> list[str]:
    """One line per option that is not applied while the poll goes on."""
    return [describe(key, value) for key, value in spec.extra if not _fatal(key, value)]


def describe(key: str, value: str) -> str:
    """One option's status for a person (the report, ``-V``, the importer)."""
    reason = _reason(key, value)
    if reason is None:
        return f"The option {key} {value!r} is not supported yet."
    verb = "refused" if _fatal(key, value) else "not applied"
    return f"The option {key} {value!r} is {verb}: {reason}."


def auth_refusal(spec: MailboxSpec) -> str:
    """Why the configured ``auth`` will be refused at poll time; empty if not.

    (The session refuses it, before any secret is sent; this says it earlier,
    for the importer and ``-V``.)
    """
    auth = spec.server.auth.strip().lower()
    if auth == "gssapi":
        return sasl.gssapi_refusal()
    if auth == "ssh" and spec.server.plugin:
        return ""  # the plugin logs in; the server greets with PREAUTH
    reason = sasl.UNSUPPORTED.get(auth)
    return f"The option auth {auth!r} is refused: {reason}." if reason else ""


def run_time_notes(spec: MailboxSpec) -> list[str]:
    """Every option of ``spec`` that a poll will not apply, refusals first."""
    notes = [
        describe(key, value)
        for key, value in sorted(spec.extra, key=lambda kv: not _fatal(*kv))
        if not key.startswith("set ")
    ]
    refused = auth_refusal(spec)
    return [refused, *notes] if refused else notes
