"""An rcfile's import, checked: who imports for whom, and what each entry becomes.

Shared by ``manage.py import_fetchmailrc`` (and the API, which calls it) and the
import pages: both read the file into an :class:`ImportPlan` here, then
``services.rcfile_import`` writes it. Nothing here writes a row.

Who may set what (reliability.md cases 23, 39, 41, 42): unless the importing person
(``--as``, else the owner) is a superuser, an entry is refused when it

* runs a program or writes a file on this server (mda, plugin, plugout,
  preconnect, postconnect, bsmtp), names a file on it (sslcertfile, sslcertpath,
  sslcert, sslkey) or watches its interfaces (interface, monitor);
* delivers to a listener other than those in ``settings.FETCH_ALLOWED_DELIVERY``
  (smtphost syntax; default ``localhost``, port 25) or speaks LMTP to one not there;
* turns TLS off (``sslproto ''``) or certificate checks off (``no sslcertck``);
* delivers to someone else: a local name, ``smtpname`` or ``set postmaster``
  other than the owner's address or login, ``*``, an ``smtpaddress`` other than
  the owner's mail domain. In a domain import, bare names, ``*`` and addresses,
  ``smtpaddress`` and (multidrop) ``localdomains`` in that domain are allowed.

And unless the owner is a superuser (or FETCH_ALLOW_PRIVATE_HOSTS), an entry whose
server is a private address or not on a mail port is refused, as the mailbox form
refuses it (retrieval.netpolicy; a name that does not resolve now is left to the
poll, which checks again).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import CommandError

from accounts.models import Domain, User
from retrieval import netpolicy, rcmap, services
from retrieval.engine.spec import DEFAULT_PORTS, MailProtocol, TlsMode
from retrieval.engine.unsupported import run_time_notes
from retrieval.models import ACCOUNT_BUSY, PASSWORD_AGAIN, Mailbox
from retrieval.rcfile.env import Environment, netrc_lookup
from retrieval.rcfile.export import quote
from retrieval.rcfile.model import GlobalOptions
from retrieval.rcfile.specs import user_spec

if TYPE_CHECKING:
    from collections.abc import Mapping

    from django.db.models import QuerySet

    from retrieval.rcfile.model import RcConfig, Server, ServerOptions, UserOptions

SECRETS = {"user.password", "server.esmtppassword"}
SHOWN_AS = {
    "user.folders": "folder",
    "user.remote": "user",
    "server.protocol": "proto",
    "server.badheader": "bad-header accept",
    "server.no_envelope": "no envelope",
}
KEYWORDS = {"server.protocol", "server.auth"}  # shown bare: they are not strings
_PATHS = ("sslcertfile", "sslcertpath", "sslcert", "sslkey")


class ScopeRefused(ValueError):
    """The person may not import (or export) for that owner or domain; in words."""


# --- who imports for whom ------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """The mailboxes an import or export works on, and whose rights count."""

    owner: User
    domain: Domain | None
    actor: User  # the person at the keyboard: --as, else the owner
    owner_given: bool = True

    @property
    def trusted(self) -> bool:
        return self.actor.is_superuser

    def mailboxes(self) -> QuerySet[Mailbox]:
        rows = Mailbox.objects.all()
        if self.domain is not None:
            rows = rows.filter(domain=self.domain)
        if self.owner_given or self.domain is None:
            rows = rows.filter(owner=self.owner)
        return rows


def _person(email: str, flag: str) -> User:
    try:
        return User.objects.get(email=email.strip().lower())
    except User.DoesNotExist:
        raise ScopeRefused(f"{flag}: there is no user {email!r}.") from None


def command_scope(options: Mapping[str, Any]) -> Scope:
    """A management command's --owner / --domain / --as, or its CommandError."""
    try:
        return resolve_scope(options["owner"], options["domain"], options["as_email"])
    except ScopeRefused as exc:
        raise CommandError(str(exc)) from exc


def resolve_scope(
    owner_email: str | None, domain_name: str | None, as_email: str | None
) -> Scope:
    """--owner / --domain / --as, checked: the actor must be allowed to act there."""
    domain = None
    if domain_name:
        domain = Domain.objects.filter(name=domain_name.strip().lower()).first()
        if domain is None:
            raise ScopeRefused(f"--domain: there is no domain {domain_name!r}.")
    if owner_email:
        owner = _person(owner_email, "--owner")
    elif domain is not None:
        first = domain.admins.order_by("email").first()
        if first is None:
            raise ScopeRefused(
                f"The domain {domain.name} has no administrator to own the "
                "mailboxes; give --owner."
            )
        owner = first
    else:
        raise ScopeRefused(
            "Say whose mailboxes these are: --owner EMAIL or --domain NAME."
        )
    actor = _person(as_email, "--as") if as_email else owner
    return checked_scope(Scope(owner, domain, actor, owner_given=bool(owner_email)))


