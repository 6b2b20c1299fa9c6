"""Whole-domain mailboxes: whom each message is for, and which local user that is.

One remote mailbox collects the mail of a whole domain; fetchmail's multidrop
mode sorts it. This module is its decision logic, free of I/O (a DNS resolver
is injected, and only used when the spec asks for it). fetchmail 6.4's rules
(``transact.c``: ``readheaders``, ``find_server_names``, ``parse_received``;
``checkalias.c``: ``is_host_alias``), in order:

1. **Envelope.** ``envelope NAME`` (e.g. ``Delivered-To``, ``X-Original-To``,
   ``X-Envelope-To``): the addresses of the first such field after skipping
   ``envskip`` of them. The default, ``Received``: the first ``Received``
   field (after ``envskip``) that was written by the mail server itself
   ("by NAME" is one of its names) and carries "for <address>".
   ``no envelope`` (None) skips this step.
2. **Headers.** No envelope found: every address in ``Resent-To/-Cc/-Bcc``
   when there are such fields, else in ``To/Cc/Bcc/Apparently-To``.
3. **Mapping**, per address: a bare local name in a guessed header field
   (``carol (Carol C.)``) is read as at the mail server, as fetchmail reads it
   after ``rewrite`` qualified it (with ``no rewrite`` it stays bare); a
   ``qvirtual`` prefix is stripped; an address without a domain is ignored;
   a full address listed in the names maps to its local name; an address in a ``localdomains`` domain (or a subdomain)
   passes through whole; an address whose domain is not a name of the mail
   server (its poll name, an ``aka`` or a subdomain of one, or with ``dns`` a
   name that resolves to it) is not ours; otherwise its local part maps by
   the names (case-blind), or passes through with the wildcard ``*``.
4. **Nobody matched:** the postmaster gets it (never dropped).
5. **Everyone refused** (at the listener, see :mod:`retrieval.engine.deliver.handover`):
   a message whose every recipient the listener refuses permanently before
   taking any of it goes to the postmaster, as fetchmail's ``open_smtp_sink``
   does, instead of staying on the server to be refused at every poll.

Differences from fetchmail, on purpose: field names match whole, not as a
prefix; a recipient appears once however often it was named; addresses come
from one RFC 5322 tokenizer (:mod:`retrieval.engine.deliver.addresses`: comments,
groups, quoted local parts, obsolete forms); and within one poll a message
(by Message-ID, else by its exact header) reaches each recipient once, whatever
the number of copies in the mailbox (fetchmail catches only identical headers
in a row).
"""

from __future__ import annotations

import hashlib
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from retrieval.engine.deliver.addresses import parse_address_list
from retrieval.engine.deliver.headers import is_valid_address
from retrieval.engine.report import MessageStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from retrieval.engine.deliver.handover import Handed
    from retrieval.engine.spec import MailboxSpec, MultidropSpec

# A hostile header could name thousands of addresses: look at this many at most.
MAX_ADDRESSES = 500
GUESS_FIELDS = ("to", "cc", "bcc", "apparently-to")
RESENT_FIELDS = ("resent-to", "resent-cc", "resent-bcc")


# --- the header ------------------------------------------------------------------


@dataclass(frozen=True)
class HeaderField:
    name: str  # as written
    value: str  # continuation lines joined, each line break now one space

    @property
    def shown(self) -> str:
        return f"{self.name}: {self.value}"[:300]


def header_fields(header_block: bytes) -> list[HeaderField]:
    """Every field of the header, in order (latin-1, so any byte survives)."""
    found: list[HeaderField] = []
    name = ""
    parts: list[str] = []
    for raw in header_block.decode("latin-1").splitlines():
        if raw[:1] in (" ", "\t") and name:
            parts.append(raw.strip())
            continue
        if name:
            found.append(HeaderField(name, " ".join(p for p in parts if p)))
        field_name, colon, rest = raw.partition(":")
        name, parts = (field_name.strip(), [rest.strip()]) if colon else ("", [])
    if name:
        found.append(HeaderField(name, " ".join(p for p in parts if p)))
    return found


def address_list(value: str) -> list[str]:
    """The addresses of an address-list field value, without display names."""
    return [m.address for m in parse_address_list(value)][:MAX_ADDRESSES]


# --- which names are the mail server's ----------------------------------------------


class Resolver(Protocol):
    """The DNS, for ``dns`` / ``checkalias`` only."""

    def canonical_name(self, name: str) -> str | None: ...

    def addresses(self, name: str) -> set[str]: ...


