"""Sections of docs/benchmarks.md written by benchmarks other than ``python -m bench``.

Each one (bench/backoff.py, bench/idle.py, bench/throughput.py) writes its
figures between ``<!-- section: NAME -->`` and ``<!-- end: NAME -->``; a new
run replaces its own section and leaves the others. ``python -m bench``
regenerates the rest of the page and keeps these sections after it
(bench/report.py calls :func:`kept`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

_BLOCK = re.compile(r"<!-- section: (\S+) -->\n.*?<!-- end: \1 -->\n", re.S)


def kept(text: str) -> str:
    """Every marked section of ``text``, in order, for a regenerated page."""
    return "".join(match.group(0) for match in _BLOCK.finditer(text))


def write(docs: Path, name: str, body: str) -> None:
    """Put ``body`` (markdown starting with its ``## `` heading) as section
    ``name`` of ``docs``: in place of the old one, else at the end."""
    block = f"<!-- section: {name} -->\n{body.rstrip()}\n<!-- end: {name} -->\n"
    text = docs.read_text() if docs.exists() else "# Benchmarks\n"
    pattern = re.compile(
        rf"<!-- section: {re.escape(name)} -->\n.*?<!-- end: {re.escape(name)} -->\n",
        re.S,
    )
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    docs.write_text(text)
