"""Keeping credentials out of transcripts, reports and logs without revealing them.

The one who sends a secret masks it: sessions write ``PASS ********``,
``AUTHENTICATE PLAIN ********`` and ``********`` for SASL responses through
``send_line(..., shown=...)``, because only the sender knows which argument is
secret. Nothing is ever masked by replacing a substring of what someone else
wrote: with the password ``mail``, "mailbox" turned into "********box" tells
every reader the password, and a substring search misses the secret in the
forms a server may echo it (inside a base64 blob at any byte alignment, an IMAP
quoted string with its escapes).

So :class:`RedactingTranscript` does two things:

* during an AUTH/AUTHENTICATE exchange every server continuation (``+ ...``,
  ``334 ...``) is recorded as masked: a challenge may carry our own answer back;
* any line, from either side, that contains a secret in one of its forms is
  replaced whole by a fixed note (:data:`WITHHELD`). The note says a line was
  withheld and nothing about where in it the secret sat.

:class:`SecretMatcher` is the test for "contains a secret", shared with the
Django transcript adapter and the report fields.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING

from retrieval.engine.ports import keeps_lines

if TYPE_CHECKING:
    from collections.abc import Iterable

    from retrieval.engine.ports import Direction, Transcript

MASK = "********"
# Lines are cut here so that a hostile server cannot fill the transcript store.
MAX_TRANSCRIPT_LINE = 1000
WITHHELD = {
    "S": "[server line withheld: it echoed the credential]",
    "C": "[client line withheld: it carried the credential]",
    "*": "[note withheld: it contained the credential]",
}
WITHHELD_TEXT = "[withheld: it contained the credential]"

# Runs of base64 (standard and URL-safe alphabets, with padding) inside a line.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{2,}={0,2}")
# The URL-safe base64 alphabet's two letters, as the standard alphabet spells them.
_URL_SAFE = str.maketrans("-_", "+/")
# A client line that starts a SASL exchange: POP3/SMTP "AUTH mech", IMAP
# "tag AUTHENTICATE mech". A bare POP3 "AUTH" (list mechanisms) is not one.
_AUTH_START = re.compile(r"^(?:\S+ )?AUTH(?:ENTICATE)? \S", re.IGNORECASE)


def imap_quoted(secret: str) -> str:
    """The inside of an IMAP quoted string carrying ``secret`` (RFC 3501 9)."""
    return secret.replace("\\", "\\\\").replace('"', '\\"')


class SecretMatcher:
    """Does a text carry any of the secrets, in any form they take on a wire?

    Forms: the secret itself (also what an IMAP literal carries), its IMAP
    quoted form with escapes, and its UTF-8 bytes inside base64 at any of the
    three byte alignments (a SASL PLAIN blob puts the password after
    ``authzid NUL user NUL``, so where it starts depends on the user name).
    Base64 is checked by decoding every base64-looking run of the text from
    each of its four character offsets, which finds a secret of any length,
    even one byte, where matching a fixed encoded fragment could not.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._texts: set[str] = set()
        self._raw: set[bytes] = set()
        # For each secret, the base64 text its whole 3-byte groups encode to at
        # each of the three byte alignments; None once a secret is too short to
        # have a group at every alignment (then every run is decoded).
        self._cores: list[str] | None = []
        # The same two tests as one regular expression each: a line is searched
        # once, in C, not once per form (every line of every poll is checked).
        self._any_text = _NOTHING
        self._any_core = _NOTHING
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        if not secret:
            return
        self._texts.add(secret)
        self._texts.add(imap_quoted(secret))
        raw = secret.encode("utf-8")
        self._raw.add(raw)
        cores = [_core(raw[shift:]) for shift in range(3)]
        if self._cores is not None and all(cores):
            self._cores.extend(cores)
            self._any_core = _any_of(self._cores)
        else:
            self._cores = None
        self._any_text = _any_of(self._texts)

    def __bool__(self) -> bool:
        return bool(self._texts)

    def found_in(self, text: str) -> bool:
        if not self._texts:
            return False
        if self._any_text.search(text):
            return True
        if self._cores is not None:
            # The check of _in_base64 on the whole line at once: a run carrying
            # a secret holds one of its cores, and so does the line around it.
            # Most lines have none, and are done without finding their runs.
            normal = text.translate(_URL_SAFE) if "-" in text or "_" in text else text
            if not self._any_core.search(normal):
                return False
        return any(self._in_base64(run) for run in _BASE64_RUN.findall(text))

    def _in_base64(self, run: str) -> bool:
        run = run.rstrip("=").replace("-", "+").replace("_", "/")
        if self._cores is not None and not self._any_core.search(run):
            # Wherever a secret sits in the decoded bytes, its whole 3-byte
            # groups are encoded as one of its cores: no core, no secret. This
            # spares decoding every run of every line (most of a poll's CPU).
            return False
        for offset in range(4):
            chunk = run[offset:]
            usable = len(chunk) - len(chunk) % 4
            tail = chunk[usable:]
            # A last group of 2 or 3 characters still decodes to 1 or 2 bytes.
            chunk = chunk[:usable] + (
                tail + "=" * (4 - len(tail)) if len(tail) > 1 else ""
            )
            if not chunk:
                continue
            try:
                decoded = base64.b64decode(chunk)
            except (binascii.Error, ValueError):
                continue
            if any(raw in decoded for raw in self._raw):
                return True
        return False

    def scrub(self, text: str, withheld: str = WITHHELD_TEXT) -> str:
        """``text`` unchanged, or ``withheld`` when it carries a secret."""
        return withheld if self.found_in(text) else text