class SystemResolver:
    """The host's resolver (getaddrinfo); never used unless ``dns`` is set."""

    def canonical_name(self, name: str) -> str | None:
        infos = self._lookup(name, socket.AI_CANONNAME)
        return infos[0][3] or None if infos else None

    def addresses(self, name: str) -> set[str]:
        return {str(info[4][0]) for info in self._lookup(name, 0)}

    @staticmethod
    def _lookup(name: str, flags: int) -> list[tuple]:  # type: ignore[type-arg]
        try:
            return socket.getaddrinfo(name, None, 0, socket.SOCK_STREAM, 0, flags)
        except (OSError, UnicodeError):
            return []


class ServerNames:
    """fetchmail's ``is_host_alias``: is ``name`` one of the mail server's names?"""

    def __init__(
        self,
        truename: str,
        aka: Iterable[str] = (),
        *,
        resolver: Resolver | None = None,
        checkalias: bool = False,
    ) -> None:
        self.truename = truename.lower().rstrip(".")
        self.aka = [a.lower().rstrip(".") for a in aka if a]
        self._resolver = resolver
        self._checkalias = checkalias
        self._learned: dict[str, bool] = {}

    def why(self, name: str) -> str:
        """Why ``name`` is one of the server's names, or "" when it is not."""
        host = name.lower().rstrip(".")
        if host == self.truename:
            return f"{name} is the mail server's name"
        for aka in self.aka:
            if host == aka or host.endswith("." + aka):
                return f"{name} matches aka {aka}"
        if self._resolver is not None and self._resolved(host):
            return f"{name} resolves to the mail server"
        return ""

    def _resolved(self, host: str) -> bool:
        if host not in self._learned and len(self._learned) < 1000:
            assert self._resolver is not None
            canonical = (self._resolver.canonical_name(host) or "").lower()
            same = canonical.rstrip(".") == self.truename
            if not same and self._checkalias:
                theirs = self._resolver.addresses(host)
                same = bool(theirs & self._resolver.addresses(self.truename))
            self._learned[host] = same
        return self._learned.get(host, False)


# --- step 1 and 2: the addresses a message is for ---------------------------------


@dataclass(frozen=True)
class Found:
    """Where the recipients were read, and what was read there."""

    source: str  # "Delivered-To", "Received", "To/Cc/Bcc", "Resent-To/Cc/Bcc"
    envelope: bool  # True: from the envelope; False: guessed from the header
    lines: tuple[str, ...]  # the fields used, for the transcript
    addresses: tuple[str, ...]


def find_addresses(
    fields: list[HeaderField], spec: MultidropSpec, names: ServerNames
) -> tuple[Found, list[str]]:
    """The message's recipient addresses, and notes on how they were found."""
    notes: list[str] = []
    wanted = (spec.envelope or "").lower()
    if spec.envelope is None:
        notes.append("envelope lookup is off (no envelope): guessing from the header")
    elif wanted == "received":
        found = _from_received(fields, spec.envskip, names, notes)
        if found is not None:
            return found, notes
    else:
        matching = [f for f in fields if f.name.lower() == wanted]
        if len(matching) > spec.envskip:
            chosen = matching[spec.envskip]
            if spec.envskip:
                notes.append(f"skipped {spec.envskip} {spec.envelope} field(s)")
            return Found(
                spec.envelope,
                envelope=True,
                lines=(chosen.shown,),
                addresses=tuple(address_list(chosen.value)),
            ), notes
        notes.append(
            f"no {spec.envelope} field"
            + (f" after skipping {spec.envskip}" if spec.envskip else "")
            + ": guessing from the header"
        )
    return _guess(fields), notes


def _from_received(
    fields: list[HeaderField], envskip: int, names: ServerNames, notes: list[str]
) -> Found | None:
    received = [f for f in fields if f.name.lower() == "received"]
    if envskip:
        notes.append(f"skipped {min(envskip, len(received))} Received field(s)")
    for item in received[envskip:]:
        address, why = received_for(item.value, names)
        notes.append(f"Received field: {why}")
        if address:
            return Found(
                "Received", envelope=True, lines=(item.shown,), addresses=(address,)
            )
    notes.append("no Received field names a recipient: guessing from the header")
    return None


