"""A worker that dies at one step: ``manage.py poll MAILBOX_ID`` whose engine is
given a step observer that SIGKILLs the process (tests/live/test_crash_ledger.py).

``python -m tests.live.crash_poll_driver MAILBOX_ID STEP [NTH [PIPELINE_AFTER]]``:
killed the NTH time (default the second) the engine reaches STEP; with
PIPELINE_AFTER, the ledger sends its marks without waiting for each answer after
that many (retrieval/services/pipelined.py). Everything else is
the real command: the database ledger, the lease and the advisory lock, the run
record; the database is the one ``DATABASE_URL`` names.
"""

from __future__ import annotations

import os
import signal
import sys
from functools import partial


def main(mailbox_id: str, step: str, nth: str = "", pipeline_after: str = "") -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fetchweb.settings")
    import django

    django.setup()
    from django.core.management import execute_from_command_line

    from retrieval.services import polls, ports
    from tests.live.test_crash_invariants import CRASH_ON, Crash

    if pipeline_after:
        ports.PIPELINE_AFTER = int(pipeline_after)

    crash = Crash(
        step, lambda: os.kill(os.getpid(), signal.SIGKILL), int(nth or CRASH_ON)
    )
    # The service's one call into the engine, with the observer added.
    setattr(polls, "engine_poll", partial(polls.engine_poll, observe=crash))  # noqa: B010
    # Without the deployment checks, which DEBUG off asks of a real deployment.
    execute_from_command_line(["manage.py", "poll", "--skip-checks", mailbox_id])


if __name__ == "__main__":
    main(*sys.argv[1:5])
