"""One run's instructions: the rcfile every fetchmail-compatible tool reads, and
the same facts as JSON for the stdlib baseline (which has no rcfile parser)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True)
class Job:
    protocol: str  # "pop3" | "imap"
    host: str  # the name the certificate is for; resolves to 127.0.0.1
    port: int  # Dovecot's, or the latency proxy's in front of it
    tls: bool  # implicit TLS; False means no TLS at all
    ca_file: str
    users: tuple[str, ...]
    password: str
    keep: bool
    deliver_port: int
    lmtp: bool
    recipient: str  # the local name after "is ... here"; a Dovecot user for LMTP
    timeout: int = 120

    def rcfile(self) -> str:
        """One poll entry, one user clause per mailbox. Options are per user in
        fetchmail's grammar, so each clause repeats them."""
        tls = (
            f"ssl sslcertck sslcertfile {_q(self.ca_file)}"
            if self.tls
            else "sslproto ''"
        )  # no opportunistic STARTTLS on the plain ports
        lines = [
            "# Written by fetchweb's benchmark (bench/job.py).",
            f"poll {self.host} service {self.port} protocol {self.protocol.upper()}"
            f" timeout {self.timeout}",
        ]
        for user in self.users:
            lines += [
                f"  user {_q(user)} there with password {_q(self.password)}"
                f" is {_q(self.recipient)} here",
                f"    {tls}",
                f"    {'keep' if self.keep else 'no keep'}",
                f"    smtphost {_q(f'127.0.0.1/{self.deliver_port}')}"
                + (" lmtp" if self.lmtp else ""),
            ]
        return "\n".join(lines) + "\n"

    def write(self, rcfile: Path, job_json: Path) -> None:
        rcfile.write_text(self.rcfile())
        rcfile.chmod(0o600)  # fetchmail refuses an rcfile others can read
        job_json.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> Job:
        data = json.loads(path.read_text())
        data["users"] = tuple(data["users"])
        return cls(**data)


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