def received_for(value: str, names: ServerNames) -> tuple[str, str]:
    """fetchmail's ``parse_received``: the "for" address of a Received field
    written by the mail server itself, and why it was or was not taken."""
    words = value.split()
    by_host = ""
    at = 0
    for i, word in enumerate(words[:-1]):
        if word == "by" and "@" not in words[i + 1]:
            by_host, at = words[i + 1], i + 2
            break
    if not by_host:
        return "", "no 'by' host"
    why = names.why(by_host)
    if not why:
        return "", f"written by {by_host}, not the mail server"
    for i in range(at, len(words) - 1):
        if words[i] == "for" and "@" in words[i + 1]:
            address = _for_address(words[i + 1])
            if address:
                return address, f"written by the mail server ({why}), for {address}"
    return "", f"written by {by_host} but names no recipient"


def _for_address(token: str) -> str:
    text = token
    if text.startswith("<"):
        text = text[1:].split(">", 1)[0]
    if text.startswith("@") and ":" in text:  # a source route
        text = text.split(":", 1)[1]
    return text.split(";", 1)[0].strip()


def _guess(fields: list[HeaderField]) -> Found:
    resent = [f for f in fields if f.name.lower() in RESENT_FIELDS]
    chosen = resent or [f for f in fields if f.name.lower() in GUESS_FIELDS]
    addresses: list[str] = []
    for item in chosen:
        addresses.extend(address_list(item.value))
    return Found(
        "Resent-To/Cc/Bcc" if resent else "To/Cc/Bcc",
        envelope=False,
        lines=tuple(item.shown for item in chosen),
        addresses=tuple(addresses[:MAX_ADDRESSES]),
    )


# --- step 3: one address to a local user -----------------------------------------


@dataclass(frozen=True)
class Match:
    address: str  # as found in the header (before qvirtual)
    local: str | None  # the recipient to deliver to; None: not ours
    rule: str  # which rule decided, in words


def map_address(address: str, spec: MultidropSpec, names: ServerNames) -> Match:
    """Which local recipient ``address`` is, by the rules in the module docstring."""
    rest = address
    stripped = ""
    if spec.qvirtual and rest.lower().startswith(spec.qvirtual.lower()):
        rest = rest[len(spec.qvirtual) :]
        stripped = f"qvirtual {spec.qvirtual!r} stripped, "
    local_part, at, domain = rest.rpartition("@")
    if not at:
        return Match(address, None, f"{stripped}no domain: ignored")
    mapped = _lookup(spec.names, rest)
    if mapped is not None:
        return Match(address, mapped, f"{stripped}address {rest} mapped to {mapped}")
    host = domain.lower().rstrip(".")
    for local_domain in spec.localdomains:
        wanted = local_domain.lower().rstrip(".")
        if host == wanted or host.endswith("." + wanted):
            return Match(
                address, rest, f"{stripped}{domain} is a local domain ({local_domain})"
            )
    why = names.why(domain)
    if not why:
        return Match(address, None, f"{stripped}{domain} is not the mail server's")
    mapped = _lookup(spec.names, local_part)
    if mapped is not None:
        return Match(address, mapped, f"{stripped}{why}; {local_part} -> {mapped}")
    if spec.wildcard:
        return Match(address, local_part, f"{stripped}{why}; {local_part} by *")
    return Match(address, None, f"{stripped}{why}; no local name for {local_part}")


def _map_found(
    address: str,
    found: Found,
    spec: MultidropSpec,
    names: ServerNames,
    *,
    rewrite: bool,
) -> Match:
    if "@" in address or found.envelope or not rewrite:
        return map_address(address, spec, names)
    qualified = f"{address}@{names.truename}"
    match = map_address(qualified, spec, names)
    return Match(
        address, match.local, f"bare name read as {qualified} (rewrite); {match.rule}"
    )


def _lookup(pairs: tuple[tuple[str, str], ...], name: str) -> str | None:
    wanted = name.lower()
    for server_name, local in pairs:
        if server_name.lower() == wanted:
            return local
    return None


# --- the whole decision for one message -------------------------------------------


