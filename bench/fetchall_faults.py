"""Copies per Message-ID after cuts, stalls and listener faults (issue 10.1).

    .venv/bin/python -m bench.fetchall_faults [--messages 300] [--every 37]
        [--ledger memory|idfile] [--tool fetchweb|fetchmail]

A real Dovecot (tests/support/dovecot.py) and the real aiosmtpd listener, with
the proxy of tests/support/cutting_proxy.py injecting a fault every ``--every``
messages: the server connection cut or stalled, or the listener's connection
dropped or stalled right after the final dot (its 250 is lost). The mailbox is
polled until it is empty (at most ``--max-polls``) and every copy the listener
got to the final dot of is counted by Message-ID. A duplicate is "explained"
when its Message-ID is one whose 250 the proxy made us lose.
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrieval.cli.idfile import IdFile, mailbox_key
from retrieval.engine.memory import ListTranscript, MemoryLedger
from retrieval.engine.run import poll
from tests.live.test_crash_invariants import build_spec, config, ids, message
from tests.live.test_fetchall_cuts import FAULTS
from tests.rcfile.oracle import FETCHMAIL, Oracle
from tests.support.cutting_proxy import CuttingProxy, Trigger
from tests.support.dovecot import Dovecot, MailUser
from tests.support.smtp_listener import SmtpListener

if TYPE_CHECKING:
    from retrieval.engine.ports import Ledger
    from retrieval.engine.spec import MailboxSpec


def one(
    dovecot: Dovecot,
    protocol: str,
    fault: str,
    fetchall: bool,
    args: argparse.Namespace,
) -> dict[str, object]:
    user = MailUser(name=f"b{secrets.token_hex(5)}", password=secrets.token_hex(8))
    dovecot.add_user(user.name, user.password)
    for n in range(1, args.messages + 1):
        dovecot.put(user.name, message(n))
    listener = SmtpListener.start()
    to_server, marker, action, after = FAULTS[fault]
    trigger = Trigger(marker, args.every, action, from_server=to_server, after=after)
    server_port = dovecot.pop3_port if protocol == "pop3" else dovecot.imap_port
    proxy = CuttingProxy(server_port if to_server else listener.port, trigger)
    try:
        spec = build_spec(
            config(
                dovecot,
                user,
                listener.port if to_server else proxy.port,
                protocol,
                proxy.port if to_server else server_port,
            )
        )
        spec = replace(
            spec,
            fetchall=fetchall,
            server=replace(spec.server, timeout=args.timeout),
            delivery=replace(spec.delivery, timeout=args.timeout),
        )
        memory = MemoryLedger()
        polls = 0
        oracle = Oracle() if args.tool == "fetchmail" else None
        while dovecot.messages(user.name) and polls < args.max_polls:
            if oracle is not None:
                run_fetchmail(oracle, spec, user)
            elif args.ledger == "idfile":
                # Opened again for each poll, as each run of the command line does.
                with IdFile.open(str(Path(args.tmp) / f"{user.name}.ids")) as idfile:
                    ledger: Ledger = idfile.ledger(mailbox_key(spec))
                    poll(spec, ledger=ledger, transcript=ListTranscript())
            else:
                poll(spec, ledger=memory, transcript=ListTranscript())
            polls += 1
        got = Counter(ids([r.data for r in listener.received]))
        lost = Counter(trigger.lost)
        duplicates = sum(n - 1 for n in got.values())
        unexplained = sum(max(0, n - 1 - lost[mid]) for mid, n in got.items())
        if oracle is not None:
            oracle.close()
        return {
            "protocol": protocol,
            "fault": fault,
            "fetchall": fetchall,
            "polls": polls,
            "faults": trigger.fired,
            "lost_250": len(trigger.lost),
            "left_on_server": len(dovecot.messages(user.name)),
            "distinct_delivered": len(got),
            "copies": sum(got.values()),
            "duplicates": duplicates,
            "unexplained": unexplained,
        }
    finally:
        proxy.close()
        listener.stop()


def run_fetchmail(oracle: Oracle, spec: MailboxSpec, user: MailUser) -> None:
    """One run of fetchmail 6.4 on the same mailbox, through the same proxies."""
    server, delivery = spec.server, spec.delivery
    rc = (
        "set no bouncemail\n"
        f"poll 127.0.0.1 proto {server.protocol.value} port {server.port} "
        f"timeout {max(1, int(server.timeout))}\n"
        f'    user "{user.name}" there with password "{user.password}" is joe here\n'
        f"    {'fetchall' if spec.fetchall else ''} sslproto '' "
        f"smtphost {delivery.hosts[0]}\n"
    )
    path = oracle.write(rc.encode(), "faults.rc")
    kwargs: dict[str, Any] = {}
    if oracle.as_root:
        kwargs = {"user": oracle.pw.pw_uid, "group": oracle.pw.pw_gid}
    subprocess.run(
        [FETCHMAIL, "-f", str(path), "--nosyslog", "-d0", "-i", f"{oracle.dir}/ids"],
        cwd=oracle.dir,
        env=oracle.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=600,
        check=False,
        **kwargs,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--every", type=int, default=37)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--max-polls", type=int, default=40)
    parser.add_argument("--protocols", default="pop3,imap")
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--ledger", choices=("memory", "idfile"), default="memory")
    parser.add_argument("--tool", choices=("fetchweb", "fetchmail"), default="fetchweb")
    args = parser.parse_args()
    header = (
        "| protocol | fault | fetchall | polls | faults | lost 250s | left | "
        "delivered | copies | duplicates | not from a lost 250 |"
    )
    print(header)
    print("|" + " --- |" * 11)
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        dovecot = Dovecot.start(Path(tmp))
        try:
            for protocol in args.protocols.split(","):
                for fault in args.faults.split(","):
                    for fetchall in (True, False):
                        r = one(dovecot, protocol, fault, fetchall, args)
                        print(
                            "| " + " | ".join(str(v) for v in r.values()) + " |",
                            flush=True,
                        )
        finally:
            dovecot.stop()


if __name__ == "__main__":
    main()
