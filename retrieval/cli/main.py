"""``python -m retrieval.engine -f RCFILE [options] [server ...]``: one poll of
every active rcfile entry, like ``fetchmail -f RCFILE``, without the database;
with ``-d N`` (or ``set daemon N``) a poll every N seconds until stopped
(:mod:`retrieval.cli.daemon`).

Steps, in fetchmail's order: read the command line (exit 5 on a bad one); check
that the rcfile is private (exit 6, fetchmail's rule: see
:func:`retrieval.cli.idfile.insecure_file`); parse it (exit 5, ``FILE:LINE:``
message); select entries and apply the command line
(:mod:`retrieval.cli.config`); find every password (exit 3 when one is
missing and there is no terminal to ask on); lock and read the idfile (exit 6, or
8 when another poll holds it); poll each selected user description in turn,
once or (daemon mode) in cycles.

The exit status combines the polls as fetchmail does: 0 when any poll delivered
mail, otherwise the status of the last poll (1 when nothing was polled).

Output: ``-v`` prints the wire transcript as it happens, secrets masked, one
line per wire line (``<`` server, ``>`` us, ``*`` the engine's notes); unless
``-s``, a fetchmail-like summary follows each poll; errors go to standard error.
"""

from __future__ import annotations

import dataclasses
import getpass
import sys
import traceback
from typing import TYPE_CHECKING, TextIO

from retrieval.cli import daemon
from retrieval.cli.config import (
    Poll,
    check_merged,
    merged_config,
    polls,
    refuse_unsupported,
)
from retrieval.cli.idfile import (
    IdFile,
    IdfileBusy,
    IdfileError,
    insecure_file,
    mailbox_key,
)
from retrieval.cli.options import (
    PROG,
    CommandLine,
    UsageError,
    help_text,
    parse_command_line,
)
from retrieval.engine import unsupported
from retrieval.engine.check import check
from retrieval.engine.deliver.trace import VERSION
from retrieval.engine.memory import NullTranscript
from retrieval.engine.ports import utc_now
from retrieval.engine.report import ExitCode, MessageStatus, PollReport
from retrieval.engine.run import poll
from retrieval.engine.spec import Secret
from retrieval.rcfile import Environment, RcConfig, RcfileError, parse_bytes
from retrieval.rcfile.parser import read_rcfile

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from retrieval.engine.check import CheckReport
    from retrieval.engine.ports import Direction
    from retrieval.engine.spec import MailboxSpec

IDFILE_SUFFIX = ".fetchids"
PIDFILE_SUFFIX = ".pid"


class Fatal(Exception):
    """Stops the command before any poll, with an exit code and a message."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def main(
    argv: Sequence[str] | None = None, *, clock: Callable[[], datetime] = utc_now
) -> int:
    """The command; ``clock`` is the engine's (tests move it, see
    ``--delete-after-days``)."""
    try:
        cmd = parse_command_line(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        print(f"Try '{PROG} --help'.", file=sys.stderr)
        return ExitCode.SYNTAX
    if cmd.help:
        print(help_text(), end="")
        return ExitCode.SUCCESS
    try:
        return Command(cmd, Environment.current(), clock=clock).run()
    except Fatal as exc:
        print(exc, file=sys.stderr)
        return exc.code
    except Exception:
        # Python's own status for this would be 1, which means "no mail" here.
        traceback.print_exc()
        print(f"{PROG}: internal error, see above.", file=sys.stderr)
        return ExitCode.UNDEFINED


def combine_exit_codes(codes: Sequence[int]) -> int:
    """fetchmail's rule: 0 if any poll succeeded, else the last poll's status."""
    if ExitCode.SUCCESS in codes:
        return ExitCode.SUCCESS
    return codes[-1] if codes else ExitCode.NOMAIL


def default_rcfile(env: Environment) -> str:
    """fetchmail's: ``$FETCHMAILHOME/fetchmailrc``, else ``~/.fetchmailrc``."""
    if env.fmhome != env.home:
        return f"{env.fmhome}/fetchmailrc"
    return f"{env.home}/.fetchmailrc"


