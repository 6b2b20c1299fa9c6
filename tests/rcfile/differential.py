"""Compare our parser with ``fetchmail --configdump`` on one rcfile."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retrieval.rcfile import Environment, RcfileError, configdump, parse_bytes

if TYPE_CHECKING:
    from .oracle import Oracle


def oracle_env(oracle: Oracle) -> Environment:
    """The environment fetchmail sees when the oracle runs it."""
    return Environment(
        user=oracle.user,
        home=oracle.home,
        fmhome=oracle.home,
        is_root=False,  # the oracle never runs fetchmail as root
        hostname=oracle.hostname,
    )


def _norm(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    return value


def _high_prefix(ours: str) -> str | None:
    """fetchmail's visbuf misprints bytes >= 0x80 (signed char indexes its hex table):
    only the text before the first such byte can be compared."""
    raw = ours.encode("utf-8", "surrogateescape")
    for i, b in enumerate(raw):
        if b >= 0x80:
            return raw[:i].decode()
    return None


def diff(ours: Any, theirs: Any, path: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for k in sorted(set(ours) | set(theirs)):
            if k not in ours:
                out.append(f"{path}.{k}: missing in ours (fetchmail: {theirs[k]!r})")
            elif k not in theirs:
                out.append(f"{path}.{k}: extra in ours ({ours[k]!r})")
            else:
                out += diff(ours[k], theirs[k], f"{path}.{k}")
        return out
    if isinstance(ours, list) and isinstance(theirs, list):
        if len(ours) != len(theirs):
            return [f"{path}: {ours!r} != fetchmail {theirs!r}"]
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            out += diff(a, b, f"{path}[{i}]")
        return out
    if isinstance(ours, str) and isinstance(theirs, str) and ours != theirs:
        prefix = _high_prefix(ours)
        if (
            prefix is not None
            and theirs.startswith(prefix)
            and len(theirs) > len(prefix)
        ):
            return []  # what follows is whatever fetchmail read outside its table
    if ours != theirs or type(ours) is not type(theirs):
        return [f"{path}: ours {ours!r} != fetchmail {theirs!r}"]
    return []


@dataclass
class Outcome:
    ours_ok: bool
    theirs_ok: bool
    differences: list[str]
    ours_error: str | None
    theirs_stderr: str

    @property
    def agree(self) -> bool:
        return self.ours_ok == self.theirs_ok and not self.differences

    def explain(self) -> str:
        return (
            f"ours accepted={self.ours_ok} ({self.ours_error}); fetchmail accepted="
            f"{self.theirs_ok} ({self.theirs_stderr.strip()[:300]}); "
            + "; ".join(self.differences[:20])
        )


def compare(oracle: Oracle, data: bytes) -> Outcome:
    path = oracle.write(data)
    try:
        result = oracle.run_path(path)
        ours: dict[str, Any] | None = None
        error: str | None = None
        broken_dump = False
        try:
            config = parse_bytes(data, str(path))
            # fetchmail's dump of extra users of a defaults record is not valid
            # Python; only accept/reject can be compared there.
            broken_dump = any(s.orphan for s in config.servers)
            ours = configdump(config, oracle_env(oracle))
        except RcfileError as exc:
            error = exc.render()
    finally:
        path.unlink(missing_ok=True)
    theirs_ok = result.returncode == 0
    differences: list[str] = []
    if ours is not None and theirs_ok and not broken_dump:
        differences = diff(_norm(ours), _norm(result.parsed()))
    return Outcome(
        ours is not None,
        theirs_ok,
        differences,
        error,
        result.stderr.decode("utf-8", "replace"),
    )