def checked_scope(scope: Scope) -> Scope:
    """``scope`` if its actor may work there (ScopeRefused, in words, if not)."""
    if not scope.actor.is_superuser:
        _check_rights(scope)
    refusal = services.owner_domain_refusal(owner=scope.owner, domain=scope.domain)
    if refusal:
        raise ScopeRefused(refusal)
    return scope


def _check_rights(scope: Scope) -> None:
    actor, owner, domain = scope.actor, scope.owner, scope.domain
    if domain is not None:
        if not domain.admins.filter(pk=actor.pk).exists():
            raise ScopeRefused(
                f"{actor.email} is not an administrator of {domain.name}."
            )
        outsider = owner.domain_id != domain.pk and not (
            domain.admins.filter(pk=owner.pk).exists()
        )
        if owner.pk != actor.pk and outsider:
            raise ScopeRefused(
                f"{owner.email} is neither a member nor an administrator of "
                f"{domain.name}."
            )
    elif owner.pk != actor.pk and not (
        owner.domain_id is not None
        and actor.administered_domains.filter(pk=owner.domain_id).exists()
    ):
        raise ScopeRefused(
            f"{actor.email} may not manage the mailboxes of {owner.email}."
        )


# --- reading the file ----------------------------------------------------------------


@dataclass(frozen=True)
class ImportEnvironment(Environment):
    """fetchmail's environment for an import: a given login and .netrc file."""

    netrc_path: str | None = None

    def netrc_password(self, host: str, login: str) -> str | None:
        if self.netrc_path is None:
            return None
        return netrc_lookup(Path(self.netrc_path), host, login)


def import_environment(
    scope: Scope, *, login: str | None = None, netrc_path: str | None = None
) -> ImportEnvironment:
    """The login a missing ``user`` stands for (the owner's, before the @), and
    the .netrc a missing password is read from (none: the pages never read this
    server's own)."""
    return ImportEnvironment(
        user=login or scope.owner.email.partition("@")[0],
        home="/nonexistent",
        fmhome="/nonexistent",
        check_files=False,
        netrc_path=netrc_path,
    )


@dataclass
class Entry:
    """One user description of one entry, on its way to a row."""

    where: str  # FILE:LINE of the entry
    server: Server
    user: UserOptions
    row: rcmap.Row
    mailbox: Mailbox | None = None
    created: bool = False
    # What a poll will refuse or not apply (retrieval.engine.unsupported).
    notes: list[str] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)  # FILE:LINE: why
    password: str = ""  # what becomes of the password, in words (never the password)

    @property
    def options(self) -> list[str]:
        """The options stored, as the rcfile says them (secrets hidden)."""
        return _options_said(self.server.options, self.user)

    @property
    def command_warning(self) -> str:
        """Commands a superuser imported for an owner who may not run them."""
        commands = rcmap.commands_in(self.server.options, self.user)
        owner = self.mailbox.owner if self.mailbox is not None else None
        if not commands or owner is None or owner.is_superuser:
            return ""
        return (
            f"{', '.join(commands)} will not run while the owner, {owner.email}, "
            "is not a superuser: polls refuse it"
        )


@dataclass
class ImportPlan:
    """Everything an import would do, checked (services.rcfile_import adds the
    refusals of the saves)."""

    config: RcConfig
    scope: Scope
    entries: list[Entry]
    problems: list[str]  # every refusal, FILE:LINE first, in file order
    globals_said: list[str]  # what becomes of the set statements
    # Refusals of no entry (an entry that could not be mapped, a second defaults
    # record), each with the number of entries before it in the file.
    loose: list[tuple[int, str]] = dataclasses.field(default_factory=list)

    @property
    def accepted(self) -> list[Entry]:
        return [e for e in self.entries if not e.problems and e.mailbox is not None]

    def refuse(self, entry: Entry, refusal: str) -> None:
        """A refusal found after the checks (a save's quota), listed at its
        entry's place: a reader fixes a file from the top down."""
        entry.problems.append(refusal)
        self.problems = _in_file_order(self.entries, self.loose)

    def fingerprint(self) -> str:
        """What the preview showed: the confirm applies only the same plan. (A
        new mailbox's id is left out: the preview's was rolled back.)"""
        shown = [
            self.globals_said,
            self.problems,
            [
                (e.where, e.created, _kept_id(e), e.options, e.password)
                for e in self.accepted
            ],
        ]
        return hashlib.sha256(json.dumps(shown).encode()).hexdigest()