_NOTHING = re.compile(r"(?!)")  # matches no text


def _any_of(forms: Iterable[str]) -> re.Pattern[str]:
    """A pattern found in a text exactly when one of ``forms`` is."""
    return re.compile("|".join(re.escape(form) for form in forms))


def _core(raw: bytes) -> str:
    """The base64 of ``raw``'s whole 3-byte groups from its first byte on."""
    return base64.b64encode(raw[: len(raw) - len(raw) % 3]).decode()


class RedactingTranscript:
    """Implements :class:`~retrieval.engine.ports.Transcript` on top of another one."""

    def __init__(self, inner: Transcript, secrets: Iterable[str] = ()) -> None:
        self._inner = inner
        self._matcher = SecretMatcher(secrets)
        self._in_auth = False
        self._kept_all = False

    @property
    def keeps(self) -> bool:
        """Nothing to check or cut for a transcript that keeps nothing (more):
        asked each time, since a bounded one stops keeping once it is full
        (and never starts again)."""
        if self._kept_all:
            return False
        if keeps_lines(self._inner):
            return True
        self._kept_all = True
        return False

    def mask(self, text: str) -> str:
        """For report fields that carry server words (greeting, errors, replies):
        the text unchanged, or a fixed note when it carries a secret."""
        return self._matcher.scrub(text)

    def record(self, direction: Direction, text: str) -> None:
        if not self.keeps:
            return
        text = self._during_auth(direction, text)
        if self._matcher.found_in(text):
            text = WITHHELD[direction]
        if len(text) > MAX_TRANSCRIPT_LINE:
            text = f"{text[:MAX_TRANSCRIPT_LINE]}... ({len(text)} characters)"
        self._inner.record(direction, text)

    def _during_auth(self, direction: Direction, text: str) -> str:
        """Mask server challenges between our AUTH command and the final reply."""
        if direction == "C":
            if _AUTH_START.match(text):
                self._in_auth = True
            return text
        if direction != "S" or not self._in_auth:
            return text
        if text == "+" or text.startswith(("+ ", "334 ", "334-")):
            return f"{text[:3]} {MASK}" if text[0] == "3" else f"+ {MASK}"
        if not text.startswith("* "):  # an untagged IMAP line changes nothing
            self._in_auth = False
        return text
