"""A deterministic, realistic message mix, generated from a seed.

Every message is produced in its canonical wire form (CRLF line ends, as a
POP3/IMAP server serves it and as it must reach the listener) and never contains
a bare CR or LF, so the LF-only copy Dovecot keeps in a maildir converts back
exactly. The mix: mostly 2-20 KB text (some 8-bit, some lines starting with a dot
or "From "), and about one in fifteen a multipart message of 100 KB-2 MB with a
base64 attachment; with the default seed 2000 messages come to about 108 MB.

Generation is cheap (no per-word RNG calls): text comes from slices of one
shared pool of prose, attachments from ``Random.randbytes``.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING

from bench.verify import Expected

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TEXT_MIN, TEXT_MAX = 2_000, 20_000
ATTACH_MIN, ATTACH_MAX = 100_000, 2_000_000
ATTACH_SHARE = 0.068  # tuned so that the default 2000 messages are ~108 MB
_EPOCH = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)

_WORDS = [
    "the",
    "mailbox",
    "server",
    "message",
    "delivery",
    "poll",
    "queue",
    "header",
    "body",
    "retrieval",
    "fetch",
    "listener",
    "protocol",
    "invoice",
    "meeting",
    "report",
    "attached",
    "please",
    "find",
    "regards",
    "thanks",
    "tomorrow",
    "agenda",
    "budget",
    "quarter",
    "update",
    "review",
    "draft",
    "final",
    "version",
    "customer",
    "order",
    "shipment",
    "account",
    "password",
    "reset",
    "notice",
    "weekly",
    "summary",
    "project",
    "status",
    "café",
    "naïve",
    "Grüße",
    "déjà",
    "señor",
    "smörgåsbord",
]


@dataclass(frozen=True)
class Message:
    """One source message: its bytes as served, and what the checks need."""

    mid: str  # Message-ID including the angle brackets
    raw: bytes  # CRLF form

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def expected(self) -> Expected:
        return Expected.of(self.raw)


def _prose_pool(seed: str) -> bytes:
    """~256 KB of CRLF text lines (<= 78 chars), some 8-bit, some starting with a
    dot or "From " so that dot-stuffing and mbox quirks are exercised."""
    rng = random.Random(f"{seed}:pool")
    lines: list[str] = []
    size = 0
    while size < 256_000:
        roll = rng.random()
        if roll < 0.02:
            line = "." + " ".join(rng.choices(_WORDS, k=rng.randint(1, 8)))
        elif roll < 0.03:
            line = "From " + " ".join(rng.choices(_WORDS, k=rng.randint(1, 8)))
        elif roll < 0.08:
            line = ""
        else:
            words: list[str] = []
            while len(" ".join(words)) < rng.randint(30, 70):
                words.append(rng.choice(_WORDS))
            line = " ".join(words)
        lines.append(line)
        size += len(line.encode()) + 2
    return ("\r\n".join(lines) + "\r\n").encode()


class Corpus:
    """Messages for one mailbox: ``Corpus(seed, "bench0001").messages(n)`` always
    yields the same n messages, and the first k of n are the first k of n+1."""

    def __init__(self, seed: str, mailbox: str) -> None:
        self.seed = seed
        self.mailbox = mailbox
        self._pool = _prose_pool(seed)

    def _text(self, rng: random.Random, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            cut = self._pool.find(b"\r\n", rng.randrange(len(self._pool)))
            start = 0 if cut < 0 else cut + 2  # always start on a whole line
            out += self._pool[start : start + (size - len(out))]
        cut = out.rfind(b"\r\n")  # end on a whole line
        return bytes(out[: cut + 2]) if cut > 0 else b"short body\r\n"

    def _headers(self, rng: random.Random, n: int, mid: str) -> list[str]:
        when = _EPOCH + timedelta(seconds=n * 97 + rng.randrange(60))
        sender = f"sender{rng.randrange(500)}@example.net"
        return [
            f"Return-Path: <{sender}>",
            "Received: from mx.example.net (mx.example.net [192.0.2.25])\r\n"
            f"\tby mail.example.org with ESMTPS id {rng.getrandbits(48):012x}\r\n"
            f"\tfor <{self.mailbox}@example.org>; {format_datetime(when)}",
            f"Date: {format_datetime(when)}",
            f"From: Sender {sender.split('@')[0]} <{sender}>",
            f"To: {self.mailbox}@example.org",
            f"Subject: {' '.join(rng.choices(_WORDS, k=rng.randint(2, 7)))}",
            f"Message-ID: {mid}",
            "MIME-Version: 1.0",
        ]

    def message(self, n: int) -> Message:
        rng = random.Random(f"{self.seed}:{self.mailbox}:{n}")
        mid = f"<{n}.{self.mailbox}.{rng.getrandbits(32):08x}@bench.example.net>"
        head = self._headers(rng, n, mid)
        if rng.random() < ATTACH_SHARE:
            # log-uniform size: most attachments are small, a few are large
            total = int(
                math.exp(rng.uniform(math.log(ATTACH_MIN), math.log(ATTACH_MAX)))
            )
            raw = self._multipart(rng, head, total)
        else:
            size = rng.randint(TEXT_MIN, TEXT_MAX)
            head += [
                "Content-Type: text/plain; charset=utf-8",
                "Content-Transfer-Encoding: 8bit",
            ]
            top = ("\r\n".join(head) + "\r\n\r\n").encode()
            raw = top + self._text(rng, max(200, size - len(top)))
        return Message(mid=mid, raw=raw)

    def _multipart(self, rng: random.Random, head: list[str], total: int) -> bytes:
        boundary = f"=_bench_{rng.getrandbits(64):016x}"
        head += [f'Content-Type: multipart/mixed; boundary="{boundary}"']
        text = self._text(rng, rng.randint(500, 4000))
        payload_len = max(1, (total - len(text) - 1000) * 3 // 4)
        encoded = base64.encodebytes(rng.randbytes(payload_len)).replace(b"\n", b"\r\n")
        parts = [
            (
                "\r\n".join(head)
                + "\r\n\r\nThis is a multi-part message in MIME format.\r\n"
            ).encode(),
            f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n".encode(),
            text,
            f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            f'Content-Disposition: attachment; filename="file{rng.randrange(10**6)}.bin"'
            "\r\n\r\n".encode(),
            encoded,
            f"--{boundary}--\r\n".encode(),
        ]
        return b"".join(parts)

    def messages(self, count: int) -> Iterator[Message]:
        for n in range(count):
            yield self.message(n)


def write_big(path: Path, size: int, seed: str, mailbox: str) -> tuple[str, Expected]:
    """Write one ~``size``-byte message with a base64 attachment straight to a
    maildir file (LF line ends), never holding it whole, hashing the CRLF form
    on the way. Returns its Message-ID and what the listener must receive."""
    rng = random.Random(f"{seed}:{mailbox}:big")
    mid = f"<big.{mailbox}.{rng.getrandbits(32):08x}@bench.example.net>"
    boundary = f"=_bench_big_{rng.getrandbits(64):016x}"
    head = (
        f"From: Big Sender <big@example.net>\r\nTo: {mailbox}@example.org\r\n"
        f"Subject: one large attachment\r\nDate: {format_datetime(_EPOCH)}\r\n"
        f"Message-ID: {mid}\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n"
        f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        'Content-Disposition: attachment; filename="big.bin"\r\n\r\n'
    ).encode()
    tail = f"--{boundary}--\r\n".encode()
    digest = hashlib.sha256()
    crlf_size = 0
    # 57 raw bytes make one 76-character base64 line (78 with CRLF)
    remaining = max(1, (size - len(head) - len(tail)) // 78) * 57
    with path.open("wb") as f:

        def put(chunk: bytes) -> None:
            nonlocal crlf_size
            digest.update(chunk)
            crlf_size += len(chunk)
            f.write(chunk.replace(b"\r\n", b"\n"))

        put(head)
        while remaining > 0:
            raw = rng.randbytes(min(57 * 4096, remaining))
            remaining -= len(raw)
            put(base64.encodebytes(raw).replace(b"\n", b"\r\n"))
        put(tail)
    return mid, Expected(crlf_size, digest.hexdigest())