def _in_file_order(entries: list[Entry], loose: list[tuple[int, str]]) -> list[str]:
    out: list[str] = []
    pending = iter(sorted(loose, key=lambda item: item[0]))
    following = next(pending, None)
    for index, entry in enumerate([*entries, None]):
        while following is not None and following[0] <= index:
            out.append(following[1])
            following = next(pending, None)
        if entry is not None:
            out += entry.problems
    return out


def _kept_id(entry: Entry) -> int | None:
    """The mailbox an entry updates; None for a new one."""
    return None if entry.created or entry.mailbox is None else entry.mailbox.pk


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _texts(v)]
    return []


def _is_text(value: str) -> bool:
    return "\0" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)


# --- what a person who is not a superuser may not set ---------------------------------


def _allowed_targets() -> set[tuple[str, int]]:
    entries = settings.FETCH_ALLOWED_DELIVERY
    return {t for t in map(rcmap.delivery_target, entries) if t is not None}


def _recipient_refusals(
    scope: Scope, g: GlobalOptions, s: ServerOptions, u: UserOptions
) -> list[str]:
    """Mail goes to the owner (self-service) or into the domain (domain import)."""
    names = [local or remote for remote, local in u.localnames]
    names += [name for name in (u.smtpname, g.postmaster) if name]
    if scope.domain is not None:
        home = scope.domain.name
        bad = [n for n in names if "@" in n and n.rpartition("@")[2].lower() != home]
        where = f"outside {home}"
    else:
        login, _, home = scope.owner.email.partition("@")
        bad = [n for n in names if n.lower() not in (scope.owner.email, login)]
        bad += ["*"] if u.wildcard else []
        where = f"other than {scope.owner.email}"
    out = [f"delivers to {quote(name)}, {where}" for name in bad]
    domains = [u.smtpaddress] if u.smtpaddress else []
    if u.wildcard or len(u.localnames) > 1:  # multidrop: whole addresses pass
        domains += s.localdomains
    out += [
        f"delivers to addresses in {quote(domain)}, {where}"
        for domain in domains
        if domain.lower() != home
    ]
    return [f"{line}: only a superuser may import that" for line in out]


def refusals(
    scope: Scope, g: GlobalOptions, s: ServerOptions, u: UserOptions
) -> list[str]:
    """Why a person who is not a superuser may not import this user entry."""
    if scope.trusted:
        return []
    out = [
        f"{name} {quote(value)}: "
        + ("writes a file" if name == "bsmtp" else "runs a command")
        + " on this server; only a superuser may import it"
        for name, value in rcmap.commands_in(s, u).items()
    ]
    for name in _PATHS:
        value = getattr(u, name)
        if value is not None:
            out.append(
                f"{name} {quote(value)}: names a file on this server; "
                "only a superuser may import it"
            )
    for name in ("interface", "monitor"):
        value = getattr(s, name)
        if value is not None:
            out.append(
                f"{name} {quote(value)}: watches this server's network interfaces; "
                "only a superuser may import it"
            )
    allowed = _allowed_targets()
    for entry in u.smtphost or ["localhost"]:
        if rcmap.delivery_target(entry) not in allowed:
            out.append(
                f"smtphost {quote(entry)}: not a mail listener this installation "
                "delivers to; only a superuser may import it"
            )
    if u.sslproto == "" and not u.ssl:
        out.append(
            "sslproto '': turns encryption off, the password would cross the network "
            "in clear; only a superuser may import it"
        )
    if u.sslcertck is False:
        out.append(
            "no sslcertck: the server's certificate would not be checked; "
            "only a superuser may import it"
        )
    return out + _recipient_refusals(scope, g, s, u)


def _destination_refusals(scope: Scope, row: rcmap.Row) -> list[str]:
    """The mailbox form's rule on where a mailbox may connect (the poll's too)."""
    if scope.owner.is_superuser or settings.FETCH_ALLOW_PRIVATE_HOSTS:
        return []
    host, port = str(row.columns["host"]), _effective_port(row.columns)
    if not host or port is None:
        return []
    try:
        netpolicy.check_destination(host, port)
    except netpolicy.Unresolved:
        return []  # maybe only from here, or only today: the poll checks again
    except netpolicy.DestinationRefused as exc:
        return [f"server {quote(host)} port {port}: {exc}"]
    return []


