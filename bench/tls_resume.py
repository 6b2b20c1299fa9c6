"""Does TLS session resumption save the poller CPU? (issue 14)

``python -m bench.tls_resume [--connections 300]``

Against the test suite's Dovecot (implicit TLS on its IMAP port, the suite's
certificate), in its two login modes: "high-security" (Dovecot's default and
bench.throughput's: a login process per connection, each with a ticket key of
its own, so no session is ever resumed) and "performance" (one long-lived login
process: tickets are accepted). For each, N connections with a full handshake
and N offering the previous connection's session (``wrap_socket(session=...)``,
the session read after the first response, when a TLS 1.3 ticket has come).
Prints the client's CPU per handshake and per read of ``SSLSocket.session``
(``time.process_time``) and how many handshakes were resumed.

What it showed (Python 3.11, OpenSSL 3, TLS 1.3, load ~9 on 2 cores):
performance mode, full 0.83 ms vs resumed 0.68 ms per handshake, but reading
the session costs 0.25 ms (CPython copies a TLS 1.3 session through its DER
form); high-security mode, resumption never happens and offering the session
costs 0.24 ms more. Net: no saving for the poller, so the engine does not
resume sessions.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path

from tests.support.dovecot import Dovecot

PERFORMANCE_LOGIN = """
service imap-login {
  service_count = 0
  process_min_avail = 1
  process_limit = 1
}
"""


def measure(dovecot: Dovecot, connections: int, *, resume: bool) -> str:
    context = ssl.create_default_context(cafile=dovecot.ca_file)
    session = None
    handshake = getter = 0.0
    reused = 0
    for _ in range(connections):
        sock = socket.create_connection((dovecot.host, dovecot.imaps_port))
        began = time.process_time()
        tls = context.wrap_socket(
            sock, server_hostname="localhost", session=session if resume else None
        )
        handshake += time.process_time() - began
        reused += bool(tls.session_reused)
        tls.recv(4096)  # the greeting; a TLS 1.3 ticket comes before it
        if resume:
            began = time.process_time()
            session = tls.session
            getter += time.process_time() - began
        tls.close()
    return (
        f"{'resumed' if resume else 'full'}: handshake "
        f"{1000 * handshake / connections:.3f} ms CPU, session read "
        f"{1000 * getter / connections:.3f} ms, resumed {reused}/{connections}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tls_resume")
    parser.add_argument("--connections", type=int, default=300)
    args = parser.parse_args(argv)
    for mode, extra in (("high-security", ""), ("performance", PERFORMANCE_LOGIN)):
        work = Path(tempfile.mkdtemp(prefix="fetchweb-bench-tls-"))
        work.chmod(0o711)
        dovecot = Dovecot(
            work / "dovecot",
            label="bench-tls",
            auth_mechanisms="plain login",
            extra_config=extra,
        )
        dovecot.launch()
        try:
            for resume in (False, True):
                print(f"{mode} {measure(dovecot, args.connections, resume=resume)}")
        finally:
            dovecot.stop()
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
