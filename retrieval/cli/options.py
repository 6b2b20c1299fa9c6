"""fetchmail's command-line options, read into the rcfile's own model types.

Every option fetchmail 6.4 knows (``options.c``) is recognised, with its short
and long spellings, its argument syntax (``strtol`` numbers, comma lists,
relative paths made absolute against the working directory) and its values
stored the way fetchmail stores them before ``optmerge``: in a
:class:`~retrieval.rcfile.model.ServerOptions`, a
:class:`~retrieval.rcfile.model.UserOptions` and a
:class:`~retrieval.rcfile.model.GlobalOptions` whose ``None`` means "not given".
:mod:`retrieval.cli.config` merges them into the parsed rcfile.

Options that steer the process rather than a poll are fetchmail's too: daemon
mode (``-d N``, ``-N``, ``-L``, ``--pidfile``, ``-q``; see
:mod:`retrieval.cli.daemon`); syslog and the parser trace are refused here,
with the reason. Options whose value reaches the engine are refused later, by
:mod:`retrieval.cli.config`, only if the engine cannot act on them.

Where fetchmail differs from what an administrator expects, we differ from
fetchmail and say so in ``docs/cli.md``: an unknown option is an error (exit 5),
not a help text with exit 0.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrieval.rcfile.model import AUTH_TYPES, GlobalOptions, ServerOptions, UserOptions
from retrieval.rcfile.parser import prependdir

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

PROG = "python -m retrieval.engine"
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


class UsageError(Exception):
    """A command line fetchmail would reject, or one this command refuses (exit 5)."""


@dataclass
class CommandLine:
    """What the command line asked for; see the module docstring."""

    rcfile: str | None = None
    idfile: str | None = None
    verbose: int = 0
    silent: bool = False
    check: bool = False
    version: bool = False
    help: bool = False
    daemon: int | None = None  # -d N: None when not given (set daemon applies)
    quit: bool = False
    nodetach: bool = False
    pidfile: str | None = None
    logfile: str | None = None
    servers: list[str] = field(default_factory=list)
    globals: GlobalOptions = field(default_factory=GlobalOptions)
    server: ServerOptions = field(default_factory=ServerOptions)
    user: UserOptions = field(default_factory=UserOptions)
    # (option as written, model field) for every override given, in order: the
    # engine's refusals name the option the user typed.
    given: list[tuple[str, str]] = field(default_factory=list)


# ------------------------------------------------------------ argument syntax


def c_int(text: str) -> int:
    """``xatoi``: C ``strtol(s, &end, 0)`` over the whole string, within ``int``."""
    body = text.lstrip(" \t\n\v\f\r")
    sign = -1 if body[:1] == "-" else 1
    if body[:1] in "+-" and body:
        body = body[1:]
    base = 10
    if body[:2].lower() == "0x" and len(body) > 2:
        base, body = 16, body[2:]
    elif body[:1] == "0" and len(body) > 1:
        base, body = 8, body[1:]
    try:
        if not body or not body.isascii() or not body.isalnum():
            raise ValueError(text)
        value = sign * int(body, base)
    except ValueError:
        raise UsageError(f"String '{text}' is not a valid number string.") from None
    if not INT_MIN <= value <= INT_MAX:
        bound, word = (INT_MIN, "smaller") if value < 0 else (INT_MAX, "larger")
        raise UsageError(f"Value of string '{text}' is {word} than {bound}.")
    return value


def comma_list(text: str) -> list[str]:
    """``strtok(s, ",")``: empty items vanish."""
    return [item for item in text.split(",") if item]


def number_list(text: str) -> list[int]:
    return [c_int(item) for item in comma_list(text)]


def local_path(text: str) -> str:
    """Relative paths are taken from the working directory, as fetchmail does."""
    return prependdir(text, str(Path.cwd()))


def positive_number(text: str, option: str, unit: str) -> int:
    value = c_int(text)
    if value <= 0:
        raise UsageError(f"{option} {text}: give a positive number of {unit}.")
    return value


def positive_seconds(text: str) -> int:
    value = c_int(text)
    if value <= 0:
        # fetchmail turns 0 into "no timeout"; every wait here has a deadline.
        raise UsageError(
            f"--timeout {text}: give a positive number of seconds (waiting without "
            "a deadline is not supported)."
        )
    return value


_PROTOCOLS = {
    name: name
    for name in ("auto", "pop2", "pop3", "apop", "rpop", "imap", "etrn", "odmr")
}


def protocol(text: str) -> str:
    name = text.lower()
    if name in ("kpop", "sdps"):
        raise UsageError(
            f"--protocol {text}: {name.upper()} is not supported by this command."
        )
    if name not in _PROTOCOLS:
        raise UsageError(f"Invalid protocol `{text}' specified.")
    return _PROTOCOLS[name]


_AUTH_ALIASES = {
    "kerberos": "kerberos_v5",
    "implicit": "ssh",
    "opie": "otp",
    "cram": "cram-md5",
}


def auth(text: str) -> str | None:
    """fetchmail's names; ``any`` is its zero value, which overrides nothing."""
    name = "external" if text.lower() == "external" else text
    name = _AUTH_ALIASES.get(name, name)
    if name == "any":
        return None
    if name not in AUTH_TYPES:
        raise UsageError(f"Invalid authentication `{text}' specified.")
    return name


