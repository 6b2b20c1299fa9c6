"""manage.py import_fetchmailrc FILE --owner EMAIL | --domain NAME: rcfile -> mailboxes.

Every user description of every entry (``skip`` ones too, disabled) becomes one
Mailbox with its delivery target, multidrop rules and options (see
:mod:`retrieval.rcmap`). Everything is checked before anything is written, and
written in one transaction: a file with one refused line imports nothing.

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

``--domain`` alone: the mailboxes belong to the domain and to its first
administrator by address; ``--owner`` names another owner, who must be an
administrator or a member of the domain. Importing is for the owner, a superuser,
or an administrator of the domain (the owner's, or ``--domain``).

The same remote account imported again is updated in place, so its record of
delivered messages is kept; a password missing from the file keeps the stored
one. The same account is: same protocol, server name, port (the protocol's
usual one when none is given) and user name, among the owner's mailboxes (the
domain's, for ``--domain`` without ``--owner``). Two entries for one account
(different folders, say) stay two mailboxes, matched in file order.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.models import Domain, User
from retrieval import rcmap, services
from retrieval.engine.spec import DEFAULT_PORTS, MailProtocol, TlsMode
from retrieval.engine.unsupported import run_time_notes
from retrieval.models import Mailbox
from retrieval.rcfile import RcfileError, parse_file
from retrieval.rcfile.env import Environment, netrc_lookup
from retrieval.rcfile.export import quote
from retrieval.rcfile.model import GlobalOptions
from retrieval.rcfile.specs import user_spec

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from retrieval.rcfile.model import RcConfig, Server, ServerOptions, UserOptions

PS_SYNTAX = 5  # fetchmail's exit status for a file it cannot accept
PS_IOERR = 6
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


# --- who imports for whom (shared with export_fetchmailrc) ---------------------------


@dataclass(frozen=True)
class Scope:
    """The mailboxes a command works on, and whose rights count."""

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
        raise CommandError(f"{flag}: there is no user {email!r}.") from None


def resolve_scope(
    owner_email: str | None, domain_name: str | None, as_email: str | None
) -> Scope:
    """--owner / --domain / --as, checked: the actor must be allowed to act there."""
    domain = None
    if domain_name:
        domain = Domain.objects.filter(name=domain_name.strip().lower()).first()
        if domain is None:
            raise CommandError(f"--domain: there is no domain {domain_name!r}.")
    if owner_email:
        owner = _person(owner_email, "--owner")
    elif domain is not None:
        first = domain.admins.order_by("email").first()
        if first is None:
            raise CommandError(
                f"The domain {domain.name} has no administrator to own the "
                "mailboxes; give --owner."
            )
        owner = first
    else:
        raise CommandError(
            "Say whose mailboxes these are: --owner EMAIL or --domain NAME."
        )
    actor = _person(as_email, "--as") if as_email else owner
    scope = Scope(owner, domain, actor, owner_given=bool(owner_email))
    if not actor.is_superuser:
        _check_rights(scope)
    refusal = services.owner_domain_refusal(owner=owner, domain=domain)
    if refusal:
        raise CommandError(refusal)
    return scope


def _check_rights(scope: Scope) -> None:
    actor, owner, domain = scope.actor, scope.owner, scope.domain
    if domain is not None:
        if not domain.admins.filter(pk=actor.pk).exists():
            raise CommandError(
                f"{actor.email} is not an administrator of {domain.name}."
            )
        outsider = owner.domain_id != domain.pk and not (
            domain.admins.filter(pk=owner.pk).exists()
        )
        if owner.pk != actor.pk and outsider:
            raise CommandError(
                f"{owner.email} is neither a member nor an administrator of "
                f"{domain.name}."
            )
    elif owner.pk != actor.pk and not (
        owner.domain_id is not None
        and actor.administered_domains.filter(pk=owner.domain_id).exists()
    ):
        raise CommandError(
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


# --- the command ---------------------------------------------------------------------


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


class Command(BaseCommand):
    help = (
        "Import a .fetchmailrc: one mailbox per user entry, for --owner or --domain. "
        "Refuses, with file:line, what the importing person may not set."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the rcfile")
        parser.add_argument("--owner", help="the person the mailboxes belong to")
        parser.add_argument(
            "--domain",
            help="the domain the mailboxes belong to; the owner is --owner, else "
            "the domain's first administrator (by address)",
        )
        parser.add_argument(
            "--as",
            dest="as_email",
            metavar="EMAIL",
            help="the person importing, whose rights count (default: the owner)",
        )
        parser.add_argument(
            "--netrc",
            help="where passwords missing from the file are looked up "
            "(default: ~/.netrc of the user running this command, as fetchmail)",
        )
        parser.add_argument(
            "--login",
            help="the login name a missing 'user' stands for "
            "(default: the owner's address before the @)",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="check and report everything, save nothing",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        scope = resolve_scope(options["owner"], options["domain"], options["as_email"])
        path = str(Path(options["file"]).absolute())
        try:
            config = parse_file(path)
        except OSError as exc:
            raise CommandError(
                f"{options['file']}: {exc.strerror or exc}", returncode=PS_IOERR
            ) from exc
        except RcfileError as exc:
            raise CommandError(exc.render(), returncode=PS_SYNTAX) from exc
        netrc = options["netrc"] or str(Path("~/.netrc").expanduser())
        env = ImportEnvironment(
            user=options["login"] or scope.owner.email.partition("@")[0],
            home="/nonexistent",
            fmhome="/nonexistent",
            check_files=False,
            netrc_path=netrc,
        )
        with transaction.atomic():
            entries, problems = self._check(config, scope, env)
            if problems:
                raise CommandError(
                    "\n".join(
                        [
                            *problems,
                            f"Import refused: nothing was imported "
                            f"({len(problems)} problem(s)).",
                        ]
                    )
                )
            self._report_globals(config)
            for entry in entries:
                self._save(entry, scope)
            if options["dry_run"]:
                transaction.set_rollback(True)
        created = sum(e.created for e in entries)
        self.stdout.write(
            f"{len(entries)} mailbox(es) for {scope.owner.email}"
            + (f" in {scope.domain.name}" if scope.domain else "")
            + f": {created} created, {len(entries) - created} updated"
            + ("; dry run, nothing was saved." if options["dry_run"] else ".")
        )

    # -- phase 1: everything checked, nothing written
    def _check(
        self, config: RcConfig, scope: Scope, env: Environment
    ) -> tuple[list[Entry], list[str]]:
        entries: list[Entry] = []
        problems: list[str] = []
        existing: dict[tuple[Any, ...], list[Mailbox]] = defaultdict(list)
        for mailbox in scope.mailboxes().order_by("pk"):
            existing[_account_key(_columns_of(mailbox))].append(mailbox)
        for server in config.servers:
            where = f"{config.filename}:{server.line}"
            if server.options.pollname == "defaults":
                # A second defaults record, or its users after the first entry:
                # fetchmail polls a server named "defaults", and reads any such
                # entry written back first as the defaults record.
                problems.append(
                    f'{where}: an entry for a server named "defaults" (a second '
                    "defaults record?): name the real server in a poll entry"
                )
                continue
            for u in server.users:
                try:
                    row = rcmap.rc_to_row(config.globals, server.options, u, env)
                except rcmap.Unmappable as exc:
                    problems.append(f"{where}: {exc}")
                    continue
                found = [
                    f"{where}: {p}"
                    for p in refusals(scope, config.globals, server.options, u)
                ]
                found += [f"{where}: {p}" for p in self._bad_values(server, u, row)]
                found += [
                    f"{where}: {p}"
                    for p in multidrop_problems(config.globals, server.options, u)
                ]
                spec = user_spec(config.globals, server.options, u, env)
                notes = run_time_notes(spec)
                if u.bsmtp == "-":
                    notes.append(services.BSMTP_STDOUT)
                entry = Entry(where, server, u, row, notes=notes)
                if not found:
                    matches = existing[_account_key(row.columns)]
                    entry.created = not matches
                    entry.mailbox = (
                        matches.pop(0)
                        if matches
                        else Mailbox(owner=scope.owner, domain=scope.domain)
                    )
                    found += [f"{where}: {p}" for p in self._invalid(entry)]
                problems += found
                entries.append(entry)
        return entries, problems

    def _bad_values(self, server: Server, u: UserOptions, row: rcmap.Row) -> list[str]:
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

    def _invalid(self, entry: Entry) -> list[str]:
        """The model's own checks (lengths, ranges), on the row as it would be saved."""
        mailbox = entry.mailbox
        assert mailbox is not None
        entry.row.apply(mailbox)
        out: list[str] = []
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

    # -- phase 2: written, and said
    def _report_globals(self, config: RcConfig) -> None:
        g = config.globals
        for name, why in rcmap.NOT_APPLICABLE.items():
            if getattr(g, name) is not None:
                self.stdout.write(
                    f"{config.filename}: set {name}: not applicable ({why}); not stored"
                )
        said = [
            _shown(f"globals.{f.name}", getattr(g, f.name))
            for f in dataclasses.fields(g)
            if f.name not in rcmap.NOT_APPLICABLE
            and rcmap.given(f"globals.{f.name}", getattr(g, f.name))
        ]
        if said and not config.servers:
            self.stdout.write(
                f"{config.filename}: no poll or skip entry; fetchweb keeps set "
                "statements with each mailbox, so these are not stored: set "
                + ", set ".join(said)
            )
        elif said:
            self.stdout.write(
                f"{config.filename}: stored with every mailbox: set "
                + ", set ".join(said)
            )

    def _save(self, entry: Entry, scope: Scope) -> None:
        mailbox = entry.mailbox
        assert mailbox is not None
        row = entry.row
        if row.password:
            source = (
                "from the file" if entry.user.password is not None else "from .netrc"
            )
            password = f"password: {source} (hidden)"
        elif mailbox.has_password:
            password = "password: none in the file; the stored one is kept"
        else:
            password = "password: none"
        try:
            # The one write path; the quotas of the pages hold here too, and the
            # surrounding transaction then undoes the whole import.
            services.mailbox_import(
                mailbox=mailbox,
                creator=scope.actor,
                rules=row.rules,
                password=row.password or "",
                esmtp_password=row.esmtp_password or "",
            )
        except services.QuotaExceeded as exc:
            raise CommandError(
                f"{entry.where}: {exc} Import refused: nothing was imported."
            ) from exc
        state = "" if mailbox.enabled else ", disabled (a skip entry)"
        self.stdout.write(
            f"{entry.where}: {'created' if entry.created else 'updated'} mailbox "
            f"{mailbox.pk}: {mailbox.protocol.upper()} {quote(mailbox.host)} "
            f"user {quote(mailbox.username)}{state}"
        )
        said = _options_said(entry.server.options, entry.user)
        if said:
            self.stdout.write("    options: " + ", ".join(said))
        self.stdout.write("    " + password)
        for note in entry.notes:
            self.stdout.write(f"    at poll time: {note}")
        commands = rcmap.commands_in(entry.server.options, entry.user)
        if commands and not scope.owner.is_superuser:
            self.stdout.write(
                f"    warning: {', '.join(commands)} will not run while the owner, "
                f"{scope.owner.email}, is not a superuser: polls refuse it"
            )