# --- what the file says, in its own words ----------------------------------------------


def _shown(key: str, value: Any) -> str:
    """One option as the rcfile would say it; secrets hidden."""
    name = SHOWN_AS.get(key, key.split(".", 1)[1])
    if key in SECRETS:
        return f"{name} (hidden)"
    if isinstance(value, bool):
        return name if value or key == "server.no_envelope" else f"no {name}"
    if isinstance(value, list):
        if key == "user.localnames":
            names = [
                quote(a) if b is None else f"{quote(a)}={quote(b)}" for a, b in value
            ]
            return "is " + " ".join(names) + " here"
        return name + "".join(
            f" {v}" if isinstance(v, int) else f" {quote(v)}" for v in value
        )
    if isinstance(value, str):
        return f"{name} {value if key in KEYWORDS else quote(value)}"
    return f"{name} {value}"


def _options_said(s: ServerOptions, u: UserOptions) -> list[str]:
    """What the file said for this user entry (the password has a line of its own)."""
    values = rcmap.flatten(GlobalOptions(), s, u)
    skipped = {"server.pollname", "server.skip", "user.password", "user.wildcard"}
    if u.wildcard:
        values["user.localnames"] = [*u.localnames, ("*", None)]
    return [
        _shown(key, value)
        for key, value in values.items()
        if key.startswith(("server.", "user."))
        and key not in skipped
        and rcmap.given(key, value)
    ]


def _globals_said(config: RcConfig) -> list[str]:
    """What becomes of the ``set`` statements."""
    g = config.globals
    out = [
        f"{config.filename}: set {name}: not applicable ({why}); not stored"
        for name, why in rcmap.NOT_APPLICABLE.items()
        if getattr(g, name) is not None
    ]
    said = [
        _shown(f"globals.{f.name}", getattr(g, f.name))
        for f in dataclasses.fields(g)
        if f.name not in rcmap.NOT_APPLICABLE
        and rcmap.given(f"globals.{f.name}", getattr(g, f.name))
    ]
    if said and not config.servers:
        out.append(
            f"{config.filename}: no poll or skip entry; fetchweb keeps set "
            "statements with each mailbox, so these are not stored: set "
            + ", set ".join(said)
        )
    elif said:
        out.append(
            f"{config.filename}: stored with every mailbox: set " + ", set ".join(said)
        )
    return out


def _password_said(entry: Entry) -> str:
    assert entry.mailbox is not None
    if entry.row.password:
        source = "from the file" if entry.user.password is not None else "from .netrc"
        return f"password: {source} (hidden)"
    if entry.mailbox.has_password:
        return "password: none in the file; the stored one is kept"
    return "password: none"


# --- the accounts already there --------------------------------------------------------


def _effective_port(columns: dict[str, Any]) -> int | None:
    if columns["port"] is not None:
        return int(columns["port"])
    try:
        key = (MailProtocol(columns["protocol"]), TlsMode(columns["tls_mode"]))
    except ValueError:
        return None
    return DEFAULT_PORTS.get(key)


def _columns_of(mailbox: Mailbox) -> dict[str, Any]:
    return {
        c: getattr(mailbox, c)
        for c in ("protocol", "host", "port", "tls_mode", "username")
    }


def _account_key(columns: dict[str, Any]) -> tuple[Any, ...]:
    """The remote account a row empties: re-importing it updates that row."""
    return (
        columns["protocol"],
        str(columns["host"]).lower(),
        _effective_port(columns),
        columns["username"],
    )


# --- the plan ---------------------------------------------------------------------------


