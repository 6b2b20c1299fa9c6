"""The engine's rooms and their one-way doors, read from the source (``ast``).

``retrieval/engine/`` is layered (DESIGN.md, issue 12 item 2)::

    run, odmr, check, probe, hooks, unsupported, memory   (top: composes the rooms)
        -> fetch/   POP3, IMAP, sessions, ETRN, IDLE
        -> deliver/ sink, SMTP/LMTP, MDA, BSMTP, handover, multidrop
            -> wire/    transport, TLS, tunnels, spool, numbers, SASL
                -> spec, ports, errors, report, redact    (the base: imported by all)

fetch/ and deliver/ never import each other; the wire imports neither; the base
imports only the base. Nothing in the engine imports Django, Celery, the rcfile
package, the command line or any other part of ``retrieval`` (the one exception:
``__main__.py`` starts the command line, ``retrieval.cli.main``). Every import
counts, those under ``TYPE_CHECKING`` and inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "retrieval" / "engine"
PACKAGE = "retrieval.engine"

BASE = frozenset({"spec", "ports", "errors", "report", "redact"})
ROOMS = ("wire", "fetch", "deliver")
# What each layer may import inside the engine, besides itself.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "base": frozenset({"base"}),
    "wire": frozenset({"base"}),
    "fetch": frozenset({"base", "wire"}),
    "deliver": frozenset({"base", "wire"}),
    "top": frozenset({"base", "wire", "fetch", "deliver", "top"}),
}
FOREIGN = ("django", "celery", "retrieval")  # retrieval.* outside the engine
MAIN_MAY_IMPORT = frozenset({"retrieval.cli.main"})


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str:
    """``base``, a room, or ``top`` for a module (or package) of the engine."""
    rest = module.removeprefix(PACKAGE).lstrip(".").split(".")
    if rest[0] in ROOMS:
        return rest[0]
    if rest[0] in BASE:
        return "base"
    return "top"


def imports(source: str, module: str, *, is_package: bool) -> set[str]:
    """Every module ``source`` imports, absolute; ``from P import m`` gives ``P.m``
    when ``P.m`` is an engine module, else ``P``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                drop = node.level - 1 if is_package else node.level
                base = base[: len(base) - drop]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            for alias in node.names:
                candidate = f"{origin}.{alias.name}"
                found.add(candidate if is_engine_module(candidate) else origin)
    return found


def is_engine_module(name: str) -> bool:
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return False
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def violations(module: str, imported: set[str]) -> list[str]:
    """What ``module`` (an engine module) must not import, in words."""
    wrong = []
    if module == f"{PACKAGE}.__main__":
        allowed = {m for m in imported if m in MAIN_MAY_IMPORT or "." not in m}
        return [f"{module} imports {m}" for m in sorted(imported - allowed)]
    mine = layer(module)
    for name in sorted(imported):
        top = name.split(".")[0]
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            theirs = layer(name)
            if name == PACKAGE:
                continue  # the package itself: its __init__ holds no code
            if theirs != mine and theirs not in MAY_IMPORT[mine]:
                wrong.append(f"{module} ({mine}) imports {name} ({theirs})")
        elif top in FOREIGN:
            wrong.append(f"{module} imports {name}, outside the engine")
    return wrong


def engine_modules() -> list[Path]:
    return sorted(ENGINE.rglob("*.py"))


def test_every_module_is_in_a_known_place() -> None:
    for path in engine_modules():
        parts = path.relative_to(ENGINE).parts
        assert len(parts) == 1 or (len(parts) == 2 and parts[0] in ROOMS), path


@pytest.mark.parametrize(
    "path", engine_modules(), ids=lambda p: str(p.relative_to(ENGINE))
)
def test_imports_go_one_way(path: Path) -> None:
    module = module_name(path)
    imported = imports(path.read_text(), module, is_package=path.name == "__init__.py")
    assert violations(module, imported) == []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("retrieval.engine.wire.tls", "from retrieval.engine.fetch import imap\n"),
        ("retrieval.engine.wire.tls", "from ..deliver.sink import Sink\n"),
        ("retrieval.engine.fetch.pop3", "from retrieval.engine.deliver import sink\n"),
        ("retrieval.engine.deliver.smtp", "import retrieval.engine.fetch.session\n"),
        ("retrieval.engine.deliver.smtp", "from retrieval.engine import run\n"),
        ("retrieval.engine.errors", "from retrieval.engine.wire import spool\n"),
        ("retrieval.engine.run", "from retrieval.rcfile import parse_text\n"),
        ("retrieval.engine.run", "from retrieval.cli import idfile\n"),
        ("retrieval.engine.probe", "import django.conf\n"),
        ("retrieval.engine.spec", "from celery import shared_task\n"),
        (
            "retrieval.engine.fetch.imap",
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from retrieval.engine.deliver.sink import Sink\n",
        ),
        ("retrieval.engine.__main__", "from retrieval.rcfile import parse_text\n"),
    ],
)
def test_a_wrong_import_is_caught(module: str, source: str) -> None:
    is_package = False
    assert violations(module, imports(source, module, is_package=is_package))


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("retrieval.engine.fetch.pop3", "from retrieval.engine.wire import sasl\n"),
        ("retrieval.engine.deliver.smtp", "from ..wire.transport import Connection\n"),
        ("retrieval.engine.wire.spool", "from retrieval.engine.errors import X\n"),
        ("retrieval.engine.run", "from retrieval.engine.deliver import sink\n"),
        ("retrieval.engine.__main__", "from retrieval.cli.main import main\n"),
    ],
)
def test_a_right_import_passes(module: str, source: str) -> None:
    assert violations(module, imports(source, module, is_package=False)) == []


@pytest.mark.parametrize("package", ["rcfile", "cli"])
def test_rcfile_and_cli_stay_out_of_django(package: str) -> None:
    for path in sorted((ROOT / "retrieval" / package).rglob("*.py")):
        module = module_name(path)
        names = imports(path.read_text(), module, is_package=path.name == "__init__.py")
        assert not {n for n in names if n.split(".")[0] in ("django", "celery")}, path
        if package == "rcfile":
            assert not {n for n in names if n.startswith("retrieval.cli")}, path
