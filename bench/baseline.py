"""The obvious Python client, for context: poplib/imaplib in, smtplib out.

What anyone would write in an afternoon with the standard library: one message
at a time, RETR (or UID FETCH BODY.PEEK[]) it whole into memory, prepend a
Received: line, ``sendmail`` it over one SMTP (or LMTP) connection per mailbox,
then DELE (or flag \\Deleted, expunged at the end). No pipelining, no
streaming, no tuning.

Run: ``python -m bench.baseline JOB.json`` (written by the harness; see
:class:`bench.job.Job`). Exit 0 when everything was delivered.
"""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import ssl
import sys
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING

from bench.job import Job

if TYPE_CHECKING:
    from collections.abc import Callable

SENDER = "bench@example.org"


def _trace(job: Job, protocol: str) -> bytes:
    return (
        f"Received: from {job.host} by bench-baseline with {protocol}"
        f" for <{job.recipient}>; {formatdate(usegmt=True)}\r\n"
    ).encode()


def _tls(job: Job) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=job.ca_file)


def _listener(job: Job) -> smtplib.SMTP:
    if job.lmtp:
        lmtp = smtplib.LMTP("127.0.0.1", job.deliver_port)
        lmtp.ehlo_or_helo_if_needed()
        return lmtp
    return smtplib.SMTP("127.0.0.1", job.deliver_port, timeout=job.timeout)


def connect_pop3(job: Job, user: str) -> poplib.POP3:
    if job.tls:
        box: poplib.POP3 = poplib.POP3_SSL(
            job.host, job.port, timeout=job.timeout, context=_tls(job)
        )
    else:
        box = poplib.POP3(job.host, job.port, timeout=job.timeout)
    box.user(user)
    box.pass_(job.password)
    return box


def connect_imap(job: Job, user: str) -> imaplib.IMAP4:
    if job.tls:
        box: imaplib.IMAP4 = imaplib.IMAP4_SSL(
            job.host, job.port, ssl_context=_tls(job), timeout=job.timeout
        )
    else:
        box = imaplib.IMAP4(job.host, job.port, timeout=job.timeout)
    box.login(user, job.password)
    box.select("INBOX")
    return box


def pop3(job: Job, user: str) -> int:
    box = connect_pop3(job, user)
    count, _ = box.stat()
    with _listener(job) as out:
        for n in range(1, count + 1):
            _, lines, _ = box.retr(n)  # dot-unstuffed by poplib
            out.sendmail(
                SENDER,
                [job.recipient],
                _trace(job, "POP3") + b"\r\n".join(lines) + b"\r\n",
            )
            if not job.keep:
                box.dele(n)
    box.quit()
    return count


def imap(job: Job, user: str) -> int:
    box = connect_imap(job, user)
    _, found = box.uid("SEARCH", "UNSEEN")
    uids = found[0].split() if found and found[0] else []
    flag = r"(\Seen)" if job.keep else r"(\Deleted)"
    with _listener(job) as out:
        for uid in uids:
            _, data = box.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = next(part[1] for part in data if isinstance(part, tuple))
            out.sendmail(SENDER, [job.recipient], _trace(job, "IMAP") + raw)
            box.uid("STORE", uid, "+FLAGS.SILENT", flag)
    if not job.keep:
        box.expunge()
    box.logout()
    return len(uids)


def run_job(
    argv: list[str] | None,
    pop3: Callable[[Job, str], int],
    imap: Callable[[Job, str], int],
    done: str,
) -> int:
    """``JOB.json`` from the command line, every mailbox of it; exit 0 when some
    messages were ``done``."""
    args = sys.argv[1:] if argv is None else argv
    job = Job.load(Path(args[0]))
    fetch = pop3 if job.protocol == "pop3" else imap
    total = sum(fetch(job, user) for user in job.users)
    print(f"{total} messages {done}")
    return 0 if total else 1


def main(argv: list[str] | None = None) -> int:
    return run_job(argv, pop3, imap, "delivered")


if __name__ == "__main__":
    sys.exit(main())
