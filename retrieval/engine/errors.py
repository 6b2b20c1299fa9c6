"""One exception hierarchy for everything the network, a server or a listener can do.

Each error carries the fetchmail exit code it maps to and a sentence a mail user
understands; :func:`retrieval.engine.run.poll` turns the first one that ends a poll
into the report's ``exit_code`` and ``error``. Nothing outside the engine needs to
catch these: ``poll`` never lets them escape.
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
    exit_code = ExitCode.DNS


class TransportError(EngineError):
    """Refused, reset, timed out or unreadable connection to the mail server."""

    exit_code = ExitCode.SOCKET


class TimeoutFault(TransportError):
    pass


class TlsError(TransportError):
    """Handshake or certificate failure, or a TLS policy the server cannot meet."""


class AuthError(EngineError):
    exit_code = ExitCode.AUTHFAIL
    permanent = True


class ProtocolError(EngineError):
    """The server said something a correct server would not say."""

    exit_code = ExitCode.PROTOCOL


class ServerError(EngineError):
    """The server answered an error to a command that should work (SELECT, UIDL...)."""

    exit_code = ExitCode.ERROR


class MailboxBusy(EngineError):
    """The server says another session holds the mailbox ([IN-USE], [INUSE])."""

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