def plan_import(config: RcConfig, scope: Scope, env: Environment) -> ImportPlan:
    """Every entry checked; the existing mailbox each one updates, or a new one.

    Reads only. Run it in the transaction that then writes (services.rcfile_import)
    so that the matched rows are the ones written.
    """
    entries: list[Entry] = []
    loose: list[tuple[int, str]] = []
    existing: dict[tuple[Any, ...], list[Mailbox]] = defaultdict(list)
    for mailbox in scope.mailboxes().select_related("owner").order_by("pk"):
        existing[_account_key(_columns_of(mailbox))].append(mailbox)
    for server in config.servers:
        where = f"{config.filename}:{server.line}"
        if server.options.pollname == "defaults":
            # A second defaults record, or its users after the first entry:
            # fetchmail polls a server named "defaults", and reads any such
            # entry written back first as the defaults record.
            loose.append(
                (
                    len(entries),
                    f'{where}: an entry for a server named "defaults" (a second '
                    "defaults record?): name the real server in a poll entry",
                )
            )
            continue
        for u in server.users:
            try:
                row = rcmap.rc_to_row(config.globals, server.options, u, env)
            except rcmap.Unmappable as exc:
                loose.append((len(entries), f"{where}: {exc}"))
                continue
            entry = _entry(where, config, server, u, row, scope, env)
            if not entry.problems:
                matches = existing[_account_key(row.columns)]
                entry.created = not matches
                entry.mailbox = matches.pop(0) if matches else _new_mailbox(scope)
                entry.problems += [f"{where}: {p}" for p in _invalid(entry)]
                entry.password = _password_said(entry)
            entries.append(entry)
    problems = _in_file_order(entries, loose)
    return ImportPlan(config, scope, entries, problems, _globals_said(config), loose)


def _new_mailbox(scope: Scope) -> Mailbox:
    """A domain import's domain, else the owner's: never none when they have one."""
    return Mailbox(owner=scope.owner, domain=scope.domain or scope.owner.domain)


# The rcfile's words for the multidrop settings (services.multidrop.problems' keys).
MULTIDROP_OPTIONS = {
    "envelope": "envelope",
    "localdomains": "localdomains",
    "aka": "aka",
    "qvirtual": "qvirtual",
    "postmaster": "set postmaster",
    "smtpaddress": "smtpaddress",
    "rules": "is ... here",
}


def multidrop_problems(g: GlobalOptions, s: ServerOptions, u: UserOptions) -> list[str]:
    """The multidrop editor's check (services.multidrop.problems), in its words."""
    found = services.multidrop_problems(
        values=services.multidrop_from_rc(g=g, s=s, u=u)
    )
    return [
        f"{MULTIDROP_OPTIONS[name]}: {message}"
        for name, messages in found.items()
        for message in messages
    ]


def _entry(
    where: str,
    config: RcConfig,
    server: Server,
    u: UserOptions,
    row: rcmap.Row,
    scope: Scope,
    env: Environment,
) -> Entry:
    found = refusals(scope, config.globals, server.options, u)
    found += _bad_values(server, u, row)
    found += multidrop_problems(config.globals, server.options, u)
    found += _destination_refusals(scope, row)
    spec = user_spec(config.globals, server.options, u, env)
    notes = run_time_notes(spec)
    if u.bsmtp == "-":
        notes.append(services.BSMTP_STDOUT)
    return Entry(
        where, server, u, row, notes=notes, problems=[f"{where}: {p}" for p in found]
    )


def _bad_values(server: Server, u: UserOptions, row: rcmap.Row) -> list[str]:
    out: list[str] = []
    values = {
        **rcmap.flatten(GlobalOptions(), server.options, u),
        "user.password": row.password,
    }
    for key, value in values.items():
        if not all(map(_is_text, _texts(value))):
            out.append(
                f"{SHOWN_AS.get(key, key.split('.', 1)[1])}: not UTF-8 text "
                "(or has a NUL byte); fetchweb keeps text in UTF-8: save the "
                "file as UTF-8"
            )
    if any(local == "" for _, local in u.localnames):
        out.append('is ...="": an empty local name')
    return out


def _invalid(entry: Entry) -> list[str]:
    """The model's own checks (lengths, ranges), on the row as it would be saved,
    and Mailbox.save's rule on a change of remote account (rows are matched by
    account, so this is the last line of defence, said before the save)."""
    mailbox = entry.mailbox
    assert mailbox is not None
    out: list[str] = []
    values = entry.row.columns
    if services.account_busy(mailbox=mailbox, values=values):
        out.append(ACCOUNT_BUSY)
    elif not entry.row.password and services.password_needed(
        mailbox=mailbox, values=values
    ):
        out.append(PASSWORD_AGAIN)
    entry.row.apply(mailbox)
    try:
        mailbox.full_clean(
            exclude=["owner", "domain"],
            validate_unique=False,
            validate_constraints=False,
        )
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            out += [f"{name}: {m}" for m in messages]
    for remote, local in entry.row.rules:
        if max(len(remote), len(local)) > 320:
            out.append("a local name longer than 320 characters")
    return out
