"""What fetchmail takes from the invoking user and the host, not from the rcfile.

fetchmail fills several values from its environment: the login name (remote
user, local name, ``esmtpname``, ``postmaster``), the home directory (default
``idfile``, ``~/.netrc``), and the host's canonical name (default
``fetchdomains`` for ETRN/ODMR). :meth:`Environment.current` derives them exactly
as fetchmail's ``envquery()`` does; tests and the Django importer pass their own.
"""

from __future__ import annotations

import os
import pwd
import socket
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Environment:
    user: str  # fetchmail's ``user``: the invoking login name
    home: str  # absolute home directory ($HOME_ETC, $HOME, or the passwd entry)
    fmhome: str  # $FETCHMAILHOME or ``home``
    is_root: bool = False  # real uid 0: ``postmaster`` defaults to "postmaster"
    hostname: str = field(default_factory=socket.gethostname)
    # Look at the disk like fetchmail does before dumping: drop a logfile that
    # does not exist, read passwords from ~/.netrc.
    check_files: bool = True

    @classmethod
    def current(cls) -> Environment:
        uid = os.getuid()
        try:
            by_uid = pwd.getpwuid(uid)
            name, pw_dir = by_uid.pw_name, by_uid.pw_dir
        except KeyError:
            name, pw_dir = str(uid), "/"
        wanted = (
            os.environ.get("FETCHMAILUSER")
            or os.environ.get("LOGNAME")
            or os.environ.get("USER")
        )
        if wanted:
            try:
                by_name = pwd.getpwnam(wanted)
            except KeyError:
                pass
            else:
                if by_name.pw_uid == uid:
                    name = by_name.pw_name
        home = os.environ.get("HOME_ETC") or os.environ.get("HOME") or pw_dir
        home = os.path.realpath(home)
        fmhome = os.path.realpath(os.environ.get("FETCHMAILHOME") or home)
        return cls(user=name, home=home, fmhome=fmhome, is_root=uid == 0)

    @classmethod
    def fixed(cls, user: str, home: str = "/nonexistent") -> Environment:
        """A fixed environment that reads nothing from disk (for importers)."""
        return cls(user=user, home=home, fmhome=home, check_files=False)

    def fqdn(self) -> str:
        """``host_fqdn()``: the host name, canonicalised when it has no dot."""
        host = self.hostname
        if "." in host:
            return host
        try:
            infos = socket.getaddrinfo(
                host, None, 0, socket.SOCK_STREAM, 0, socket.AI_CANONNAME
            )
        except (OSError, UnicodeError):
            return host
        for info in infos:
            return info[3] or host
        return host

    def netrc_password(self, host: str, login: str) -> str | None:
        if not self.check_files:
            return None
        return netrc_lookup(Path(self.home) / ".netrc", host, login)


def netrc_lookup(path: Path, host: str, login: str) -> str | None:
    """The password of the first ``machine HOST`` entry of ``path`` for ``login``."""
    try:
        data = path.read_bytes()[: 1024 * 1024]
    except OSError:
        return None
    words = data.decode("utf-8", "surrogateescape").split()
    entries: list[dict[str, str]] = []
    i = 0
    current: dict[str, str] | None = None
    while i < len(words):
        w = words[i]
        if w == "machine" and i + 1 < len(words):
            current = {"machine": words[i + 1]}
            entries.append(current)
            i += 2
        elif w == "default":
            current = {"machine": ""}
            entries.append(current)
            i += 1
        elif (
            w in ("login", "password", "account")
            and i + 1 < len(words)
            and current is not None
        ):
            current[w] = words[i + 1]
            i += 2
        elif w == "macdef":
            current = None
            i += 2
            while i < len(words) and words[i] not in ("machine", "default"):
                i += 1
        else:
            i += 1
    for e in entries:
        if (
            e.get("machine") == host
            and e.get("login", login) == login
            and "password" in e
        ):
            return e["password"]
    return None