@dataclass(frozen=True)
class Routing:
    found: Found
    matches: tuple[Match, ...]
    recipients: tuple[str, ...]  # whom to deliver to, each once
    to_postmaster: bool  # nobody matched
    notes: tuple[str, ...] = ()

    def describe(self) -> list[str]:
        """The transcript lines: which header, which addresses, which rule."""
        lines = [f"multidrop: {note}" for note in self.notes]
        kind = "envelope" if self.found.envelope else "header guess"
        lines.append(f"multidrop: recipients from {self.found.source} ({kind})")
        lines.extend(f"multidrop:   {line}" for line in self.found.lines)
        lines.extend(
            f"multidrop: {m.address} -> {m.local or 'not ours'} ({m.rule})"
            for m in self.matches
        )
        if self.to_postmaster:
            lines.append(
                f"multidrop: no recipient matched; to {', '.join(self.recipients)}"
            )
        else:
            lines.append(f"multidrop: deliver to {', '.join(self.recipients)}")
        return lines


def route(
    header_block: bytes,
    spec: MultidropSpec,
    names: ServerNames,
    postmaster: tuple[str, ...],
    *,
    rewrite: bool = False,
) -> Routing:
    """Whom one message is for (steps 1-4 of the module docstring).

    ``rewrite``: a bare local name in a guessed header field is at the mail
    server (fetchmail's ``rewrite`` qualifies it before routing).
    """
    found, notes = find_addresses(header_fields(header_block), spec, names)
    matches: list[Match] = []
    recipients: list[str] = []
    for address in found.addresses:
        match = _map_found(address, found, spec, names, rewrite=rewrite)
        if match.local is not None and not is_valid_address(match.local):
            # Header bytes never reach RCPT TO unchecked.
            match = Match(address, None, f"{match.rule}, but not a usable address")
        matches.append(match)
        local = match.local
        if local is not None and local.lower() not in {r.lower() for r in recipients}:
            recipients.append(local)
    nobody = not recipients
    return Routing(
        found,
        tuple(matches),
        postmaster if nobody else tuple(recipients),
        to_postmaster=nobody,
        notes=tuple(notes),
    )


# --- one poll: routing plus duplicate suppression ---------------------------------


@dataclass
class Routed:
    """One message's routing, and who got the same message earlier this poll."""

    routing: Routing
    key: str  # Message-ID, or a digest of the header when it has none
    duplicates: set[str] = field(default_factory=set)

    @property
    def recipients(self) -> tuple[str, ...]:
        return self.routing.recipients


class DomainRouter:
    """Routes the messages of one multidrop poll and remembers what went where."""

    def __init__(
        self,
        spec: MultidropSpec,
        *,
        server_name: str,
        postmaster: tuple[str, ...],
        note: Callable[[str], None],
        resolver: Resolver | None = None,
        rewrite: bool = False,
    ) -> None:
        self.spec = spec
        self.rewrite = rewrite
        self.names = ServerNames(
            server_name,
            spec.aka,
            resolver=resolver if spec.dns else None,
            checkalias=spec.checkalias,
        )
        self.postmaster = postmaster
        self.note = note
        self._given: dict[str, set[str]] = {}

    @classmethod
    def for_spec(
        cls,
        spec: MailboxSpec,
        fallback: tuple[str, ...],
        note: Callable[[str], None],
    ) -> DomainRouter | None:
        """The router of a multidrop mailbox; None for a single-drop one.

        Unmatched mail goes to the postmaster, else to ``fallback`` (the
        mailbox's own recipients): it is never dropped.
        """
        if spec.multidrop is None:
            return None
        postmaster = spec.delivery.postmaster
        return cls(
            spec.multidrop,
            server_name=spec.server.host,
            postmaster=(postmaster,) if postmaster else fallback,
            note=note,
            resolver=SystemResolver(),
            rewrite=spec.message.rewrite,
        )

    def route(self, header_block: bytes, message_id: str) -> Routed:
        routing = route(
            header_block, self.spec, self.names, self.postmaster, rewrite=self.rewrite
        )
        for line in routing.describe():
            self.note(line)
        key = message_id or "header:" + hashlib.sha256(header_block).hexdigest()
        routed = Routed(routing, key)
        if self.spec.suppress_duplicates:
            given = self._given.get(key, set())
            routed.duplicates = {r for r in routing.recipients if r.lower() in given}
            if routed.duplicates:
                self.note(
                    f"multidrop: {', '.join(sorted(routed.duplicates))} already got "
                    f"{message_id or 'this message'} in this poll: not again"
                )
        return routed

    def settle(self, routed: Routed, handed: Handed) -> None:
        """Remember who has this message now."""
        if handed.decision.status is MessageStatus.DELIVERED:
            got: Iterable[str] = handed.recipients
        else:
            got = handed.decision.served
        self._given.setdefault(routed.key, set()).update(r.lower() for r in got)
