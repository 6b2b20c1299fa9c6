"""Whole-domain (multidrop) mailboxes: their settings, checked once, and saved.

One remote mailbox holds the mail of a whole domain; these settings say how a
poll sorts it (retrieval/engine/deliver/multidrop.py): which header carries the
envelope recipient, which domains are local, which names the mail server goes
by, the prefix a catch-all puts before each name, who gets what nobody claims,
the domain added to bare names, and which remote name goes to which local
person (the rules, MultidropRule rows).

:func:`problems` is the one check of these values: the multidrop editor
(retrieval.forms.MultidropForm) and the rcfile importer (import_fetchmailrc)
both call it, so the same bad value is refused with the same words on either
way in. The values stay where the rcfile model keeps them, in
``Mailbox.options`` (``server.envelope``...; see retrieval/rcmap.py), so that
an import, an export and the editor read and write one place.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import transaction

from retrieval.services.rules import mailbox_rules_replace

if TYPE_CHECKING:
    from retrieval.models import Mailbox
    from retrieval.rcfile.model import GlobalOptions, ServerOptions, UserOptions

# fetchmail's default envelope header; "" in the editor stands for it.
DEFAULT_ENVELOPE = "Received"
# Offered in the editor; any other well-formed header name is accepted.
COMMON_ENVELOPES = ("Delivered-To", "X-Original-To", "X-Envelope-To", "Envelope-To")
MAX_DOMAINS = 100
MAX_NAME = 320

_LABEL = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"
DOMAIN_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")
# A local part or an address: RFC 5322 atext, dots and one "@"; no "=" (the
# rcfile's own separator), no "*" but the wildcard alone.
MAIL_NAME = re.compile(r"^[A-Za-z0-9!#$%&'+/?^_`{|}~.-]+(@[A-Za-z0-9.-]+)?$")
# RFC 5322 field name: printable ASCII but the colon.
HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")
# A catch-all's prefix ("catchall+", "client-"): atext without the "@".
PREFIX = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$")


@dataclass(frozen=True)
class Multidrop:
    """A mailbox's multidrop settings, as the editor shows them."""

    envelope: str = ""  # "" is fetchmail's default, Received
    no_envelope: bool = False  # read To/Cc... instead of an envelope header
    localdomains: tuple[str, ...] = ()
    aka: tuple[str, ...] = ()
    qvirtual: str = ""
    postmaster: str = ""  # "" is the owner's login, as fetchmail's default
    smtpaddress: str = ""  # the domain added to bare names; "" the listener's
    rules: tuple[tuple[str, str], ...] = field(default=())


# --- the one check -----------------------------------------------------------------


def mail_name_problem(name: str) -> str:
    """Why ``name`` is no local name or address; "" when it is one."""
    if len(name) > MAX_NAME or not MAIL_NAME.match(name):
        return (
            f"“{name}” is not a mail name: use letters, digits and . _ - "
            "(or a whole address)."
        )
    return ""


def domain_problem(name: str) -> str:
    try:
        ascii_name = name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        ascii_name = ""
    if not DOMAIN_NAME.match(ascii_name):
        return f"“{name}” is not a domain name: write one such as example.org."
    return ""


def address_domain_problem(name: str) -> str:
    """The domain part of an address: a domain name or an address literal."""
    if name.startswith("[") and name.endswith("]"):
        try:
            ipaddress.ip_address(name[1:-1].removeprefix("IPv6:"))
        except ValueError:
            pass
        else:
            return ""
    return domain_problem(name)


def _domains_problems(names: tuple[str, ...]) -> list[str]:
    out = [p for p in map(domain_problem, names) if p]
    seen: set[str] = set()
    for name in names:
        if name.lower() in seen:
            out.append(f"{name} is listed twice.")
        seen.add(name.lower())
    if len(names) > MAX_DOMAINS:
        out.append(f"At most {MAX_DOMAINS} domains.")
    return out


