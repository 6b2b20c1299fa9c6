"""Run the real fetchmail as the oracle: ``fetchmail --configdump`` on an rcfile.

fetchmail refuses an rcfile that is not a regular file owned by the invoking user
with mode 0600 or less, and it warns when run as root. So, as root, we run it as
``nobody`` (via ``subprocess``'s ``user=``) in a private directory that ``nobody``
owns and that is also its ``$HOME``; as an ordinary user we run it as ourselves.

The dump is Python-ish text (``TRUE``/``FALSE``/``None``, strings escaped by
fetchmail's ``visbuf``); :func:`parse_dump` reads it back into plain Python values
with every string decoded to the text fetchmail held in memory, so it can be
compared with ``python -m retrieval.rcfile`` field by field.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FETCHMAIL = shutil.which("fetchmail") or "/usr/bin/fetchmail"


def have_fetchmail() -> bool:
    return Path(FETCHMAIL).exists()


@dataclass
class OracleResult:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def accepted(self) -> bool:
        return self.returncode == 0

    def parsed(self) -> dict[str, Any]:
        return parse_dump(self.stdout)


class Oracle:
    """A private directory and the identity fetchmail runs as."""

    def __init__(self, *, as_self: bool = False) -> None:
        """Run fetchmail as ``nobody`` when we are root, else as ourselves;
        ``as_self`` runs it as the current user whatever that is (root included:
        fetchmail then only warns)."""
        self.as_root = os.geteuid() == 0 and not as_self
        pw = pwd.getpwnam("nobody") if self.as_root else pwd.getpwuid(os.geteuid())
        self.pw = pw
        self.user = pw.pw_name
        self.dir = Path(tempfile.mkdtemp(prefix="fm-oracle-")).resolve()
        if self.as_root:
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.dir.chmod(0o700)
        self.home = str(self.dir)
        self.hostname = socket.gethostname()
        self._n = 0

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def env(self) -> dict[str, str]:
        return {
            "HOME": self.home,
            "PATH": "/usr/bin:/bin",
            "LC_ALL": "C",
            "USER": self.user,
            "LOGNAME": self.user,
        }

    def write(self, data: bytes, name: str | None = None) -> Path:
        self._n += 1
        path = self.dir / (name or f"rc{self._n}")
        path.write_bytes(data)
        path.chmod(0o600)
        if self.as_root:
            os.chown(path, self.pw.pw_uid, self.pw.pw_gid)
        return path

    def run(self, data: bytes, name: str | None = None) -> OracleResult:
        path = self.write(data, name)
        try:
            return self.run_path(path)
        finally:
            path.unlink(missing_ok=True)

    def run_path(self, path: Path) -> OracleResult:
        kwargs: dict[str, Any] = {}
        if self.as_root:
            kwargs = {
                "user": self.pw.pw_uid,
                "group": self.pw.pw_gid,
                "extra_groups": [],
            }
        proc = subprocess.run(
            [FETCHMAIL, "--configdump", "-f", str(path)],
            cwd=self.dir,
            env=self.env(),
            capture_output=True,
            timeout=30,
            check=False,
            **kwargs,
        )
        return OracleResult(proc.returncode, proc.stdout, proc.stderr)


# ---------------------------------------------------------------- dump reader

_VIS = {
    ord('"'): '"',
    ord("\\"): "\\",
    ord("a"): "\a",
    ord("b"): "\b",
    ord("f"): "\f",
    ord("n"): "\n",
    ord("r"): "\r",
    ord("t"): "\t",
    ord("v"): "\v",
}


def unvis(raw: bytes) -> str:
    """Undo fetchmail's visbuf() on the body of a dumped string."""
    out = bytearray()
    i = 0
    n = len(raw)
    while i < n:
        c = raw[i]
        if c == 0x5C and i + 1 < n:
            d = raw[i + 1]
            if d == ord("0") and raw[i + 2 : i + 3] == b"x" and i + 4 < n + 1:
                hexpart = raw[i + 3 : i + 5]
                try:
                    out.append(int(hexpart, 16))
                    i += 5
                    continue
                except ValueError:
                    pass
            if d in _VIS:
                out += _VIS[d].encode()
                i += 2
                continue
        out.append(c)
        i += 1
    return out.decode("utf-8", "surrogateescape")


_ENTRY_COMMENT = re.compile(
    rb"# Entry for site `.*?' begins:\n(?=\s*\{\s*\n\s*\"pollname\")", re.DOTALL
)
_TOKEN = re.compile(
    rb"""\s+|\#[^\n]*\n|"(?P<dq>(?:[^"\\]|\\.)*)"|'(?P<sq>[^']*)'|(?P<num>-?\d+)"""
    rb"""|(?P<word>TRUE|FALSE|None)|(?P<p>[\[\]{}(),:])""",
    re.DOTALL,
)


# fetchmail's visbuf() prints a byte >= 0x80 as "\0x" and up to two bytes of
# its memory (see differential._high_prefix). A stray quote there would end the
# string: one followed by a hex digit is read as "?", since the dump's own closing
# quote is followed by a comma, colon, bracket or space. The lookbehind keeps an
# escaped backslash before "0x" as it is.
_MISPRINTED = re.compile(rb'(?<!\\)((?:\\\\)*)\\0x"(?=[0-9a-fA-F])')


def parse_dump(out: bytes) -> dict[str, Any]:
    start = out.index(b"fetchmailrc = ") + len(b"fetchmailrc = ")
    text = _MISPRINTED.sub(rb"\1\\0x?", _ENTRY_COMMENT.sub(b"", out[start:]))
    tokens: list[tuple[str, Any]] = []
    pos = 0
    end = text.index(b"# End of initializer")
    while pos < end:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"cannot read dump at {text[pos : pos + 40]!r}")
        pos = m.end()
        if m.group("dq") is not None:
            tokens.append(("s", unvis(m.group("dq"))))
        elif m.group("sq") is not None:
            tokens.append(("s", m.group("sq").decode("utf-8", "surrogateescape")))
        elif m.group("num") is not None:
            tokens.append(("v", int(m.group("num"))))
        elif m.group("word") is not None:
            tokens.append(
                ("v", {b"TRUE": True, b"FALSE": False, b"None": None}[m.group("word")])
            )
        elif m.group("p") is not None:
            tokens.append(("p", m.group("p").decode()))
    value, _i = _value(tokens, 0)
    assert isinstance(value, dict)
    return value


def _value(tokens: list[tuple[str, Any]], i: int) -> tuple[Any, int]:
    kind, val = tokens[i]
    if kind in ("s", "v"):
        return val, i + 1
    if val == "{":
        d: dict[str, Any] = {}
        i += 1
        while True:
            while tokens[i] == ("p", ","):
                i += 1
            if tokens[i] == ("p", "}"):
                return d, i + 1
            key, i = _value(tokens, i)
            assert tokens[i] == ("p", ":"), tokens[i]
            v, i = _value(tokens, i + 1)
            d[key] = v
    if val in ("[", "("):
        close = "]" if val == "[" else ")"
        items: list[Any] = []
        i += 1
        while True:
            while tokens[i] == ("p", ","):
                i += 1
            if tokens[i] == ("p", close):
                return (items if close == "]" else tuple(items)), i + 1
            v, i = _value(tokens, i)
            items.append(v)
    raise ValueError(f"unexpected token {tokens[i]!r}")
