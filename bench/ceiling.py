"""The ceiling: Python's own poplib (or imaplib) downloading the mailbox, nothing more.

No delivery, no delete, no ledger: RETR (UID FETCH BODY.PEEK[]) every message
over one connection, one at a time, as the standard library does it. What a
Python client cannot beat on this machine without pipelining; the fetchweb
tools are compared with it in the "Cost per message" section.

Run: ``python -m bench.ceiling JOB.json``. Exit 0 when every message listed
was downloaded (and at least one was).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from bench.baseline import connect_imap, connect_pop3, run_job

if TYPE_CHECKING:
    from bench.job import Job


def pop3(job: Job, user: str) -> int:
    box = connect_pop3(job, user)
    count, _ = box.stat()
    for n in range(1, count + 1):
        _, lines, _ = box.retr(n)
        if not lines:
            raise RuntimeError(f"message {n} came back empty")
    box.quit()
    return count


def imap(job: Job, user: str) -> int:
    box = connect_imap(job, user)
    _, found = box.uid("SEARCH", "ALL")
    uids = found[0].split() if found and found[0] else []
    for uid in uids:
        _, data = box.uid("FETCH", uid, "(BODY.PEEK[])")
        if not any(isinstance(part, tuple) for part in data):
            raise RuntimeError(f"UID {uid!r} came back empty")
    box.logout()
    return len(uids)


def main(argv: list[str] | None = None) -> int:
    return run_job(argv, pop3, imap, "downloaded")


if __name__ == "__main__":
    sys.exit(main())
