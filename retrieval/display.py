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


@dataclass(frozen=True)
class Shown:
    """How texts are shown to one person for one mailbox."""

    reveal: bool
    commands: tuple[str, ...] = ()

    def text(self, value: str) -> str:
        if self.reveal or not value:
            return value
        value = _COMMAND_LINE.sub(lambda m: f"{m['head']}: {HIDDEN}", value)
        value = _QUOTED.sub(lambda m: f"{m['head']} {HIDDEN}", value)
        for command in self.commands:
            value = value.replace(command, HIDDEN)
        return value


def _command_forms(mailbox: Mailbox) -> tuple[str, ...]:
    """The configured command lines, as typed and as the engine prints them,
    longest first so that no part of one is left behind by a shorter one.

    Read from the row's stored options (no query): plugin and plugout under
    "server", the others under "user", as rcmap stores them.
    """
    options = mailbox.options if isinstance(mailbox.options, dict) else {}
    forms: set[str] = set()
    for scope in ("server", "user"):
        values = options.get(scope)
        if not isinstance(values, dict):
            continue
        for name in rcmap.COMMAND_OPTIONS:
            text = values.get(name)
            if not isinstance(text, str) or not text.strip():
                continue
            forms.add(text.strip())
            try:
                argv = shlex.split(text)
            except ValueError:
                continue
            forms.update((shlex.join(argv), " ".join(argv)))
    return tuple(sorted((f for f in forms if len(f) > 1), key=len, reverse=True))


def shown_to(user: AbstractBaseUser | AnonymousUser, mailbox: Mailbox) -> Shown:
    if getattr(user, "is_superuser", False):
        return Shown(reveal=True)
    return Shown(reveal=False, commands=_command_forms(mailbox))
