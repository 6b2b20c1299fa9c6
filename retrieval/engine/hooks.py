"""Around one session: what fetchmail does before it connects and after it hangs up.

:func:`around` runs, in fetchmail's order (``fetchmail.c``, ``driver.c``):

1. options that make the poll impossible end it at once, exit 5
   (:mod:`retrieval.engine.unsupported`);
2. ``interface`` / ``monitor`` may skip the poll (:mod:`retrieval.engine.wire.link`):
   a note in the report, exit 1 (no mail), nothing else runs;
3. ``preconnect``: a command that fails (non-zero status, a signal, no end
   within the server timeout) skips the session, exit 5 as in fetchmail;
4. the session itself;
5. ``postconnect``, whenever ``preconnect`` was reached (also after it failed,
   as fetchmail's ``closeUp`` does); a failure makes a poll that had
   otherwise succeeded end with exit 5 (fetchmail's PS_SYNTAX), and is a
   note when the poll had already failed;
6. the monitored interface's traffic is noted for the next check.

The commands run without a shell (see :mod:`retrieval.engine.wire.commands`); what
they print and how they end is in the transcript.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from retrieval.engine import unsupported
from retrieval.engine.errors import ConfigError
from retrieval.engine.report import ExitCode
from retrieval.engine.spec import TlsMode
from retrieval.engine.wire import link
from retrieval.engine.wire.commands import program_environment, run_command, shown

if TYPE_CHECKING:
    from collections.abc import Callable

    from retrieval.engine.ports import Transcript
    from retrieval.engine.spec import MailboxSpec


class Report(Protocol):
    """What both a poll's and a check's report (``-c``) have."""

    exit_code: ExitCode
    error: str
    permanent: bool
    notes: list[str]


def around(
    spec: MailboxSpec,
    wire: Transcript,
    report: Report,
    session: Callable[[], None],
) -> None:
    """Run ``session`` inside the checks and commands; see the module docstring."""
    refused = unsupported.refusal(spec)
    if refused:
        _fail(report, wire, refused)
        return
    try:
        skipped = link.skip_reason(spec)
    except ConfigError as exc:
        _fail(report, wire, str(exc))
        return
    if skipped:
        wire.record("*", skipped)
        report.notes.append(skipped[:1].upper() + skipped[1:])
        report.exit_code = ExitCode.NOMAIL
        return
    if _command(spec, spec.preconnect, "preconnect", wire, report):
        session()
        _plugin_hint(spec, report)
    _command(spec, spec.postconnect, "postconnect", wire, report)
    link.note_activity(spec)


def _command(
    spec: MailboxSpec,
    argv: tuple[str, ...],
    label: str,
    wire: Transcript,
    report: Report,
) -> bool:
    """Run one of the two commands, if set; False when it failed."""
    if not argv:
        return True
    timeout = spec.server.timeout
    finished = run_command(
        argv,
        label=label,
        timeout=timeout,
        transcript=wire,
        env=program_environment(inherit=spec.server.inherit_env),
    )
    if finished.ok:
        return True
    words = "pre" if label == "preconnect" else "post"
    text = (
        f"The {words}-connection command ({shown(argv)}) {finished.describe(timeout)}"
    )
    if label == "preconnect":
        _fail(report, wire, f"{text}; the mail server was not contacted.")
    elif report.error:
        report.notes.append(f"{text}.")
    else:
        done = report.exit_code in (ExitCode.SUCCESS, ExitCode.MAXFETCH)
        _fail(report, wire, text + (" after a poll that succeeded." if done else "."))
    return False


def _plugin_hint(spec: MailboxSpec, report: Report) -> None:
    """A plugin that encrypts by itself (ssh, openssl s_client) carries plain
    IMAP/POP3, so the STARTTLS that the mailbox requires by default fails."""
    server = spec.server
    if (
        server.plugin
        and server.tls.mode is TlsMode.STARTTLS
        and report.exit_code is ExitCode.SOCKET
        and ("STARTTLS" in report.error or "PREAUTH" in report.error)
    ):
        report.error += (
            " This mailbox has a plugin: if the plugin program encrypts the "
            "connection itself (ssh, openssl s_client), add sslproto '' so that "
            "no STARTTLS is asked for over it, as fetchmail 6.4 also requires."
        )


def _fail(report: Report, wire: Transcript, text: str) -> None:
    report.exit_code = ExitCode.SYNTAX
    report.error = text
    report.permanent = True  # a configuration error, as ConfigError
    wire.record("*", f"poll ended: {text}")
