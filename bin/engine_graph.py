#!/usr/bin/env python3
"""The engine's import graph between its rooms, read from the source with ``ast``.

``python bin/engine_graph.py`` prints, per pair of rooms, how many imports go that
way and from which modules; docs/architecture.md quotes its output. Rooms as in
tests/engine/test_layers.py (which enforces the direction): ``base`` (spec, ports,
errors, report, redact), ``wire/``, ``fetch/``, ``deliver/`` and ``top`` (the rest).
Every import counts, those under ``TYPE_CHECKING`` and inside functions too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "retrieval" / "engine"
PACKAGE = "retrieval.engine"
BASE = frozenset({"spec", "ports", "errors", "report", "redact"})
ROOMS = ("wire", "fetch", "deliver")
ORDER = ("top", "fetch", "deliver", "wire", "base")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def room(module: str) -> str:
    first = module.removeprefix(PACKAGE).lstrip(".").split(".")[0]
    if first in ROOMS:
        return first
    return "base" if first in BASE else "top"


def imported(path: Path) -> set[str]:
    """The modules (or packages) ``path`` imports, absolute."""
    module = module_name(path)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            origin = node.module or ""
            if node.level:
                parts = module.split(".")
                drop = node.level - 1 if is_package else node.level
                origin = ".".join(
                    [*parts[: len(parts) - drop], *filter(None, [origin])]
                )
            for alias in node.names:
                candidate = f"{origin}.{alias.name}"
                found.add(candidate if is_module(candidate) else origin)
    return found


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def main() -> None:
    edges: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    members: dict[str, list[str]] = defaultdict(list)
    outside: set[str] = set()
    for path in sorted(ENGINE.rglob("*.py")):
        source = module_name(path)
        short = source.removeprefix(PACKAGE).lstrip(".") or "__init__"
        members[room(source)].append(short)
        for target in imported(path):
            if target.split(".")[0] in ("retrieval", "django", "celery"):
                if not target.startswith(PACKAGE + "."):
                    outside.add(f"{short} -> {target}")
                elif room(target) != room(source):
                    edges[room(source), room(target)].add((short, target))
    for name in ORDER:
        print(f"{name:8} {len(members[name]):2} modules: {', '.join(members[name])}")
    print()
    for source in ORDER:
        for target in ORDER:
            pairs = edges.get((source, target))
            if pairs:
                importers = sorted({s for s, _ in pairs})
                print(
                    f"{source:>7} -> {target:7} {len(pairs):3} module imports, "
                    f"from {len(importers):2} modules"
                )
    back = [
        f"{s} -> {t}"
        for (s, t) in edges
        if ORDER.index(s) >= ORDER.index(t) or {s, t} == {"fetch", "deliver"}
    ]
    print()
    print("against the direction:", ", ".join(back) or "none")
    print(
        "outside the engine (retrieval, django, celery):",
        ", ".join(sorted(outside)) or "none",
    )


if __name__ == "__main__":
    main()
