"""A transcript wrapper that masks secrets in every line, whoever wrote it.

Sessions already write ``PASS ********`` themselves; this is the second belt: a
server that echoes the password back in an error (catalogue case 36), or a SASL
blob that carries it in base64, is masked too before the line leaves the engine.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from retrieval.engine.ports import Direction, Transcript

MASK = "********"
# Lines are cut here so that a hostile server cannot fill the transcript store.
MAX_TRANSCRIPT_LINE = 1000


class RedactingTranscript:
    """Implements :class:`~retrieval.engine.ports.Transcript` on top of another one."""

    def __init__(self, inner: Transcript, secrets: Iterable[str] = ()) -> None:
        self._inner = inner
        self._secrets: list[str] = []
        for secret in secrets:
            self.add_secret(secret)

    def add_secret(self, secret: str) -> None:
        """Mask ``secret`` and the forms it takes on the wire (base64 in SASL)."""
        if len(secret) < 1:
            return
        self._secrets.append(secret)
        encoded = base64.b64encode(secret.encode()).decode()
        # Only the middle of a base64 rendering is stable when the secret sits
        # inside a larger blob; full-blob masking is done by the sessions.
        if len(encoded) > 8:
            self._secrets.append(encoded.rstrip("="))
        # Longest first, so that a secret containing another is masked whole.
        self._secrets.sort(key=len, reverse=True)

    def mask(self, text: str) -> str:
        """``text`` with every known secret replaced by the mask."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def record(self, direction: Direction, text: str) -> None:
        text = self.mask(text)
        if len(text) > MAX_TRANSCRIPT_LINE:
            text = f"{text[:MAX_TRANSCRIPT_LINE]}... ({len(text)} characters)"
        self._inner.record(direction, text)