def problems(*, values: Multidrop) -> dict[str, list[str]]:
    """What is wrong with each setting, in words; empty when nothing is.

    Keys are the settings' names (Multidrop's fields, as the editor's fields
    and the rcfile's options are named, ``postmaster`` included).
    """
    out: dict[str, list[str]] = {}
    if values.envelope and not HEADER_NAME.match(values.envelope):
        out["envelope"] = [
            f"“{values.envelope}” is not a header name: write it as it appears "
            "before the colon, such as Delivered-To or X-Original-To."
        ]
    for name in ("localdomains", "aka"):
        found = _domains_problems(getattr(values, name))
        if found:
            out[name] = found
    if values.qvirtual and not PREFIX.match(values.qvirtual):
        out["qvirtual"] = [
            f"“{values.qvirtual}” cannot be a prefix: use letters, digits and "
            "+ - . _ (no spaces, no @), at most 64 characters."
        ]
    if values.postmaster and mail_name_problem(values.postmaster):
        out["postmaster"] = [mail_name_problem(values.postmaster)]
    if values.smtpaddress and address_domain_problem(values.smtpaddress):
        out["smtpaddress"] = [address_domain_problem(values.smtpaddress)]
    names = [n for rule in values.rules for n in rule if n and n != "*"]
    found = [p for p in map(mail_name_problem, names) if p]
    if found:
        out["rules"] = found
    return out


# --- reading and writing where the rcfile model keeps them ---------------------------


def _part(options: Any, scope: str) -> dict[str, Any]:
    part = options.get(scope) if isinstance(options, dict) else None
    return dict(part) if isinstance(part, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _texts(value: Any) -> tuple[str, ...]:
    return (
        tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()
    )


def multidrop_in_options(
    *, options: Any, rules: tuple[tuple[str, str], ...] = ()
) -> Multidrop:
    """The settings an options JSON holds (the admin edits it as a whole)."""
    server = _part(options, "server")
    return Multidrop(
        envelope=_text(server.get("envelope")),
        no_envelope=server.get("no_envelope") is True,
        localdomains=_texts(server.get("localdomains")),
        aka=_texts(server.get("aka")),
        qvirtual=_text(server.get("qvirtual")),
        postmaster=_text(_part(options, "globals").get("postmaster")),
        smtpaddress=_text(_part(options, "user").get("smtpaddress")),
        rules=rules,
    )


def multidrop_of(*, mailbox: Mailbox) -> Multidrop:
    """The mailbox's stored settings (an import's, the editor's or the admin's)."""
    rules = tuple((r.remote, r.local) for r in mailbox.rules.all())
    return multidrop_in_options(options=mailbox.options, rules=rules)


def multidrop_from_rc(
    *, g: GlobalOptions, s: ServerOptions, u: UserOptions
) -> Multidrop:
    """What an rcfile entry says of the same settings (the importer's side)."""
    rules = [(remote, local or "") for remote, local in u.localnames]
    return Multidrop(
        envelope=s.envelope or "",
        no_envelope=s.no_envelope,
        localdomains=tuple(s.localdomains),
        aka=tuple(s.aka),
        qvirtual=s.qvirtual or "",
        postmaster=g.postmaster or "",
        smtpaddress=u.smtpaddress or "",
        rules=tuple(rules),
    )


def _put(part: dict[str, Any], name: str, value: Any) -> None:
    """Store a given value; drop a "not given" one, as the importer stores it."""
    if value:
        part[name] = list(value) if isinstance(value, tuple) else value
    else:
        part.pop(name, None)


class MultidropInvalid(ValueError):
    """Settings that :func:`problems` refuses; the view shows them first."""


@transaction.atomic
def mailbox_multidrop_save(*, mailbox: Mailbox, values: Multidrop) -> None:
    """Store the multidrop settings and rules of ``mailbox`` (checked again)."""
    found = problems(values=values)
    if found:
        raise MultidropInvalid(" ".join(m for ms in found.values() for m in ms))
    options = dict(mailbox.options) if isinstance(mailbox.options, dict) else {}
    server, user, globals_ = (_part(options, s) for s in ("server", "user", "globals"))
    _put(server, "envelope", values.envelope if not values.no_envelope else "")
    _put(server, "no_envelope", values.no_envelope)
    _put(server, "localdomains", values.localdomains)
    _put(server, "aka", values.aka)
    _put(server, "qvirtual", values.qvirtual)
    _put(globals_, "postmaster", values.postmaster)
    _put(user, "smtpaddress", values.smtpaddress)
    options.update(server=server, user=user, globals=globals_)
    mailbox.options = options
    mailbox.save(update_fields=["options", "updated_at"])
    mailbox_rules_replace(mailbox=mailbox, rules=values.rules)
