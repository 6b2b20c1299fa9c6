"""``python -m retrieval.rcfile FILE``: print the parsed rcfile as JSON.

The JSON has ``fetchmail --configdump``'s key names, value forms and filled-in
defaults (see :mod:`retrieval.rcfile.dump`). Exit status 0 on success, 5 (like
fetchmail's PS_SYNTAX) on a syntax or semantic error, with ``FILE:LINE: message``
on stderr, 6 (PS_IOERR) when the file cannot be read, 23 (PS_UNDEFINED) when the
logfile exists but is not writable, as fetchmail does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from .dump import configdump
from .env import Environment
from .errors import RcfileError
from .parser import parse_bytes, read_rcfile

if TYPE_CHECKING:
    from collections.abc import Sequence

PS_SYNTAX = 5
PS_IOERR = 6
PS_UNDEFINED = 23


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m retrieval.rcfile",
        description="Parse a .fetchmailrc and print it as JSON (fetchmail --configdump fields).",
    )
    ap.add_argument("file", help="the rcfile; '-' reads standard input")
    ap.add_argument(
        "--indent", type=int, default=2, help="JSON indentation (default 2)"
    )
    args = ap.parse_args(argv)
    path: str = args.file
    try:
        data = read_rcfile(path)
    except OSError as exc:
        print(f"{path}: {exc.strerror or exc}", file=sys.stderr)
        return PS_IOERR
    try:
        config = parse_bytes(data, path)
    except RcfileError as exc:
        print(exc.render(), file=sys.stderr)
        return PS_SYNTAX
    env = Environment.current()
    dumped = configdump(config, env)
    logfile = dumped["logfile"]
    if logfile is not None and not os.access(logfile, os.W_OK):
        print(f'Logfile "{logfile}" is not writable, aborting.', file=sys.stderr)
        return PS_UNDEFINED
    sys.stdout.write(
        json.dumps(dumped, indent=args.indent or None, ensure_ascii=True) + "\n"
    )
    return 0
