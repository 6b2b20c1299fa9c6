"""The command line applied to the parsed rcfile, the one place this happens.

fetchmail's ``load_params()``, in order:

1. **Selection.** Without server names every non-``skip`` entry is polled. With
   names, only the entries whose poll name (exactly) or one of whose ``aka``
   names (any case) matches are polled, ``skip`` ones included; a name that
   matches nothing becomes an entry of its own (``poll NAME via NAME``) built
   from the ``defaults`` record and the command line. Entries keep file order;
   made-up ones follow, in command-line order.
2. **Overrides.** ``optmerge(entry, command line, force=TRUE)`` on every entry:
   a value given on the command line replaces the rcfile's, and a list given on
   the command line (``--folder``, ``--smtphost``, ``--antispam``,
   ``--fetchdomains``) is *appended* to the rcfile's, exactly as fetchmail does.
3. **Checks** fetchmail makes on the merged result (service port, LMTP port).

The merged configuration keeps every entry with its ``skip`` flag as written,
so that ``configdump`` of it equals ``fetchmail --configdump`` given the same
command line; :func:`polls` builds the engine's specs for the selected ones.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING

from retrieval.cli.options import CommandLine, UsageError
from retrieval.engine import unsupported
from retrieval.rcfile.model import (
    SERVER_FIELDS,
    USER_FIELDS,
    RcConfig,
    Server,
    ServerOptions,
    UserOptions,
)
from retrieval.rcfile.parser import servport
from retrieval.rcfile.specs import user_spec

if TYPE_CHECKING:
    from retrieval.engine.spec import MailboxSpec
    from retrieval.rcfile.env import Environment

# optmerge() leaves these alone: the name is the entry's, "aka" and "sdps" are
# not merged by fetchmail, "skip" is decided by the selection.
_SERVER_KEPT = {"pollname", "aka", "sdps", "skip", "envelope", "no_envelope"}


@dataclasses.dataclass(frozen=True)
class Poll:
    """One selected user description and the engine's spec for it."""

    server: Server
    user: UserOptions
    spec: MailboxSpec


def merged_config(config: RcConfig, cmd: CommandLine) -> RcConfig:
    """A copy of ``config`` with made-up entries added and the overrides applied.

    ``skip`` flags are left as written (``configdump`` shows them as fetchmail
    does); :func:`selected` says what is polled.
    """
    merged = copy.deepcopy(config)
    known = {s.options.pollname for s in merged.servers}
    for name in cmd.servers:
        if name not in known and not _matches(merged, name):
            merged.servers.append(_made_up(merged, name))
            known.add(name)
    g = merged.globals
    for f in dataclasses.fields(cmd.globals):  # slots: no vars()
        value = getattr(cmd.globals, f.name)
        if value is not None:
            setattr(g, f.name, value)
    for server in merged.servers:
        _force(server.options, cmd.server)
        for user in server.users:
            _force_user(user, cmd.user)
    return merged


def selected(config: RcConfig, names: list[str]) -> list[Server]:
    """The entries to poll, in file order (made-up ones last)."""
    if not names:
        return config.active_servers()
    chosen = {id(s) for name in names for s in _matches(config, name)}
    return [s for s in config.servers if id(s) in chosen]


def _matches(config: RcConfig, name: str) -> list[Server]:
    return [
        s
        for s in config.servers
        if s.options.pollname == name
        or name.lower() in (a.lower() for a in s.options.aka)
    ]


def _made_up(config: RcConfig, name: str) -> Server:
    """``poll NAME via NAME`` with the ``defaults`` record filled in."""
    options, user = ServerOptions(), UserOptions()
    if config.defaults is not None:
        options = copy.deepcopy(config.defaults.options)
        user = copy.deepcopy(config.defaults.users[0])
        options.aka = []
        options.sdps = False
    options.pollname = name
    options.via = name
    options.skip = False
    return Server(options, [user])


