"""The IDLE push process: one asyncio loop holding IDLE for many mailboxes.

Every ``interval`` seconds the supervisor reads which mailboxes it should hold
(enabled IMAP mailboxes with ``idle`` on, not paused, in its shard: ``id % N ==
K``) and starts, restarts (the row changed) or stops one watcher task each. A
watcher builds the engine's spec of the row (password, TLS, network policy:
``retrieval.services.specs.mailbox_spec``), holds IDLE with
:mod:`retrieval.push.client`, and on new mail asks the service for a poll with
trigger "push" (``services.mailbox_push_request``, which coalesces: one pending
push poll per mailbox). A dropped link is reconnected after a pause that doubles
up to ``backoff[1]``; a mailbox that cannot be held (no IDLE on the server, a
login this process does not do) is left to its schedule until the row changes.

The ORM runs in threads (``asyncio.to_thread``), never on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from retrieval import observability
from retrieval.push.client import REISSUE, FolderCount, IdleUnavailable, watch

if TYPE_CHECKING:
    from collections.abc import Callable

    from retrieval.engine.spec import MailboxSpec

logger = logging.getLogger("fetchweb.idle")

DB_TIMEOUT = 60.0  # seconds for one database call from the loop
# Sessions being set up at once (resolve, connect, TLS, login, EXAMINE): a start or
# a network blip with thousands of mailboxes does not open thousands at once.
MAX_STARTING = 50
# Stopping: rounds of cancelling the watchers still running, and seconds between.
CLOSE_ROUNDS = 10
CLOSE_WAIT = 0.5


# --- the database side (run in threads) ------------------------------------------------


def wanted_mailboxes(shard: int, shards: int) -> dict[int, str]:
    """{mailbox id: version} of the mailboxes this shard should hold; the version
    (the row's ``updated_at``) changes whenever the row is saved."""
    from django.db import connection
    from django.db.models.functions import Mod

    from retrieval.models import Mailbox

    try:
        rows = Mailbox.objects.filter(
            enabled=True,
            protocol=Mailbox.Protocol.IMAP,
            options__user__idle=True,
            owner__is_active=True,  # a disabled person's mailboxes are not polled
        ).exclude(health__in=(Mailbox.Health.PAUSED, Mailbox.Health.REAUTH))
        if shards > 1:
            rows = rows.annotate(shard=Mod("id", shards)).filter(shard=shard)
        return {
            pk: updated.isoformat()
            for pk, updated in rows.values_list("pk", "updated_at")
        }
    finally:
        connection.close()


def load_spec(mailbox_id: int) -> MailboxSpec:
    """The engine's spec of the row, with the service's guards (commands refused,
    network policy for non-superusers); IdleUnavailable when there is none."""
    from django.db import connection

    from retrieval.models import Mailbox
    from retrieval.services.specs import SpecError, mailbox_spec

    try:
        mailbox = Mailbox.objects.select_related("owner").get(pk=mailbox_id)
        return mailbox_spec(mailbox)
    except Mailbox.DoesNotExist as exc:
        raise IdleUnavailable("the mailbox no longer exists") from exc
    except SpecError as exc:
        raise IdleUnavailable(str(exc)) from exc
    finally:
        connection.close()


def queue_poll(mailbox_id: int) -> bool:
    from django.db import connection

    from retrieval import services

    try:
        return services.mailbox_push_request(mailbox_id=mailbox_id)
    finally:
        connection.close()


# --- the loop ------------------------------------------------------------------------


@dataclass
class Watch:
    version: str
    state: str = "connecting"  # connecting, idling, waiting, unavailable
    reason: str = ""
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Supervisor:
    def __init__(
        self,
        *,
        shard: int = 0,
        shards: int = 1,
        interval: float = 5.0,
        backoff: tuple[float, float] = (5.0, 600.0),
        reissue: float = REISSUE,
        wanted: Callable[[int, int], dict[int, str]] = wanted_mailboxes,
        load: Callable[[int], MailboxSpec] = load_spec,
        queue: Callable[[int], bool] = queue_poll,
        max_starting: int = MAX_STARTING,
    ) -> None:
        if not 0 <= shard < shards:
            raise ValueError("the shard must be K/N with 0 <= K < N")
        self.shard, self.shards = shard, shards
        self.interval = interval
        self.backoff = backoff
        self.reissue = reissue
        self._wanted, self._load, self._queue = wanted, load, queue
        self.watches: dict[int, Watch] = {}
        self.rounds = 0  # reconcile rounds done
        self.last_round: float | None = None  # loop time of the last good round
        self._stopped: list[asyncio.Task[None]] = []
        self._starting = asyncio.Semaphore(max_starting)

    # -- what the health endpoint and tests read

    def idling(self) -> set[int]:
        return {pk for pk, w in self.watches.items() if w.state == "idling"}

    def healthy(self) -> bool:
        if self.last_round is None:
            return False
        age = asyncio.get_running_loop().time() - self.last_round
        return age < max(3 * self.interval, 60.0)

    def status(self) -> dict[str, object]:
        return {
            "status": "ok" if self.healthy() else "fail",
            "shard": f"{self.shard}/{self.shards}",
            "mailboxes": len(self.watches),
            "idling": len(self.idling()),
            "rounds": self.rounds,
        }

    # -- the reconcile loop

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                await self.reconcile()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
        finally:
            await self.close()

    async def reconcile(self) -> None:
        try:
            wanted = await asyncio.wait_for(
                asyncio.to_thread(self._wanted, self.shard, self.shards), DB_TIMEOUT
            )
        except Exception:
            logger.exception("reading the IDLE mailboxes failed; retrying")
            return
        for pk in list(self.watches):
            if wanted.get(pk) != self.watches[pk].version:
                self._stop(pk)
        for pk, version in wanted.items():
            if pk not in self.watches:
                w = Watch(version=version)
                self.watches[pk] = w
                w.task = asyncio.create_task(self._hold(pk, w), name=f"idle-{pk}")
        self._stopped = [t for t in self._stopped if not t.done()]
        self._gauge()
        self.rounds += 1
        self.last_round = asyncio.get_running_loop().time()

    def _stop(self, pk: int) -> None:
        w = self.watches.pop(pk)
        if w.task is not None and not w.task.done():
            w.task.cancel()
            self._stopped.append(w.task)
        logger.info("mailbox %s: IDLE stopped (changed, disabled or removed)", pk)

    async def close(self) -> None:
        """Stop every watcher; returns once they are done (or, after
        CLOSE_ROUNDS, gives up on the few that are not, with a warning).

        Cancelled once, a watcher may go on: Python 3.11's ``asyncio.wait_for``
        returns the result instead of raising CancelledError when what it awaits
        completed in the same loop iteration as the cancel (a line read, a
        thread's database call; fixed in 3.12). The watcher then held IDLE again
        and this waited for it for ever: ``manage.py idle`` ignored SIGTERM until
        SIGKILL. So whatever is still running is cancelled again each round.
        """
        for pk in list(self.watches):
            self._stop(pk)
        pending = {task for task in self._stopped if not task.done()}
        for _ in range(CLOSE_ROUNDS):
            if not pending:
                break
            _, pending = await asyncio.wait(pending, timeout=CLOSE_WAIT)
            for task in pending:
                task.cancel()
        if pending:
            logger.warning("%d IDLE sessions did not stop when asked", len(pending))
        self._stopped = []
        self._gauge()

    def _gauge(self) -> None:
        observability.IDLE_CONNECTIONS.set(len(self.idling()))

    # -- one mailbox

    async def _hold(self, pk: int, w: Watch) -> None:
        known = FolderCount()
        delay = self.backoff[0]
        while True:
            w.state, held, slot = "connecting", [False], [True]
            await self._starting.acquire()

            def release(slot: list[bool] = slot) -> None:
                if slot[0]:
                    slot[0] = False
                    self._starting.release()

            def idling(state: str, held: list[bool] = held) -> None:
                held[0] = held[0] or state == "idling"
                if state == "idling":
                    release()
                w.state = state
                self._gauge()

            try:
                spec = await asyncio.wait_for(
                    asyncio.to_thread(self._load, pk), DB_TIMEOUT
                )
                await watch(
                    spec,
                    on_new_mail=partial(self._new_mail, pk),
                    on_idling=idling,
                    known=known,
                    reissue=self.reissue,
                )
            except IdleUnavailable as exc:
                w.state, w.reason = "unavailable", str(exc)
                self._gauge()
                logger.info(
                    "mailbox %s: not held in IDLE, polled on its schedule: %s", pk, exc
                )
                return
            except Exception as exc:
                w.reason = f"{type(exc).__name__}: {exc}"
                logger.warning("mailbox %s: IDLE link lost: %s", pk, w.reason)
            finally:
                release()
            if held[0]:
                delay = self.backoff[0]  # it worked: start the backoff again
            w.state = "waiting"
            self._gauge()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.backoff[1])

    async def _new_mail(self, pk: int) -> None:
        try:
            queued = await asyncio.wait_for(
                asyncio.to_thread(self._queue, pk), DB_TIMEOUT
            )
        except Exception:
            logger.exception("mailbox %s: queuing the push poll failed", pk)
            return
        logger.info(
            "mailbox %s: new mail; %s",
            pk,
            "push poll queued" if queued else "a push poll is already pending",
            extra={"event": "idle_new_mail", "mailbox_id": pk, "queued": queued},
        )


# --- the health endpoint (FETCH_IDLE_HEALTH) --------------------------------------------


async def serve_health(supervisor: Supervisor, host: str, port: int) -> asyncio.Server:
    """A minimal HTTP endpoint: 200 while reconcile rounds succeed, else 503."""

    async def answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            for _ in range(100):  # request line and headers, bounded
                line = await asyncio.wait_for(reader.readline(), 5.0)
                if line in (b"\r\n", b"\n", b""):
                    break
            status = supervisor.status()
            body = json.dumps(status).encode()
            code = "200 OK" if status["status"] == "ok" else "503 Service Unavailable"
            writer.write(
                f"HTTP/1.1 {code}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await asyncio.wait_for(writer.drain(), 5.0)
        except (OSError, TimeoutError, ValueError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, host, port, limit=8192)