def default_idfile(rcfile: str) -> str:
    """Beside the rcfile, never fetchmail's own ``~/.fetchids``: the formats differ."""
    if rcfile == "-":
        raise Fatal(
            ExitCode.SYNTAX,
            "An rcfile read from standard input needs --idfile (or 'set idfile'): "
            "there is no file to keep the seen UIDs beside.",
        )
    return rcfile + IDFILE_SUFFIX


def default_pidfile(rcfile: str) -> str:
    """Beside the rcfile, like the idfile: one daemon per rcfile."""
    if rcfile == "-":
        raise Fatal(
            ExitCode.SYNTAX,
            "A daemon reading its rcfile from standard input needs --pidfile (or "
            "'set pidfile').",
        )
    return rcfile + PIDFILE_SUFFIX


def load_rcfile(path: str) -> RcConfig:
    """Check and parse; a missing file is an empty one, as in fetchmail."""
    problem = insecure_file(path)
    if problem:
        raise Fatal(ExitCode.IOERR, problem)
    try:
        data = read_rcfile(path)
    except FileNotFoundError:
        return RcConfig(filename=path)
    except OSError as exc:
        raise Fatal(ExitCode.IOERR, f"{path}: {exc.strerror or exc}") from exc
    try:
        return parse_bytes(data, path)
    except RcfileError as exc:
        raise Fatal(ExitCode.SYNTAX, exc.render()) from exc