def _force(dst: ServerOptions, src: ServerOptions) -> None:
    for name in SERVER_FIELDS:
        if name not in _SERVER_KEPT:
            _force_field(dst, src, name)
    if src.envelope is not None:
        dst.envelope, dst.no_envelope = src.envelope, False


def _force_user(dst: UserOptions, src: UserOptions) -> None:
    for name in USER_FIELDS:
        _force_field(dst, src, name)


def _force_field(dst: object, src: object, name: str) -> None:
    value = getattr(src, name)
    if isinstance(value, list):
        # A new list, not extend(): the parser shares the defaults record's lists
        # between the entries that inherit them.
        setattr(dst, name, [*getattr(dst, name), *copy.deepcopy(value)])
    elif value is not None:
        setattr(dst, name, value)


def check_merged(config: RcConfig) -> None:
    """What fetchmail refuses after merging; raises :class:`UsageError`.

    Like fetchmail with ``--configdump``, every entry is checked, polled or not.
    """
    for server in config.servers:
        s = server.options
        if s.service is not None and servport(s.service) < 0:
            raise UsageError(
                f"{s.pollname} configuration invalid, specify positive port number "
                f"for service or port (cannot resolve service {s.service!r})."
            )
        for user in server.users:
            hosts = user.smtphost or ["localhost"]
            if user.lmtp and any(_default_smtp_port(h) for h in hosts):
                raise UsageError(
                    f"{s.pollname} configuration invalid, LMTP can't use the default "
                    "SMTP port: give each listener an explicit port (host/port)."
                )


def _default_smtp_port(host: str) -> bool:
    if host.startswith("/"):
        return False
    cut = host.rfind("/")
    return cut < 0 or host[cut + 1 :] == "smtp" or servport(host[cut + 1 :]) == 25


def inherit_environment(spec: MailboxSpec) -> MailboxSpec:
    """``spec`` whose programs get this process's whole environment."""
    return dataclasses.replace(
        spec,
        server=dataclasses.replace(spec.server, inherit_env=True),
        delivery=dataclasses.replace(spec.delivery, inherit_env=True),
    )


def polls(config: RcConfig, names: list[str], env: Environment) -> list[Poll]:
    """The engine's specs for every selected user description, in poll order.

    A ``skip`` entry named on the command line is polled like any other (its
    password may then come from ~/.netrc). ``set idfile``, ``set pidfile`` and
    ``set logfile`` are the command's to honour (daemon mode), not the engine's:
    they are left out of what the engine would report as unsupported.

    The programs a poll runs (mda, plugin, plugout, preconnect, postconnect)
    inherit this process's whole environment, as fetchmail's do: the command
    line is a person's own process. The web service keeps the engine's default,
    a short allow-list (retrieval.engine.wire.commands.program_environment).
    """
    g = dataclasses.replace(config.globals, idfile=None, pidfile=None, logfile=None)
    return [
        Poll(server, user, inherit_environment(user_spec(g, active, user, env)))
        for server in selected(config, names)
        for active in [dataclasses.replace(server.options, skip=False)]
        for user in server.users
    ]


def refuse_unsupported(cmd: CommandLine, selected: list[Poll]) -> None:
    """Refuse an override the engine would only note as "not supported yet".

    The engine keeps every option it cannot act on in ``MailboxSpec.extra``
    (keys: the model's field name, ``set NAME`` for globals); an option given on
    the command line that lands there is refused, so none is silently dropped.
    """
    for written, target in cmd.given:
        where, name = target.split(".")
        key = f"set {name}" if where == "global" else name
        for poll in selected:
            for extra_key, value in poll.spec.extra:
                if extra_key == key:
                    why = unsupported.reason(key, value)
                    raise UsageError(
                        f"{written} is refused: the engine does not act on "
                        f"'{key} {value}'" + (f": {why}." if why else " yet.")
                    )
