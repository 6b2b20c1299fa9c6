"""The engine's frozen spec of a stored mailbox, with the run-time guards.

A poll and a connection test both start here: the row is read as an rcfile entry
would be (retrieval.rcmap), the password decrypted, and what its owner may not ask
for (commands on this server, private addresses) refused in words.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from django.conf import settings

from retrieval import netpolicy, rcmap
from retrieval.crypto import DecryptionError
from retrieval.engine import spec as engine_spec
from retrieval.engine.report import ExitCode
from retrieval.engine.spec import Secret
from retrieval.models import Mailbox, destination_port
from retrieval.rcfile.env import Environment
from retrieval.rcfile.specs import user_spec

if TYPE_CHECKING:
    from retrieval.rcfile.model import ServerOptions, UserOptions


# The logins that send an OAuth2 access token (services/oauth.py). Its module,
# with the HTTP client it needs, is imported only by a mailbox that uses one
# (half a second of every ``manage.py poll``, in the profile).
OAUTH_AUTH = (Mailbox.Auth.XOAUTH2, Mailbox.Auth.OAUTHBEARER)


class SpecError(Exception):
    """The mailbox's settings cannot be turned into a poll; the text says why.

    ``exit_code`` and ``permanent``: what the poll's record says of it (a
    subclass may say "authentication failed" or "try again later").
    """

    exit_code = ExitCode.SYNTAX
    permanent = True


BSMTP_STDOUT = (
    "bsmtp '-' writes to standard output, which only the command line has; name "
    "a file for the web service."
)


def refuse_command_line_only(spec: engine_spec.MailboxSpec) -> None:
    """What only makes sense for ``python -m retrieval.engine``."""
    if spec.delivery.bsmtp == "-":
        raise SpecError(BSMTP_STDOUT)


def _refuse_server_commands(mailbox: Mailbox, s: ServerOptions, u: UserOptions) -> None:
    """The run-time guard beside the importer's: commands are for superusers only."""
    if mailbox.owner.is_superuser:
        if mailbox.delivery_kind == Mailbox.DeliveryKind.MDA and u.mda is None:
            raise SpecError("Delivery to a program is chosen but no command is set.")
        return
    names = list(rcmap.commands_in(s, u))
    if mailbox.delivery_kind == Mailbox.DeliveryKind.MDA and "mda" not in names:
        names.insert(0, "mda")
    if names:
        raise SpecError(
            f"This mailbox asks to run commands on the server ({', '.join(names)}); "
            "only a mailbox of an administrator (superuser) may do that."
        )


def mailbox_spec(mailbox: Mailbox) -> engine_spec.MailboxSpec:
    """The engine's frozen view of one row, built as for an rcfile entry.

    Decrypts the password. The recipient is the owner's address unless the row
    names one (``recipient``, multidrop rules).
    """
    try:
        g, s, u = rcmap.mailbox_to_rc(mailbox, with_password=True)
    except DecryptionError as exc:
        raise SpecError(f"The stored password cannot be read: {exc}") from exc
    _refuse_server_commands(mailbox, s, u)
    spec = user_spec(g, s, u, Environment.fixed(mailbox.owner.email))
    timeout = min(spec.server.timeout, float(settings.FETCH_TIMEOUT))
    # The programs it runs get an allow-listed environment, not the worker's
    # secrets (retrieval.engine.wire.commands.program_environment).
    server = replace(spec.server, timeout=timeout, inherit_env=False)
    if _public_only(mailbox, server.host, server.effective_port):
        server = replace(server, public_only=True)
    recipients = spec.delivery.recipients
    if not recipients or not (u.smtpname or u.localnames):
        recipients = (mailbox.delivery_address,)
    delivery = replace(
        spec.delivery, recipients=recipients, timeout=timeout, inherit_env=False
    )
    if mailbox.delivery_kind == Mailbox.DeliveryKind.IMAP:
        delivery = replace(
            delivery,
            kind=engine_spec.DeliveryKind.IMAP,
            mailbox=_append_target(mailbox, timeout),
        )
    return replace(
        spec, server=server, delivery=delivery, password=_oauth_token(mailbox, spec)
    )


def _public_only(mailbox: Mailbox, host: str, port: int, *, label: str = "") -> bool:
    """True when the owner may reach only public addresses (the engine checks the
    addresses again as it connects); SpecError when ``host`` is not one."""
    if mailbox.owner.is_superuser or settings.FETCH_ALLOW_PRIVATE_HOSTS:
        return False
    try:
        netpolicy.check_destination(host, port)
    except netpolicy.DestinationRefused as exc:
        raise SpecError(f"{label}{exc}") from exc
    return True


def _append_target(mailbox: Mailbox, timeout: float) -> engine_spec.AppendTarget:
    """Delivery kind IMAP: the mailbox delivered into, under the source's rules
    (a public address unless the owner is a superuser)."""
    host, tls_mode = mailbox.destination_host, mailbox.destination_tls_mode
    if not host or not mailbox.destination_username:
        raise SpecError(
            "Delivery into a mailbox is chosen but its server or user is missing."
        )
    port = destination_port(mailbox.destination_port, tls_mode)
    public_only = _public_only(mailbox, host, port, label="The destination mailbox: ")
    password = _destination_credential(mailbox)
    return engine_spec.AppendTarget(
        server=engine_spec.ServerSpec(
            host=host,
            protocol=engine_spec.MailProtocol.IMAP,
            port=port,
            # The mailbox's private CA bundle (a superuser's setting) is trusted
            # for both of its servers.
            tls=engine_spec.TlsSpec(
                mode=engine_spec.TlsMode(tls_mode), ca_file=mailbox.ca_file or None
            ),
            auth=mailbox.destination_auth,
            timeout=timeout,
            public_only=public_only,
        ),
        username=mailbox.destination_username,
        password=engine_spec.Secret(password) if password else None,
        folder=mailbox.destination_folder or "INBOX",
        flags=tuple(mailbox.destination_flags.split()),
        create_folder=mailbox.destination_create_folder,
    )


def _destination_credential(mailbox: Mailbox) -> str:
    """What the destination logs in with: with an OAuth2 grant for the
    destination, its access token (refreshed first when about to expire, one
    refresh at a time, as the source's); else the stored password (or a token
    typed as the password)."""
    if mailbox.destination_auth in OAUTH_AUTH:
        from retrieval.services.oauth import Purpose, oauth_access_token

        token = oauth_access_token(mailbox=mailbox, purpose=Purpose.DESTINATION)
        if token is not None:
            return token
    try:
        password = mailbox.get_destination_password()
    except DecryptionError as exc:
        raise SpecError(
            f"The destination's stored password cannot be read: {exc}"
        ) from exc
    if not password and mailbox.destination_auth in OAUTH_AUTH:
        raise SpecError(
            "The destination mailbox logs in with OAuth2 but no account is "
            "connected: press Connect for the destination on the mailbox page."
        )
    return password


def _oauth_token(
    mailbox: Mailbox, spec: engine_spec.MailboxSpec
) -> engine_spec.Secret | None:
    """With an OAuth2 grant (services.oauth), the SASL credential of XOAUTH2 or
    OAUTHBEARER is its access token, refreshed first when about to expire;
    without one, a token typed as the password (as before)."""
    if mailbox.auth not in OAUTH_AUTH:
        return spec.password
    from retrieval.services.oauth import oauth_access_token

    token = oauth_access_token(mailbox=mailbox)
    return Secret(token) if token is not None else spec.password