class Command:
    """One run of the command: configuration, then the polls."""

    def __init__(
        self,
        cmd: CommandLine,
        env: Environment,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.cmd = cmd
        self.env = env
        self.out = Output(cmd)
        self.clock = clock

    def run(self) -> int:
        cmd = self.cmd
        rcfile = cmd.rcfile or default_rcfile(self.env)
        config = load_rcfile(rcfile)
        try:
            merged = merged_config(config, cmd)
            check_merged(merged)
            selected = polls(merged, cmd.servers, self.env)
            refuse_unsupported(cmd, selected)
        except UsageError as exc:
            raise Fatal(ExitCode.SYNTAX, f"{PROG}: {exc}") from exc
        pidfile = cmd.pidfile or merged.globals.pidfile or ""
        if cmd.quit:
            self._quit(pidfile or default_pidfile(rcfile))
            if not (cmd.daemon or cmd.servers):
                return ExitCode.SUCCESS
        interval = 0 if cmd.check else cmd.daemon
        if interval is None:
            interval = merged.globals.daemon or 0
        if not merged.servers:
            raise Fatal(
                ExitCode.SYNTAX,
                f"{PROG}: no mail servers have been specified ({rcfile} has no "
                "entries).",
            )
        idfile = cmd.idfile or merged.globals.idfile or default_idfile(rcfile)
        if cmd.version:
            self.out.version(rcfile, idfile, selected)
            return ExitCode.SUCCESS
        if not selected:
            self.out.say(f"Every entry of {rcfile} is marked 'skip': nothing to poll.")
            return ExitCode.NOMAIL
        beside = "" if rcfile == "-" else default_pidfile(rcfile)
        if not interval and not cmd.servers and not cmd.check:
            holder = daemon.running(pidfile or beside) if pidfile or beside else None
            if holder is not None and holder[0] and holder[1]:
                # fetchmail without arguments: the daemon polls now instead.
                daemon.wake(holder[0])
                self.out.say(f"{PROG}: background daemon at {holder[0]} awakened.")
                return ExitCode.SUCCESS
        selected = [self._with_password(p) for p in selected]
        if interval:
            logfile = cmd.logfile or merged.globals.logfile
            pidfile = pidfile or default_pidfile(rcfile)
            return self._daemon(selected, idfile, pidfile, interval, logfile)
        ids = self._open_idfile(idfile)
        with ids:
            try:
                codes = [self._poll(p, ids) for p in selected]  # every poll runs
            except IdfileError as exc:
                # The engine stops at once: no delete follows an unrecorded delivery.
                raise Fatal(
                    ExitCode.IOERR,
                    f"{exc} Polling stopped before anything more was deleted; the "
                    "last message may be delivered again by the next poll.",
                ) from exc
        return combine_exit_codes(codes)

    def _quit(self, pidfile: str) -> None:
        """``-q``: stop the daemon of this PID file, as ``fetchmail -q``."""
        try:
            pid = daemon.quit_daemon(pidfile)
        except TimeoutError as exc:
            raise Fatal(
                ExitCode.EXCLUDE, f"{PROG}: the daemon is still running: {exc}."
            ) from exc
        if pid is None:
            if not (self.cmd.daemon or self.cmd.servers):
                raise Fatal(
                    ExitCode.EXCLUDE, f"{PROG}: no other daemon is running ({pidfile})."
                )
            return
        self.out.say(f"{PROG}: background daemon at {pid} killed.")

    def _daemon(
        self,
        selected: list[Poll],
        idfile: str,
        pidfile: str,
        interval: int,
        logfile: str | None,
    ) -> int:
        """Poll every ``interval`` seconds until a signal stops it."""
        try:
            held = daemon.PidFile.acquire(pidfile, interval)
        except daemon.DaemonBusy as exc:
            raise Fatal(ExitCode.EXCLUDE, f"{PROG}: {exc}.") from exc
        except OSError as exc:
            raise Fatal(ExitCode.IOERR, f"{pidfile}: {exc.strerror or exc}") from exc
        try:
            ids = self._open_idfile(idfile)
            with ids:
                if not self.cmd.nodetach:
                    daemon.detach(logfile)
                    held.write()
                self.out.say(
                    f"{PROG}: starting fetchweb {VERSION} daemon, polling every "
                    f"{interval} seconds"
                )
                cycle = daemon.Daemon(
                    interval,
                    [(p.server.name, p.server.options.interval or 0) for p in selected],
                    lambda index: self._poll(
                        selected[index], ids, stop=lambda: cycle.stopping
                    ),
                    self.out.say,
                    self.out.chatter,
                )
                try:
                    return cycle.run()
                except IdfileError as exc:
                    raise Fatal(ExitCode.IOERR, f"{exc} The daemon stopped.") from exc
        finally:
            held.release()

    @staticmethod
    def _open_idfile(idfile: str) -> IdFile:
        try:
            return IdFile.open(idfile)
        except IdfileBusy as exc:
            raise Fatal(ExitCode.EXCLUDE, str(exc)) from exc
        except IdfileError as exc:
            raise Fatal(ExitCode.IOERR, str(exc)) from exc

    def _with_password(self, p: Poll) -> Poll:
        """fetchmail asks on the terminal, or gives up at once without one."""
        if p.spec.password is not None:
            return p
        where = f"{p.spec.username}@{p.server.name}"
        if not sys.stdin.isatty():
            raise Fatal(
                ExitCode.AUTHFAIL, f"{PROG}: can't find a password for {where}."
            )
        secret = Secret(getpass.getpass(f"Enter password for {where}: "))
        return dataclasses.replace(p, spec=dataclasses.replace(p.spec, password=secret))

    def _poll(
        self, p: Poll, ids: IdFile, stop: Callable[[], bool] | None = None
    ) -> int:
        ledger = ids.ledger(mailbox_key(p.spec))
        transcript = ConsoleTranscript(sys.stdout) if self.cmd.verbose else None
        self.out.started(p)
        if self.cmd.check:
            checked = check(
                p.spec, ledger=ledger, transcript=transcript or NullTranscript()
            )
            self.out.checked(p, checked)
            code = checked.exit_code
        else:
            report = poll(
                p.spec,
                ledger=ledger,
                transcript=transcript or NullTranscript(),
                stop=stop,
                clock=self.clock,
            )
            self.out.polled(p, report)
            code = report.exit_code
        self.out.completed(p, code)
        return code


_ARROWS = {"S": "<", "C": ">", "*": "*"}


class ConsoleTranscript:
    """``-v``: each wire line as it happens; the engine has masked secrets."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def record(self, direction: Direction, text: str) -> None:
        self.stream.write(f"{_ARROWS[direction]} {text}\n")
        self.stream.flush()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class Output:
    """fetchmail-like lines: summaries on stdout, errors on stderr."""

    def __init__(self, cmd: CommandLine) -> None:
        self.verbose = cmd.verbose > 0
        self.silent = cmd.silent

    def say(self, text: str) -> None:
        if not self.silent:
            print(text, flush=True)

    def chatter(self, text: str) -> None:
        """What fetchmail says only with -v (the daemon's sleeps and skips)."""
        if self.verbose:
            print(f"{PROG}: {text}", flush=True)

    def error(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    @staticmethod
    def who(p: Poll) -> str:
        return f"{p.spec.username} at {p.server.name}"

    def started(self, p: Poll) -> None:
        if self.verbose:
            proto = p.spec.server.protocol.value.upper()
            self.say(
                f"{PROG}: querying {p.server.name} (protocol {proto}): poll started"
            )

    def completed(self, p: Poll, code: int) -> None:
        if self.verbose:
            name = ExitCode(code).name if code in set(ExitCode) else str(code)
            self.say(
                f"{PROG}: querying {p.server.name}: poll completed, "
                f"status {code} ({name})"
            )

    def polled(self, p: Poll, report: PollReport) -> None:
        who = self.who(p)
        messages = report.messages
        if messages:
            octets = sum(m.size for m in messages)
            self.say(
                f"{_plural(len(messages), 'message')} for {who} ({octets} octets)."
            )
        if messages:
            # One write for all of them: a flush per line was a system call
            # per message (the same bytes either way).
            self.say(
                "\n".join(
                    f"reading message {p.spec.username}@{p.server.name}:{n} of "
                    f"{len(messages)} ({m.size} octets) {_outcome(m.status, deleted=m.deleted, reply=m.listener_reply)}"
                    for n, m in enumerate(messages, 1)
                )
            )
        for note in report.notes:
            self.say(f"{who}: {note}")
        if report.error:
            self.error(f"{who}: {report.error}")
        elif not messages:
            self.say(f"No mail for {who}")

    def checked(self, p: Poll, report: CheckReport) -> None:
        who = self.who(p)
        for note in report.notes:
            self.say(f"{who}: {note}")
        if report.error:
            self.error(f"{who}: {report.error}")
        elif report.total:
            seen = report.total - report.waiting
            self.say(f"{_plural(report.total, 'message')} ({seen} seen) for {who}.")
        else:
            self.say(f"No mail for {who}")

    def version(self, rcfile: str, idfile: str, selected: list[Poll]) -> None:
        print(f"This is fetchweb {VERSION}, {PROG} (fetchmail-compatible, one poll).")
        print(f"Taking options from the command line and {rcfile}; idfile {idfile}.")
        for p in selected:
            s = p.spec
            tls = s.server.tls
            trust = "verified" if tls.verify else "NOT verified"
            if tls.fingerprint:
                trust += ", fingerprint pinned"
            to = (
                " ".join(s.delivery.mda)
                if s.delivery.mda
                else ", ".join(s.delivery.hosts)
            )
            print(
                f"Poll of {p.server.name}: {s.server.protocol.value.upper()} as "
                f"{s.username} at {s.server.host}:{s.server.effective_port}, "
                f"TLS {tls.mode.value} ({trust}); {s.delivery.kind.value.upper()} "
                f"to {to}; {'keep' if s.keep else 'delete after delivery'}"
                f"{_expiry(s)}{', fetch all' if s.fetchall else ''}."
            )
            for key, value in s.extra:
                print(f"  {unsupported.describe(key, value)}")


def _expiry(spec: MailboxSpec) -> str:
    if spec.keep and spec.delete_after_days:
        return f" for {spec.delete_after_days} days after delivery"
    return ""


def _outcome(status: MessageStatus, *, deleted: bool, reply: str) -> str:
    """fetchmail's words: "flushed" means deleted from the server."""
    flushed = "flushed" if deleted else "not flushed"
    if status is MessageStatus.DELIVERED:
        return flushed
    if status in (MessageStatus.SKIPPED, MessageStatus.EXPIRED):
        return f"{flushed} ({reply})" if reply else flushed
    return f"{flushed} ({status.value}: {reply})"
