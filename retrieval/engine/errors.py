"""One exception hierarchy for everything the network, a server or a listener can do.

Every exception the engine raises is defined here (``tests/engine/test_layers.py``
checks that no other engine module defines one). Each error carries the fetchmail
exit code it maps to, a sentence a mail user understands and ``permanent``: True
when retrying later cannot help until someone changes something (the login was
refused, the certificate is not trusted, the host name does not exist, the spec
asks for the impossible). :func:`retrieval.engine.run.poll` turns the first one
that ends a poll into the report's ``exit_code``, ``error`` and ``permanent``.
Nothing outside the engine needs to catch these: ``poll`` never lets them escape.
"""

from __future__ import annotations

from retrieval.engine.report import ExitCode


class EngineError(Exception):
    """Root of the hierarchy; ``str(err)`` is the plain-words message."""

    exit_code: ExitCode = ExitCode.UNDEFINED
    # True when retrying later cannot help without someone changing something.
    permanent: bool = False


class ConfigError(EngineError):
    """The spec asks for something impossible (bad address, unknown mechanism)."""

    exit_code = ExitCode.SYNTAX
    permanent = True


class DnsError(EngineError):
    """The mail server's name could not be resolved now (the resolver failed)."""

    exit_code = ExitCode.DNS


class HostUnknown(DnsError):
    """The name does not exist or has no address: asking again will not help."""

    permanent = True


class TransportError(EngineError):
    """Refused, reset, timed out or unreadable connection to the mail server."""

    exit_code = ExitCode.SOCKET


class TimeoutFault(TransportError):
    pass


class TlsError(TransportError):
    """Handshake or certificate failure, or a TLS policy the server cannot meet."""


class CertificateError(TlsError):
    """The server's certificate was not verified: not until it (or the CA) changes."""

    permanent = True


class AuthError(EngineError):
    exit_code = ExitCode.AUTHFAIL
    permanent = True


class ProtocolError(EngineError):
    """The server said something a correct server would not say."""

    exit_code = ExitCode.PROTOCOL


class ParseError(ProtocolError):
    """The bytes do not follow the IMAP grammar.

    A ProtocolError, so that a parse the session did not wrap still ends the
    poll as a protocol error and never as a stray exception.
    """


class SaslError(ProtocolError):
    """The server's SASL challenge cannot be answered; the exchange is cancelled.

    :func:`retrieval.engine.wire.sasl.exchange` turns it into a ProtocolError
    with the reason; it never ends a poll by itself.
    """


class ServerError(EngineError):
    """The server answered an error to a command that should work (SELECT, UIDL...)."""

    exit_code = ExitCode.ERROR


class Pop3Reply(EngineError):
    """A POP3 -ERR answer; the caller decides what it means."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class TurnRefused(EngineError):
    """The ETRN/ODMR server refused (or cannot do) what we asked; the code is
    fetchmail's. Permanent when it wants authentication we cannot give."""

    def __init__(self, text: str, exit_code: ExitCode) -> None:
        super().__init__(text)
        self.exit_code = exit_code
        self.permanent = exit_code is ExitCode.AUTHFAIL


class MailboxInUse(EngineError):
    """The server says another session holds the mailbox ([IN-USE], [INUSE]).

    Not the Django side's ``services.MailboxBusy`` (our own lease is held).
    """

    exit_code = ExitCode.LOCKBUSY


class MessageFetchError(EngineError):
    """One message could not be read (-ERR to RETR, FETCH NIL); the others can."""

    exit_code = ExitCode.ERROR


class MessageTooLarge(MessageFetchError):
    pass


class ListenerError(EngineError):
    """The local SMTP/LMTP listener or the MDA failed; nothing is deleted for it."""

    exit_code = ExitCode.SMTP


class ListenerUnavailable(ListenerError):
    """No listener in the list accepted a connection: the poll stops here."""


class ListenerFault(ListenerError):
    """The conversation with the listener broke; this message is deferred."""


class UnexpectedReply(ListenerFault):
    """A well-formed reply that is neither the one the step requires nor a
    refusal: we cannot tell what the listener did, so the message is kept and
    the connection, whose state is now unknown, is dropped."""


class StaleConnection(ListenerError):
    """A kept listener connection failed before any of this message was sent."""
