"""One poll timed inside a process that has already started, as a worker has.

``manage.py poll`` and the engine command are timed from spawn to exit, so both
include their start-up (Django's is 0.6 s of CPU, the engine's 0.15 s), which a
Celery worker pays once, not per poll. This module times the call alone:

``python -m bench.warm engine OUT.json -- ENGINE ARGS``: ``retrieval.cli.main``
in this process (the engine command without Python's and the imports' start);

``python -m bench.warm poll OUT.json MAILBOX_ID``: ``services.mailbox_poll``
(what the Celery task calls) with Django set up, the poll's modules imported and
the database connection open, as in a worker that has served a poll before.

Both write ``{"wall_s", "user_s", "sys_s", "exit_code"}`` for the call alone to
OUT.json; :mod:`bench.tools` turns that into the run's measurement. With
``BENCH_WARM_PROFILE=FILE`` in the environment the call runs under cProfile and
its stats go to FILE (the figures then include the profiler's cost).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


def timed(call: Callable[[], int]) -> dict[str, float | int]:
    before = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    code = call()
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall_s": wall,
        "user_s": after.ru_utime - before.ru_utime,
        "sys_s": after.ru_stime - before.ru_stime,
        "exit_code": code,
    }


def _import_engine() -> None:
    """What a run imports on its way to the first connection."""
    import retrieval.engine.deliver.smtp
    import retrieval.engine.fetch.imap
    import retrieval.engine.fetch.pop3
    import retrieval.engine.run  # noqa: F401


def _engine(args: list[str]) -> Callable[[], int]:
    _import_engine()
    from retrieval.cli.main import main

    return lambda: main(args)


def _poll(mailbox_id: int) -> Callable[[], int]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fetchweb.settings")

    django.setup()
    from django.db import connection

    import retrieval.services.polls
    import retrieval.tasks  # noqa: F401 - a worker has loaded its tasks
    from retrieval.models import PollRun
    from retrieval.services import mailbox_poll

    _import_engine()
    connection.ensure_connection()

    def call() -> int:
        summary = mailbox_poll(mailbox_id=mailbox_id, trigger=PollRun.Trigger.SCHEDULE)
        return 1 if summary.outcome == PollRun.Outcome.ERROR else 0  # as manage.py poll

    return call


def main(argv: list[str]) -> int:
    kind, out, *rest = argv
    if kind == "engine":
        call = _engine(rest[1:] if rest[:1] == ["--"] else rest)
    elif kind == "poll":
        call = _poll(int(rest[0]))
    else:
        raise SystemExit(f"unknown kind {kind!r}: engine or poll")
    profile = os.environ.get("BENCH_WARM_PROFILE")  # a path: cProfile the call
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        result = timed(lambda: profiler.runcall(call))
        profiler.dump_stats(profile)
    else:
        result = timed(call)
    Path(out).write_text(json.dumps(result))
    return int(result["exit_code"])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
