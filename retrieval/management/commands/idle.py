"""manage.py idle [--shard K/N] [--health HOST:PORT]: the IDLE push process.

Holds IMAP IDLE for every enabled IMAP mailbox with ``idle`` on (not paused) in
its shard (``id % N == K``; run N processes, on as many hosts, for K = 0..N-1)
and queues a poll with trigger "push" when new mail comes. Runs until SIGINT or
SIGTERM. See retrieval/push/supervisor.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from retrieval import observability
from retrieval.push.client import use_small_tls_buffers
from retrieval.push.supervisor import Supervisor, serve_health


def _shard(text: str) -> tuple[int, int]:
    k, sep, n = text.partition("/")
    try:
        shard, shards = int(k), int(n)
    except ValueError:
        raise CommandError(f"--shard {text!r}: write K/N, e.g. 0/2") from None
    if not sep or shards < 1 or not 0 <= shard < shards:
        raise CommandError(f"--shard {text!r}: needs 0 <= K < N")
    return shard, shards


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return host.strip("[]") or "127.0.0.1", int(port)
    except ValueError:
        raise CommandError(f"--health {text!r}: write HOST:PORT") from None


class Command(BaseCommand):
    help = (
        "Hold IMAP IDLE for idle-enabled mailboxes and queue a poll on new mail "
        "(runs until stopped)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--shard",
            default="0/1",
            help="K/N: hold the mailboxes whose id %% N == K (default 0/1, all).",
        )
        parser.add_argument(
            "--health",
            default="",
            metavar="HOST:PORT",
            help="Answer GET /healthz here (200 while it works); FETCH_IDLE_HEALTH "
            "points /healthz of the web service at it.",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=None,
            help="Seconds between two reads of the mailboxes "
            "(FETCH_IDLE_RECONCILE_SECONDS, default 5).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        shard, shards = _shard(options["shard"])
        health = _address(options["health"]) if options["health"] else None
        interval = options["interval"] or settings.FETCH_IDLE_RECONCILE_SECONDS
        observability.clear_own_files()
        use_small_tls_buffers()
        supervisor = Supervisor(shard=shard, shards=shards, interval=interval)
        self.stdout.write(f"fetchweb idle: shard {shard}/{shards}")
        asyncio.run(self._main(supervisor, health))

    async def _main(
        self, supervisor: Supervisor, health: tuple[str, int] | None
    ) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        server = await serve_health(supervisor, *health) if health else None
        try:
            await supervisor.run(stop)
        finally:
            if server is not None:
                server.close()
