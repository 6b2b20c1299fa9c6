"""Mailboxes -> rcfile text: shared by manage.py export_fetchmailrc, the API and
the export pages.

The file parses back (and imports back) to the same configuration. Mailboxes whose
server options are the same are written as one ``poll`` entry with several users;
disabled ones as ``skip`` entries. fetchweb keeps a poll interval per mailbox and
global options (``set ...``) per mailbox: where they differ, ``set daemon`` is their
greatest common divisor and each entry says its ``interval``; for other globals the
first mailbox's value is written, with a note.

A mailbox delivered *Into an IMAP mailbox* is not exported: fetchmail has no
such delivery, and any entry it could run (no ``smtphost``/``mda`` means
localhost's SMTP listener) would deliver the mail somewhere its owner never
chose, silently. The file says so instead, at its top (a ``# not exported:``
comment naming the mailbox and why, which fetchmail and our importer skip), so
a person, the API and a file written by the command all see it; importing the
file back leaves that mailbox as it is.

Without the passwords (the default; only a superuser's command asks for them)
every entry that needs one gets a placeholder comment where its ``password``
would be: fetchmail ignores it (and asks for the password, or reads ~/.netrc),
and an import of the file keeps the stored password.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from retrieval import rcmap
from retrieval.crypto import DecryptionError
from retrieval.rcfile import export
from retrieval.rcfile.export import quote
from retrieval.rcfile.model import AUTH_TYPES, GlobalOptions, RcConfig, Server

if TYPE_CHECKING:
    from collections.abc import Sequence

    from retrieval.models import Mailbox
    from retrieval.rcfile.model import ServerOptions, UserOptions


class ExportFailed(Exception):
    """A stored password could not be read for an export with passwords."""


Described = tuple[GlobalOptions, "ServerOptions", "UserOptions"]


def _written_auth(mailbox: Mailbox, s: ServerOptions, notes: list[str]) -> None:
    """fetchmail 6.4 has no keyword for some of our mechanisms: say what is written."""
    if s.auth is None or s.auth in AUTH_TYPES:
        return
    closest = "password" if s.auth in ("plain", "login") else None
    notes.append(
        f"mailbox {mailbox.pk}: fetchmail has no 'auth {s.auth}'; written as "
        + (f"'auth {closest}'" if closest else "no auth (any)")
    )
    s.auth = closest


def _globals(
    mailboxes: Sequence[Mailbox], described: list[Described], notes: list[str]
) -> GlobalOptions:
    """One ``set`` block for mailboxes that each carry their own."""
    out = GlobalOptions()
    for f in dataclasses.fields(GlobalOptions):
        if f.name == "daemon" or f.name in rcmap.NOT_APPLICABLE:
            continue
        values = [getattr(g, f.name) for g, _, _ in described]
        if values:
            setattr(out, f.name, values[0])
        if len({repr(v) for v in values}) > 1:
            notes.append(
                f"set {f.name} differs between mailboxes; the file has mailbox "
                f"{mailboxes[0].pk}'s"
            )
    daemons = {g.daemon for g, _, _ in described}
    if len(daemons) <= 1:
        out.daemon = daemons.pop() if daemons else None
        return out
    step = math.gcd(*(m.poll_interval for m in mailboxes))
    out.daemon = step
    for mailbox, (_, s, _) in zip(mailboxes, described, strict=True):
        factor = mailbox.poll_interval // step
        s.interval = factor if factor > 1 else None
    notes.append(
        f"the mailboxes poll at different intervals: set daemon {step}, and each "
        "entry polls every 'interval' cycles"
    )
    return out


def _servers(described: list[Described]) -> list[Server]:
    """Users under one entry when their server options are the same."""
    servers: list[Server] = []
    for _, s, u in described:
        for server in servers:
            if server.options == s:
                server.users.append(u)
                break
        else:
            servers.append(Server(s, [u]))
    return servers


def not_exported(mailbox: Mailbox) -> str:
    """Why ``mailbox`` is left out of an rcfile; "" when it is not."""
    if mailbox.delivery_kind != mailbox.DeliveryKind.IMAP:
        return ""
    label = f" {quote(mailbox.name)}" if mailbox.name else ""
    return (
        f"mailbox {mailbox.pk}{label} ({quote(mailbox.username)} at "
        f"{quote(mailbox.host)}) delivers into the IMAP mailbox "
        f"{quote(mailbox.destination_username)} at "
        f"{quote(mailbox.destination_host)}, folder "
        f"{quote(mailbox.destination_folder)}: fetchmail cannot deliver into an "
        "IMAP mailbox, and an entry without a delivery would hand the mail to "
        "this machine's SMTP listener instead. Change its delivery to SMTP or "
        "LMTP to export it, or set it up by hand."
    )


def rcfile_of(
    mailboxes: Sequence[Mailbox], *, with_passwords: bool
) -> tuple[str, list[str]]:
    """The rcfile text for these mailboxes, and notes on what it could not say.
    Mailboxes it cannot hold (not_exported) are named in comments at its top."""
    notes: list[str] = []
    described: list[Described] = []
    left_out = [why for m in mailboxes if (why := not_exported(m))]
    mailboxes = [m for m in mailboxes if not not_exported(m)]
    for mailbox in mailboxes:
        try:
            g, s, u = rcmap.mailbox_to_rc(mailbox, with_password=with_passwords)
        except DecryptionError as exc:
            raise ExportFailed(
                f"mailbox {mailbox.pk}: the stored password cannot be read: {exc}"
            ) from exc
        _written_auth(mailbox, s, notes)
        if s.pollname == "defaults":
            notes.append(
                f"mailbox {mailbox.pk}: fetchmail reads an entry named "
                '"defaults" as the defaults record; rename the mailbox'
            )
        described.append((g, s, u))
    config = RcConfig(
        globals=_globals(mailboxes, described, notes), servers=_servers(described)
    )
    head = "".join(f"# not exported: {why}\n" for why in left_out)
    return head + export(config, password_note=not with_passwords), notes
