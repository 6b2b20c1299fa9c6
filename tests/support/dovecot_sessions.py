"""Dovecot's own account of who was logged in when: sessions read from its log.

With ``SESSION_LOG_CONFIG`` (tests/support/dovecot.py) every login is logged as
``<date> <time.usecs> imap-login: Info: Login: user=<u>, method=M, ...,
session=<S>`` and every end of a logged-in session as ``<date> <time.usecs>
imap(u)<pid><S>: Info: Disconnected: ...``. This module pairs them by session
id, so a test (tests/live/test_two_hosts.py) or a benchmark (bench/idle.py) can
say which sessions a user had and whether any two overlapped, from the server's
side rather than from our own records.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

_STAMP = r"(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6})"
_LOGIN = re.compile(
    _STAMP + r" (?P<proto>imap|pop3)-login: Info: Login: user=<(?P<user>[^>]*)>, "
    r"method=(?P<method>[^,]+),.*session=<(?P<session>[^>]+)>"
)
_END = re.compile(
    _STAMP + r" (?P<proto>imap|pop3)\((?P<user>[^)]*)\)<\d+><(?P<session>[^>]+)>: "
    r"Info: Disconnected"
)
_SAVED = re.compile(
    _STAMP + r" lmtp\((?P<rcpt>[^)]*)\)<\d+><[^>]+>: Info: msgid=(?P<msgid><[^>]*>): "
    r"saved mail to"
)


@dataclass
class Session:
    user: str
    protocol: str
    method: str
    session: str
    start: datetime
    end: datetime | None = None  # None: still logged in when the log was read

    def overlaps(self, other: Session) -> bool:
        forever = datetime.max
        return self.start < (other.end or forever) and other.start < (
            self.end or forever
        )


def _moment(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f")


def sessions(log: str) -> list[Session]:
    """Every logged-in session of the log, in the order of their logins.

    The login is logged by the login process and the end by the session's own,
    so a session over within a fraction of a millisecond may have its end
    written first: ends are matched by session id wherever they stand, and an
    end stamped before its login counts as at the login."""
    found: dict[str, Session] = {}
    ends: dict[str, datetime] = {}
    for line in log.splitlines():
        if (login := _LOGIN.match(line)) is not None:
            found[login["session"]] = Session(
                user=login["user"],
                protocol=login["proto"],
                method=login["method"],
                session=login["session"],
                start=_moment(login["at"]),
            )
        elif (end := _END.match(line)) is not None:
            ends[end["session"]] = _moment(end["at"])
    for session_id, session in found.items():
        if session_id in ends:
            session.end = max(ends[session_id], session.start)
    return sorted(found.values(), key=lambda s: s.start)


def overlapping(found: list[Session]) -> list[tuple[Session, Session]]:
    """Pairs of sessions of the same user that were logged in at the same time."""
    by_user: dict[str, list[Session]] = defaultdict(list)
    for session in found:
        by_user[session.user].append(session)
    pairs = []
    for mine in by_user.values():
        mine.sort(key=lambda s: s.start)
        for i, first in enumerate(mine):
            for second in mine[i + 1 :]:
                if first.overlaps(second):
                    pairs.append((first, second))
    return pairs


def saved(log: str) -> dict[str, datetime]:
    """{Message-ID: when Dovecot's LMTP saved it} (the first time, if twice)."""
    moments: dict[str, datetime] = {}
    for line in log.splitlines():
        if (match := _SAVED.match(line)) is not None:
            moments.setdefault(match["msgid"], _moment(match["at"]))
    return moments
