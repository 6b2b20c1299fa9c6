"""Delivery status notifications (RFC 3464) for messages refused for good.

Shaped like fetchmail's (``sink.c``: ``send_bouncemail``): a human-readable
part, a ``message/delivery-status`` part with one block per failed recipient,
and the original header block as ``text/rfc822-headers``. It is sent with the
null sender through the same listener as the mail, so it can never bounce back.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from retrieval.engine.deliver.sink import RecipientReply

MAX_ORIGINAL_HEADER = 64 * 1024
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")


class Bounce:
    """A DSN as a :class:`~retrieval.engine.deliver.sink.Deliverable`."""

    def __init__(
        self,
        *,
        to: str,
        failures: Sequence[RecipientReply],
        reason: str,
        reporting_host: str,
        original_header: bytes,
        when: datetime | None = None,
    ) -> None:
        self._data = _render(
            to=to,
            failures=failures,
            reason=reason,
            host=_line(reporting_host) or "localhost",
            original=original_header[:MAX_ORIGINAL_HEADER],
            when=when or datetime.now().astimezone(),
        )

    @property
    def needs_8bit(self) -> bool:
        return not self._data.isascii()

    @property
    def size(self) -> int:
        return len(self._data)

    def chunks(self, recipients: Sequence[str]) -> Iterator[bytes]:
        yield self._data


def _line(text: str, limit: int = 900) -> str:
    """One header-safe line: no control characters, bounded."""
    return _UNSAFE.sub(" ", text).strip()[:limit]


def status_code(reply: RecipientReply) -> str:
    """The enhanced status code of a reply, or one made from its class."""
    match = _ENHANCED.match(reply.text)
    if match and match.group(1) == str(reply.code)[:1]:
        return match.group(0)
    return f"{str(reply.code)[:1] or '5'}.0.0"


def _render(
    *,
    to: str,
    failures: Sequence[RecipientReply],
    reason: str,
    host: str,
    original: bytes,
    when: datetime,
) -> bytes:
    boundary = f"fetchweb-report-{secrets.token_hex(12)}"
    date = format_datetime(when)
    daemon = f"MAILER-DAEMON@{host}"
    human = [
        "This message was created automatically by mail delivery software.",
        "",
        "A message that you sent could not be delivered to one or more of its",
        "recipients. This is a permanent error.",
        "",
        f"Reason: {_line(reason)}",
        "",
        "The following address(es) failed:",
    ]
    machine = [f"Reporting-MTA: dns; {host}", f"Arrival-Date: {date}"]
    for failure in failures:
        diagnostic = _line(failure.shown())
        human += [f"  {_line(failure.recipient, 320)}", f"    {diagnostic}", ""]
        machine += [
            "",
            f"Final-Recipient: rfc822; {_line(failure.recipient, 320)}",
            "Action: failed",
            f"Status: {status_code(failure)}",
            f"Diagnostic-Code: smtp; {diagnostic}",
            f"Last-Attempt-Date: {date}",
        ]
    head = [
        f"From: Mail Delivery System <{daemon}>",
        f"To: <{_line(to, 320)}>",
        "Subject: Mail delivery failed: returning message to sender",
        f"Date: {date}",
        f"Message-ID: <{secrets.token_hex(16)}@{host}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
        "",
        "This is a MIME-encapsulated delivery status report.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        *human,
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        *machine,
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "",
    ]
    text = "\r\n".join(head).encode("utf-8", "replace") + b"\r\n"
    body = original.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return text + body + f"\r\n--{boundary}--\r\n".encode()
