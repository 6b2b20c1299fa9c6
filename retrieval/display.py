"""What a page shows of a mailbox's server-run commands, by who is looking.

The commands of a superuser's mailbox (preconnect, postconnect, plugin, plugout,
mda, bsmtp) run on this server with the service's rights; their command lines
name programs, paths, hosts and sometimes credentials. Only superusers see them:
for anyone else every text a page shows of a poll or a connection test
(transcript, error, greeting, notes) passes through :meth:`Shown.text`, which
replaces the engine's lines about those programs and every command line the
mailbox has configured.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from retrieval import rcmap

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    from retrieval.models import Mailbox

HIDDEN = "(a command run on this server; shown to superusers only)"
# The engine's own lines about a program: "*: preconnect: running ...",
# "*: plugin: started ...", "*: plugin stderr: ...", "*: MDA: /usr/bin/procmail ...".
_COMMAND_LINE = re.compile(
    r"^(?P<head>\*: (?P<label>preconnect|postconnect|plugin|plugout|mda|bsmtp)\b)"
    r".*$",
    re.IGNORECASE | re.MULTILINE,
)
# Sentences that quote a command: "The pre-connection command (ssh -f ...) exited",
# "The plugin command ssh ... could not be started", "the plugin command (ssh)".
_QUOTED = re.compile(
    r"(?P<head>(?:pre|post)-connection command|"
    r"(?:plugin|plugout|preconnect|postconnect|mda) command) "
    r"(?:\([^\n]*?\)(?= [a-z]|[.;,]|$)|[^\n]*?(?= could not be started))",
    re.IGNORECASE | re.MULTILINE,
)


# fetchmail's placeholders (%T recipient, %F sender, %h host, %p port, ...): the
# engine prints a command with them filled in.
_PLACEHOLDER = re.compile(r"%[A-Za-z%]")


@dataclass(frozen=True)
class Shown:
    """How texts are shown to one person for one mailbox."""

    reveal: bool
    commands: tuple[re.Pattern[str], ...] = ()

    def text(self, value: str) -> str:
        if self.reveal or not value:
            return value
        value = _COMMAND_LINE.sub(lambda m: f"{m['head']}: {HIDDEN}", value)
        value = _QUOTED.sub(lambda m: f"{m['head']} {HIDDEN}", value)
        for command in self.commands:
            value = command.sub(HIDDEN, value)
        return value


def _pattern(argv: list[str]) -> re.Pattern[str]:
    """A command line as printed, quoted or not, placeholders filled in or not."""

    def one(arg: str) -> str:
        parts = _PLACEHOLDER.split(arg)
        literal = r"\S*?".join(re.escape(part) for part in parts)
        return rf"'?{literal}'?"

    return re.compile(r"\s+".join(one(arg) for arg in argv))


def _command_forms(mailbox: Mailbox) -> tuple[re.Pattern[str], ...]:
    """The configured command lines, longest first so that no part of one is
    left behind by a shorter one.

    Read from the row's stored options (no query): plugin and plugout under
    "server", the others under "user", as rcmap stores them.
    """
    options = mailbox.options if isinstance(mailbox.options, dict) else {}
    commands: list[list[str]] = []
    for scope in ("server", "user"):
        values = options.get(scope)
        if not isinstance(values, dict):
            continue
        for name in rcmap.COMMAND_OPTIONS:
            text = values.get(name)
            if not isinstance(text, str) or not text.strip():
                continue
            try:
                argv = shlex.split(text)
            except ValueError:
                argv = text.split()
            if argv:
                commands.append(argv)
    commands.sort(key=lambda argv: len(" ".join(argv)), reverse=True)
    return tuple(_pattern(argv) for argv in commands)


def shown_to(user: AbstractBaseUser | AnonymousUser, mailbox: Mailbox) -> Shown:
    if getattr(user, "is_superuser", False):
        return Shown(reveal=True)
    return Shown(reveal=False, commands=_command_forms(mailbox))