def bad_header(text: str) -> bool | None:
    """``accept`` is a value; ``reject`` is fetchmail's zero, overriding nothing."""
    if text.lower() == "accept":
        return True
    if text.lower() == "reject":
        return None
    raise UsageError(f"Invalid bad-header policy `{text}' specified.")


# ------------------------------------------------------------------ the table


@dataclass(frozen=True)
class _Option:
    names: tuple[str, ...]
    target: str  # "user.keep", "server.protocol", "global.postmaster", "run.check"
    convert: Callable[[str], Any] | None = None  # None: a switch storing ``const``
    const: Any = True
    metavar: str = ""
    help: str = ""
    refused: str = ""  # non-empty: the option is refused with this reason
    destination: bool = False  # counts towards "one of -S, -m, --bsmtp"


def _o(*names: str, target: str, **kw: Any) -> _Option:
    return _Option(names, target, **kw)


OPTIONS: tuple[_Option, ...] = (
    _o("-?", "--help", target="run.help", help="show this help and exit"),
    _o("-V", "--version", target="run.version", help="show the version and the polls"),
    _o("-c", "--check", target="run.check", help="count waiting messages, fetch none"),
    _o("-s", "--silent", target="run.silent", help="print only errors"),
    _o("-v", "--verbose", target="run.verbose", help="print the wire transcript"),
    _o(
        "-f",
        "--fetchmailrc",
        target="run.rcfile",
        convert=local_path,
        metavar="FILE",
        help="the rcfile (default ~/.fetchmailrc; '-' reads standard input)",
    ),
    _o(
        "-i",
        "--idfile",
        target="run.idfile",
        convert=local_path,
        metavar="FILE",
        help="where seen UIDs are kept (default: RCFILE.fetchids)",
    ),
    _o(
        "-d",
        "--daemon",
        target="run.daemon",
        convert=c_int,
        metavar="SECONDS",
        help="poll every SECONDS until stopped (0: once, overriding set daemon)",
    ),
    _o(
        "-N",
        "--nodetach",
        target="run.nodetach",
        help="daemon mode: stay in the foreground",
    ),
    _o("--nosyslog", target="run.nosyslog", help="accepted: nothing goes to syslog"),
    _o(
        "-q",
        "--quit",
        target="run.quit",
        help="stop the running daemon (then start anew if -d is given)",
    ),
    _o(
        "--syslog",
        target="run.syslog",
        refused="messages go to standard output and error (or -L in daemon mode)",
    ),
    _o(
        "-L",
        "--logfile",
        target="run.logfile",
        convert=local_path,
        metavar="FILE",
        help="daemon mode: where output goes once detached",
    ),
    _o(
        "--pidfile",
        target="run.pidfile",
        convert=local_path,
        metavar="FILE",
        help="the daemon's PID file (default: RCFILE.pid)",
    ),
    _o(
        "--configdump",
        target="run.configdump",
        refused="use 'python -m retrieval.rcfile FILE'",
    ),
    _o("-y", "--yydebug", target="run.yydebug", refused="there is no parser trace"),
    _o("--invisible", target="global.invisible"),
    _o("--showdots", target="global.showdots"),
    _o("--postmaster", target="global.postmaster", convert=str, metavar="NAME"),
    _o("--nobounce", target="global.bouncemail", const=False),
    _o(
        "--softbounce", target="global.softbounce", help="keep permanently refused mail"
    ),
    _o(
        "--nosoftbounce",
        target="global.softbounce",
        const=False,
        help="delete permanently refused mail",
    ),
    _o(
        "-p",
        "--protocol",
        "--proto",
        target="server.protocol",
        convert=protocol,
        metavar="PROTO",
        help="pop3, imap, apop, auto, etrn or odmr",
    ),
    _o("-U", "--uidl", target="server.uidl"),
    _o("--idle", target="user.idle"),
    _o(
        "-P",
        "--service",
        "--port",
        target="server.service",
        convert=str,
        metavar="PORT",
        help="TCP port or service name",
    ),
    _o(
        "--auth",
        target="server.auth",
        convert=auth,
        metavar="TYPE",
        help="authentication type",
    ),
    _o(
        "-t",
        "--timeout",
        target="server.timeout",
        convert=positive_seconds,
        metavar="SECONDS",
        help="server non-response timeout",
    ),
    _o("-E", "--envelope", target="server.envelope", convert=str, metavar="HEADER"),
    _o("-Q", "--qvirtual", target="server.qvirtual", convert=str, metavar="PREFIX"),
    _o("--bad-header", target="server.badheader", convert=bad_header, metavar="POLICY"),
    _o("--principal", target="server.principal", convert=str, metavar="NAME"),
    _o("--tracepolls", target="server.tracepolls"),
    _o("-I", "--interface", target="server.interface", convert=str, metavar="SPEC"),
    _o("-M", "--monitor", target="server.monitor", convert=str, metavar="IFACE"),
    _o("--plugin", target="server.plugin", convert=str, metavar="COMMAND"),
    _o("--plugout", target="server.plugout", convert=str, metavar="COMMAND"),
    _o(
        "-u",
        "--username",
        "--user",
        target="user.remote",
        convert=str,
        metavar="NAME",
        help="login name on the server",
    ),
    _o(
        "-a",
        "--all",
        "--fetchall",
        target="user.fetchall",
        help="fetch old and new messages",
    ),
    _o(
        "-K",
        "--nokeep",
        target="user.keep",
        const=False,
        help="delete messages after delivery",
    ),
    _o("-k", "--keep", target="user.keep", help="keep messages on the server"),
    _o("-F", "--flush", target="user.flush", help="delete old messages first"),
    _o("--limitflush", target="user.limitflush"),
    _o("-n", "--norewrite", target="user.rewrite", const=False),
    _o(
        "-l",
        "--limit",
        target="user.limit",
        convert=c_int,
        metavar="BYTES",
        help="skip messages larger than this",
    ),
    _o("-w", "--warnings", target="user.warnings", convert=c_int, metavar="SECONDS"),
    _o(
        "-r",
        "--folder",
        target="user.folders",
        convert=comma_list,
        metavar="FOLDERS",
        help="remote folders (IMAP), comma-separated",
    ),
    _o(
        "-S",
        "--smtphost",
        target="user.smtphost",
        convert=comma_list,
        metavar="HOSTS",
        help="SMTP/LMTP listeners: host, host/port, /socket",
        destination=True,
    ),
    _o(
        "--fetchdomains",
        target="user.fetchdomains",
        convert=comma_list,
        metavar="DOMAINS",
    ),
    _o(
        "-D",
        "--smtpaddress",
        target="user.smtpaddress",
        convert=str,
        metavar="DOMAIN",
        help="domain appended to the local recipient",
    ),
    _o(
        "--smtpname",
        target="user.smtpname",
        convert=str,
        metavar="ADDRESS",
        help="envelope recipient",
    ),
    _o(
        "-Z",
        "--antispam",
        target="user.antispam",
        convert=number_list,
        metavar="CODES",
        help="listener codes meaning spam: delete",
    ),
    _o(
        "-b",
        "--batchlimit",
        target="user.batchlimit",
        convert=c_int,
        metavar="N",
        help="messages per listener connection",
    ),
    _o(
        "-B",
        "--fetchlimit",
        target="user.fetchlimit",
        convert=c_int,
        metavar="N",
        help="messages per poll",
    ),
    _o("--fetchsizelimit", target="user.fetchsizelimit", convert=c_int, metavar="N"),
    # Ours: fetchmail has no such option (its FAQ's second most asked feature).
    _o(
        "--delete-after-days",
        target="user.delete_after_days",
        convert=lambda text: positive_number(text, "--delete-after-days", "days"),
        metavar="N",
        help="with --keep: delete messages N days after their delivery",
    ),
    _o("--fastuidl", target="user.fastuidl", convert=c_int, metavar="N"),
    _o(
        "-e",
        "--expunge",
        target="user.expunge",
        convert=c_int,
        metavar="N",
        help="deletions between expunges",
    ),
    _o(
        "-m",
        "--mda",
        target="user.mda",
        convert=str,
        metavar="COMMAND",
        help="deliver through this program (no shell)",
        destination=True,
    ),
    _o(
        "--bsmtp",
        target="user.bsmtp",
        convert=local_path,
        metavar="FILE",
        destination=True,
    ),
    _o("--lmtp", target="user.lmtp", help="the listeners speak LMTP"),
    _o("--ssl", target="user.ssl", help="TLS from the first byte"),
    _o("--sslkey", target="user.sslkey", convert=local_path, metavar="FILE"),
    _o("--sslcert", target="user.sslcert", convert=local_path, metavar="FILE"),
    _o(
        "--sslproto",
        target="user.sslproto",
        convert=str,
        metavar="PROTO",
        help="'' for cleartext, TLS1.2+, TLS1.3+",
    ),
    _o("--sslcertck", target="user.sslcertck", help="verify the certificate"),
    _o(
        "--nosslcertck",
        target="user.sslcertck",
        const=False,
        help="do not verify the certificate",
    ),
    _o(
        "--sslcertfile",
        target="user.sslcertfile",
        convert=local_path,
        metavar="FILE",
        help="trust these CA certificates",
    ),
    _o("--sslcertpath", target="user.sslcertpath", convert=local_path, metavar="DIR"),
    _o("--sslcommonname", target="user.sslcommonname", convert=str, metavar="NAME"),
    _o(
        "--sslfingerprint",
        target="user.sslfingerprint",
        convert=str,
        metavar="HEX",
        help="pin the certificate (MD5 or SHA-256)",
    ),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own wording, exit 5
        raise UsageError(message)


class _Record(argparse.Action):
    """Keep every option in command-line order: later ones win, lists grow."""

    def __init__(self, *args: Any, spec: _Option, **kwargs: Any) -> None:
        self.spec = spec
        super().__init__(*args, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        value = self.spec.const if self.spec.convert is None else values
        namespace.seen.append((option_string or self.spec.names[0], self.spec, value))


def _build() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        usage=f"{PROG} [-f RCFILE] [options] [server ...]",
        description="Poll every active entry of a .fetchmailrc once, as fetchmail does.",
        add_help=False,
        allow_abbrev=True,
    )
    for spec in OPTIONS:
        text = spec.help or (
            f"refused: {spec.refused}"
            if spec.refused
            else "as fetchmail's; refused while the engine cannot act on it"
        )
        kwargs: dict[str, Any] = {"nargs": 0}
        if spec.convert is not None:
            kwargs = {"type": _checked(spec.convert), "metavar": spec.metavar or None}
        parser.add_argument(
            *spec.names,
            action=_Record,
            spec=spec,
            help=text,
            dest=spec.target,
            **kwargs,
        )
    parser.add_argument("servers", nargs="*", metavar="server")
    return parser


def _checked(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse hides a converter's message; ours must reach the user."""

    def run(text: str) -> Any:
        try:
            return convert(text)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return run


def help_text() -> str:
    return _build().format_help()


def parse_command_line(argv: Sequence[str]) -> CommandLine:
    """Read ``argv`` (without the program name); raises :class:`UsageError`."""
    parser = _build()
    namespace = argparse.Namespace(seen=[])
    parser.parse_intermixed_args(list(argv), namespace)
    cmd = CommandLine(servers=list(namespace.servers))
    destinations = 0
    for written, spec, value in namespace.seen:
        if spec.refused:
            raise UsageError(f"{written} is not supported: {spec.refused}.")
        destinations += spec.destination
        where, name = spec.target.split(".")
        if where == "run":
            _run_option(cmd, name, value)
            continue
        record = {"global": cmd.globals, "server": cmd.server, "user": cmd.user}[where]
        if isinstance(value, list):
            getattr(record, name).extend(value)
        else:
            setattr(record, name, value)
        cmd.given.append((written, spec.target))
    if destinations > 1:
        raise UsageError(
            "give only one of --smtphost, --mda and --bsmtp, and only once "
            "(list several listeners in one --smtphost, separated by commas)."
        )
    return cmd


_RUN_SETTINGS = {
    "rcfile", "idfile", "check", "version", "help", "quit", "nodetach", "pidfile",
    "logfile",
}  # fmt: skip


def _run_option(cmd: CommandLine, name: str, value: Any) -> None:
    # -s and -v set one output level in fetchmail: the last one given wins.
    if name == "verbose":
        cmd.verbose, cmd.silent = cmd.verbose + 1, False
    elif name == "silent":
        cmd.verbose, cmd.silent = 0, True
    elif name == "daemon":
        if value < 0:
            raise UsageError(f"--daemon {value}: give a number of seconds (0: once).")
        cmd.daemon = value
    elif name in _RUN_SETTINGS:
        setattr(cmd, name, value)
    # nosyslog: what this command does anyway.
