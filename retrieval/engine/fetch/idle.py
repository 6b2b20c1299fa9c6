"""IMAP IDLE (RFC 2177): after a poll, wait on one folder and fetch what arrives.

How a caller bounds it (fetchmail's ``idle`` runs until killed; a service and
its tests cannot):

* ``MailboxSpec.idle`` turns it on; it needs IMAP and exactly one folder
  (fetchmail refuses more with exit code 5, so does :func:`check`);
* ``MailboxSpec.idle_rounds`` caps the number of IDLE waits (0 = no cap);
* ``poll(..., stop=callable)`` is asked about once a second while waiting and
  between rounds; when it returns True the poll logs out and reports;
* each wait is re-issued after ``MailboxSpec.idle_reissue`` seconds (29 minutes
  by default: RFC 2177 servers may drop a client idle for 30).

Before each wait the deletes are committed (EXPUNGE) and the listener
connection is closed, as fetchmail closes its SMTP connection before idling.
A server without IDLE is watched with NOOP, as fetchmail does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrieval.engine.errors import ConfigError
from retrieval.engine.fetch.imap import ImapSession
from retrieval.engine.spec import MailProtocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from retrieval.engine.fetch.session import MailSession
    from retrieval.engine.spec import MailboxSpec


def check(spec: MailboxSpec) -> str:
    """Refuse what idle cannot do; returns a note when idle will be ignored."""
    if not spec.idle:
        return ""
    if spec.server.protocol is not MailProtocol.IMAP:
        return "The option idle works with IMAP only; this poll ran once."
    if len(spec.folders) > 1:
        raise ConfigError(
            "The option idle watches one folder; this mailbox names "
            f"{len(spec.folders)}. Use one folder, or turn idle off."
        )
    return ""


def never() -> bool:
    return False


def watch(
    spec: MailboxSpec,
    session: MailSession,
    *,
    settle: Callable[[], None],
    again: Callable[[], None],
    stop: Callable[[], bool] | None = None,
    note: Callable[[str], None],
) -> None:
    """Wait for new mail and call ``again`` for each arrival, within the bounds.

    ``settle`` commits what the last round did (deletes, listener) before a wait.
    """
    if not spec.idle or not isinstance(session, ImapSession):
        return
    stop = stop or never
    rounds = 0
    while not stop() and (not spec.idle_rounds or rounds < spec.idle_rounds):
        settle()
        rounds += 1
        if session.wait_for_news(spec.idle_reissue, stop):
            note(f"idle round {rounds}: new mail")
            again()
        else:
            note(f"idle round {rounds}: nothing new")
