"""Is a delivered message exactly a source message plus trace headers?

The listener knows, from a manifest, the size and SHA-256 of every source
message by Message-ID. A delivered message passes when its last ``size`` bytes
hash to the source's digest and everything before them is trace header fields
that a client or an LMTP server prepends (Received:, and Return-Path: and
Delivered-To: from Dovecot's LMTP). Source messages may themselves start with
such fields: comparing the tail of known length sidesteps guessing where the
added ones end.

A client may also drop the source's own leading Return-Path: field (fetchmail
does: it turns it into the envelope sender, and the final MTA adds a new one).
That is a trace field too, so the manifest also knows the digest of the source
without it; such a delivery passes, with a note saying so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

TRACE_FIELDS = (b"received:", b"return-path:", b"delivered-to:")
_MID = re.compile(rb"(?im)^message-id:[ \t]*(<[^>\r\n]*>)")


@dataclass(frozen=True)
class Expected:
    size: int
    sha256: str
    # the same without a leading Return-Path: field, when the source has one
    bare_size: int | None = None
    bare_sha256: str | None = None

    @classmethod
    def of(cls, raw: bytes) -> Expected:
        bare = _without_return_path(raw)
        if bare is None:
            return cls(len(raw), _sha(raw))
        return cls(len(raw), _sha(raw), len(bare), _sha(bare))


def _sha(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def _without_return_path(raw: bytes) -> bytes | None:
    if raw[:12].lower() != b"return-path:":
        return None
    end = raw.find(b"\r\n")
    while raw[end + 2 : end + 3] in (b" ", b"\t"):  # folded continuation
        end = raw.find(b"\r\n", end + 2)
    return raw[end + 2 :]


@dataclass(frozen=True)
class Verdict:
    mid: str | None
    ok: bool
    why: str = ""  # the problem, or a note on a passing delivery


class Manifest(dict[str, Expected]):
    """Message-ID -> what its delivery must end with."""

    def dump(self, path: Path) -> None:
        rows = {mid: dataclasses.astuple(e) for mid, e in self.items()}
        path.write_text(json.dumps(rows))

    @classmethod
    def load(cls, path: Path) -> Manifest:
        return cls(
            (mid, Expected(*row)) for mid, row in json.loads(path.read_text()).items()
        )

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.values())


def message_id(raw: bytes | bytearray) -> str | None:
    """The first Message-ID field of the header section (trace fields that may
    precede it never contain one)."""
    end = raw.find(b"\r\n\r\n")
    match = _MID.search(raw, 0, len(raw) if end < 0 else end + 2)
    return match.group(1).decode("ascii", "replace") if match else None


def is_trace_prefix(prefix: bytes | bytearray) -> bool:
    """Only whole trace header fields (with folded continuation lines)."""
    if not prefix:
        return True
    if not prefix.endswith(b"\r\n"):
        return False
    for line in prefix[:-2].split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            continue
        if not line.lower().startswith(TRACE_FIELDS):
            return False
    return prefix[:1] not in (b" ", b"\t")


def check(raw: bytes | bytearray, manifest: Manifest) -> Verdict:
    mid = message_id(raw)
    if mid is None:
        return Verdict(None, False, "no Message-ID")
    expected = manifest.get(mid)
    if expected is None:
        return Verdict(mid, False, "Message-ID not in the source mailbox")
    verdict = _tail(raw, mid, expected.size, expected.sha256)
    if verdict.ok or expected.bare_size is None or expected.bare_sha256 is None:
        return verdict
    bare = _tail(raw, mid, expected.bare_size, expected.bare_sha256)
    if bare.ok:
        return Verdict(mid, True, "Return-Path dropped")
    return verdict


def _tail(raw: bytes | bytearray, mid: str, size: int, digest: str) -> Verdict:
    cut = len(raw) - size
    if cut < 0:
        return Verdict(mid, False, f"{-cut} bytes short")
    if _sha(memoryview(raw)[cut:]) != digest:
        return Verdict(mid, False, "body differs from the source")
    if not is_trace_prefix(raw[:cut]):
        head = bytes(raw[:cut][:120]).decode("ascii", "replace")
        return Verdict(mid, False, f"non-trace bytes added in front: {head!r}")
    return Verdict(mid, True)
