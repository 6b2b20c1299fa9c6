"""Log in and out without fetching: the "Test connection" button of the web pages.

The session is opened exactly as a poll opens it (the TLS policy, STARTTLS before
any credential, the configured mechanism never replaced by a weaker one), then
ended at once. No folder is opened, so nothing is listed, read, marked or
deleted, and no listener is contacted; a mailbox delivered into (delivery kind
IMAP) is logged in to and out of in the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from retrieval.engine.append import AppendSink
from retrieval.engine.errors import EngineError
from retrieval.engine.fetch.session import open_session
from retrieval.engine.memory import ListTranscript
from retrieval.engine.redact import RedactingTranscript
from retrieval.engine.spec import DeliveryKind

if TYPE_CHECKING:
    from retrieval.engine.ports import Progress, Transcript
    from retrieval.engine.spec import MailboxSpec


class LoginCheck(NamedTuple):
    ok: bool
    greeting: str  # the server's first line, secrets masked; "" if none came
    error: str  # plain words when not ok, secrets masked


def check_login(
    spec: MailboxSpec,
    transcript: Transcript | None = None,
    progress: Progress | None = None,
) -> LoginCheck:
    """Connect, secure and log in with ``spec``'s settings, then log out;
    ``progress`` is told the session's steps as they happen."""
    wire = RedactingTranscript(
        transcript if transcript is not None else ListTranscript(), spec.secrets()
    )
    greeting = ""

    def greeted(text: str) -> None:
        nonlocal greeting
        greeting = text

    try:
        session = open_session(spec, wire, on_greeting=greeted, on_step=progress)
    except EngineError as exc:
        return LoginCheck(
            ok=False, greeting=wire.mask(greeting), error=wire.mask(str(exc))
        )
    if progress is not None:
        progress("logging_out")
    try:
        session.logout()
    except EngineError:
        # The login worked; a rude goodbye does not change the answer.
        session.abort()
    shown = wire.mask(session.greeting or greeting)
    target = spec.delivery.mailbox
    if spec.delivery.kind is DeliveryKind.IMAP and target is not None:
        # Delivery into a mailbox: its login is as much a part of the setup.
        try:
            AppendSink(target, wire).check()
        except EngineError as exc:
            return LoginCheck(ok=False, greeting=shown, error=wire.mask(str(exc)))
    return LoginCheck(ok=True, greeting=shown, error="")
