"""SMTP AUTH to the local listener (fetchmail's ``esmtpname`` / ``esmtppassword``).

fetchmail logs in right after EHLO when the listener offers AUTH, with the
first of CRAM-MD5, PLAIN and LOGIN the listener offers (in that order), over
whatever connection it has: it never starts TLS towards the listener, so the
password crosses the wire in clear. fetchweb keeps the mechanism order and
protects the password:

* When the listener offers STARTTLS, the connection is upgraded before AUTH.
  The certificate is checked against the system CAs (or ``listener_ca_file``)
  unless the listener is on this host: a loopback address, a unix socket or a
  ``plugout`` program. There the password never leaves the machine, and
  self-signed certificates are the rule; ``listener_verify`` True or False
  overrides that choice either way. A failed upgrade is never retried in
  clear.
* Without STARTTLS the password goes in clear only to a listener on this host
  (what fetchmail does everywhere); another host gets nothing, the delivery
  fails with the reason, and nothing is deleted. ``listener_verify = True``
  makes STARTTLS mandatory even on this host.
* A listener that offers no AUTH (or none of the three mechanisms) gets the
  mail without a login, as with fetchmail, and the transcript says so; one
  that refuses the login ends delivery there (fetchmail would go on and have
  every MAIL FROM refused).
* ``esmtp_auth`` "xoauth2" or "oauthbearer" (DeliverySpec): the password is an
  OAuth2 access token, sent with that mechanism only; a listener that does not
  offer it gets nothing and no mail (never a password mechanism instead).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from retrieval.engine.errors import ConfigError, EngineError, ListenerError
from retrieval.engine.spec import TlsMode, TlsSpec
from retrieval.engine.wire import sasl
from retrieval.engine.wire.tls import client_context

if TYPE_CHECKING:
    from collections.abc import Callable

    from retrieval.engine.spec import DeliverySpec
    from retrieval.engine.wire.transport import Connection

    Reply = tuple[int, str]

MECHANISMS = ("CRAM-MD5", "PLAIN", "LOGIN")  # fetchmail's order of preference
# DeliverySpec.esmtp_auth -> the SASL mechanism that sends an OAuth2 token.
TOKEN_MECHANISMS = {"xoauth2": "XOAUTH2", "oauthbearer": "OAUTHBEARER"}


def on_this_host(host: str) -> bool:
    """A unix socket (``""`` or a path), ``localhost`` or a loopback address."""
    if not host or host.startswith("/") or host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def login(
    conn: Connection,
    extensions: dict[str, str],
    *,
    delivery: DeliverySpec,
    host: str,
    local: bool,
    command: Callable[[str], Reply],
    reply: Callable[[], Reply],
    hello: Callable[[], dict[str, str]],
) -> None:
    """Secure the connection as the module docstring says, then AUTH.

    ``host`` names the listener for the certificate check; ``local`` says it
    is on this host. ``command`` sends a line and reads the reply, ``reply``
    reads one, ``hello`` repeats EHLO and returns the new extensions.
    Raises :class:`ListenerError` (or another EngineError) when delivery must
    not go on over this connection.
    """
    password = delivery.esmtp_password
    if password is None:
        return
    verify = (
        delivery.listener_verify if delivery.listener_verify is not None else not local
    )
    if not conn.is_tls:
        if "STARTTLS" in extensions:
            code, text = command("STARTTLS")
            if code != 220:
                raise ListenerError(
                    f"The listener offered STARTTLS but refused it ({code} {text}); "
                    "the ESMTP password was not sent."
                )
            context = client_context(
                TlsSpec(
                    mode=TlsMode.STARTTLS,
                    verify=verify,
                    ca_file=delivery.listener_ca_file,
                )
            )
            conn.start_tls(context, host.strip("[]") or "localhost")
            extensions = hello()
        elif verify or not local:
            raise ListenerError(
                f"The listener at {host or 'this host'} does not offer STARTTLS, "
                "so the ESMTP password would cross the network in clear; it was "
                "not sent and nothing was delivered."
            )
        else:
            conn.note(
                "the listener on this host offers no STARTTLS: ESMTP login in "
                "clear (the password does not leave this host)"
            )
    offered = extensions.get("AUTH", "").upper().split()
    user = delivery.esmtp_name
    token_mechanism = TOKEN_MECHANISMS.get(delivery.esmtp_auth.lower())
    if delivery.esmtp_auth and token_mechanism is None:
        raise ConfigError(
            f"The ESMTP login mechanism {delivery.esmtp_auth!r} is unknown; "
            "nothing was delivered."
        )
    if token_mechanism is not None and token_mechanism not in offered:
        raise ListenerError(
            f"The listener does not offer {token_mechanism}, which this delivery "
            "logs in with (an OAuth2 token); nothing was delivered."
        )
    name = token_mechanism or next((m for m in MECHANISMS if m in offered), None)
    if name is None:
        conn.note(
            "the listener offers no AUTH mechanism fetchmail knows (CRAM-MD5, "
            "PLAIN, LOGIN); delivering without an ESMTP login"
        )
        return
    mech = sasl.mechanism(name, user, password.reveal(), host=host, port=0)
    sasl.exchange(mech, SmtpSaslWire(conn, reply, user), initial_response=True)
    conn.note(f"ESMTP login as {user} ({name}) accepted")


class SmtpSaslWire(sasl.CommandSaslWire):
    """SMTP AUTH (RFC 4954) for :func:`retrieval.engine.wire.sasl.exchange`."""

    def __init__(self, conn: Connection, reply: Callable[[], Reply], user: str) -> None:
        self._conn = conn
        self._reply = reply
        self._user = user

    def read(self) -> sasl.Reply:
        code, text = self._reply()
        if code == 334:
            return sasl.Reply("continue", text)
        return sasl.Reply("ok" if code == 235 else "fail", f"{code} {text}")

    def refusal(self, text: str) -> EngineError:
        return ListenerError(
            f"The listener refused the ESMTP login of {self._user!r} ({text}); "
            "nothing was delivered. Check esmtpname and esmtppassword."
        )
