"""The tables of docs/security.md that come from the authorization matrix.

docs/security.md says, per URL and role, what each request answers, and how many
probes the matrix makes. Written by hand, those tables fell behind the URLconf
twice; now they are rendered here from the expectations in
:mod:`tests.security.matrix` (which ``test_authz_matrix`` proves against the
code, probe by probe) and ``tests/security/test_security_doc.py`` fails when the
doc's copy differs, so a new URL pattern cannot be missing from the doc.

Regenerate the doc's blocks after changing a URL or an expectation::

    .venv/bin/python -m tests.security.doc_tables --write
"""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path

from tests.security import matrix as m

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"

# Each column of the URL table shows one role; the roles named after it must
# answer the same way, relative to themselves (checked by rendering).
COLUMNS: dict[str, tuple[str, ...]] = {
    "anonymous": ("anonymous",),
    "user": ("alice", "peer", "bob"),
    "domain administrator": ("admin1", "admin2", "staff1"),
    "superuser": ("root",),
}

# Routes that take, as their object, the owner chosen in the posted form or body.
_CHOSEN_OWNER = {"retrieval:mailbox-add", "retrieval:rcfile-import", "api:mailbox-list"}
# Routes whose object is a person, not a mailbox.
_PERSON = {
    "people:person",
    "people:person-remove",
    "people:person-resend-invitation",
    "api:user-detail",
}


def relation(pattern: m.Pattern, role: str, target: str) -> str:
    """What ``target`` is to ``role``, in words that hold for every role of a column."""
    if target == "-":
        return ""
    if target == "missing":
        return "no such id"
    if "+" in target:
        return "through another mailbox"
    if target in m.DOMAIN_NAMES:
        if role == "root":
            return "any domain"
        administers = m.ADMINISTERS.get(role, set())
        return "their domain" if target in administers else "another domain"
    if pattern.key in _CHOSEN_OWNER:
        if role == "root":
            return "any owner"
        may = m.MAY_ADD_FOR.get(role, set())
        return "an owner they may choose" if target in may else "another owner"
    if pattern.key in _PERSON:
        if target == role:
            return "themselves"
        if role == "root":
            return "anyone else"
        return "their people" if target in m.MANAGES.get(role, set()) else "others"
    return {
        m.OWN: "own",
        m.ADMIN: "any" if role == "root" else "their domains'",
        m.READ: "a superuser's in their domain",
        m.NONE: "others'",
    }[m.level(role, target)]


def answer(accepted: tuple[m.Expect, ...]) -> str:
    def one(e: m.Expect) -> str:
        return f"{e.status} → {e.to}" if e.to else str(e.status)

    return " or ".join(one(e) for e in accepted)


def _cell(pairs: list[tuple[str, str]]) -> str:
    """``pairs`` of (answer, label), grouped by answer in order of appearance."""
    groups: dict[str, list[str]] = {}
    for ans, label in pairs:
        labels = groups.setdefault(ans, [])
        if label and label not in labels:
            labels.append(label)
    if len(groups) == 1:
        return next(iter(groups))
    return "; ".join(
        f"{ans} ({', '.join(labels)})" if labels else ans
        for ans, labels in groups.items()
    )


def _pairs(pattern: m.Pattern, role: str, method: str) -> list[tuple[str, str]]:
    return [
        (
            answer(m.expect(pattern, role, target, method)),
            relation(pattern, role, target),
        )
        for target in m.targets(pattern)
    ]


def _column_cell(pattern: m.Pattern, column: str, method: str) -> str:
    first, *others = COLUMNS[column]
    pairs = _pairs(pattern, first, method)
    for role in others:
        theirs = _pairs(pattern, role, method)
        if role == "staff1":  # in the admin it may be refused with 403 too
            theirs = [(a.removesuffix(" or 403"), label) for a, label in theirs]
        stray = set(theirs) - set(pairs)
        if stray:
            raise AssertionError(
                f"{role} answers {pattern.key} {method} unlike {first}: {sorted(stray)}"
            )
    return _cell(pairs)


def _route(pattern: m.Pattern) -> str:
    return "/" + pattern.route.replace("^", "").replace("$", "")


def _is_405_for_all_signed_in(pattern: m.Pattern, method: str) -> bool:
    return all(
        m.expect(pattern, role, target, method) == (m.E405,)
        for role in m.ROLES
        if role != "anonymous"
        for target in m.targets(pattern)
    )


def url_table(patterns: list[m.Pattern]) -> str:
    """One row per URL pattern and method it takes, outside the admin."""
    head = ["URL", "method", *COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for pattern in patterns:
        if pattern.admin:
            continue
        taken = [
            method
            for method in m.methods(pattern)
            if not _is_405_for_all_signed_in(pattern, method)
        ]
        for method in m.methods(pattern):
            if method not in taken:
                # The doc says what a method that is not listed answers.
                assert {
                    answer(m.expect(pattern, "anonymous", target, method))
                    for target in m.targets(pattern)
                } <= {"405", "302 → login", "401"}, (pattern.key, method)
        for method in taken or list(m.methods(pattern))[:1]:
            cells = [_column_cell(pattern, column, method) for column in COLUMNS]
            lines.append(
                f"| `{_route(pattern)}` | {method} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)


def _admin_label(pattern: m.Pattern) -> str:
    if m.admin_model(pattern):
        return m.model_page_kind(pattern)
    if pattern.name:
        return pattern.name.removeprefix("admin:")
    return "any other path"


def admin_table(patterns: list[m.Pattern]) -> str:
    """The admin, one row per model (and one for its other pages). The
    superuser's column says "allowed" for every answer that did what was asked."""
    rows: dict[str, list[m.Pattern]] = collections.defaultdict(list)
    for pattern in patterns:
        if pattern.admin:
            model = m.admin_model(pattern)
            rows[model or ""].append(pattern)
    head = ["admin pages", "patterns", *COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for model, members in sorted(rows.items()):
        if model:
            app, _, name = model.partition("_")
            where = f"`/admin/{app}/{name}/…`"
        else:
            where = "`/admin/` itself (index, login, logout, password, app lists, …)"
        cells = []
        for column in COLUMNS:
            pairs: list[tuple[str, str]] = []
            for pattern in members:
                for method in m.methods(pattern):
                    for role in COLUMNS[column]:
                        for target in m.targets(pattern):
                            accepted = m.expect(pattern, role, target, method)
                            if role == "staff1":
                                accepted = accepted[:1]  # "or 403", said below
                            ans = answer(accepted)
                            if role == "root" and accepted[0].allowed:
                                ans = "allowed"
                            pairs.append((ans, f"{_admin_label(pattern)} {method}"))
            cells.append(_cell(_merge_methods(pairs)))
        lines.append(f"| {where} | {len(members)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _merge_methods(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """ "change GET" and "change POST" with the same answer read as "change"."""
    by_answer: dict[str, set[str]] = collections.defaultdict(set)
    for ans, label in pairs:
        by_answer[ans].add(label)
    merged = []
    for ans, label in pairs:
        page, _, method = label.rpartition(" ")
        other = {"GET": "POST", "POST": "GET"}[method]
        if f"{page} {other}" in by_answer[ans]:
            label = page
        merged.append((ans, label))
    return merged


def _kind(pattern: m.Pattern) -> str:
    if pattern.admin:
        return "admin"
    return "API" if pattern.key in m.API else "pages"


def counts(patterns: list[m.Pattern]) -> str:
    """How many patterns and probes, by kind."""
    by_kind = collections.Counter(_kind(p) for p in patterns)
    probes = collections.Counter(_kind(p) for p, *_ in m.iter_probes(patterns))
    return (
        f"**{len(patterns)} URL patterns** ({by_kind['pages']} pages, "
        f"{by_kind['API']} API routes, {by_kind['admin']} of the admin) x "
        f"{len(m.ROLES)} roles x their objects x their methods: "
        f"**{sum(probes.values())} probes** ({probes['pages']} on the pages, "
        f"{probes['API']} on the API, {probes['admin']} on the admin)."
    )


_ROLE_COLUMNS = (
    "200", "201", "202", "204", "302 allowed", "200 form refused", "302 to login",
    "admin refused", "400", "401", "403", "404", "405", "409",
)  # fmt: skip


def role_table(patterns: list[m.Pattern]) -> str:
    """The expected answers by role, counted per probe."""
    table: dict[str, collections.Counter[str]] = collections.defaultdict(
        collections.Counter
    )
    for pattern, role, owner, method in m.iter_probes(patterns):
        answers = m.expect(pattern, role, owner, method)
        e = answers[0]
        if len(answers) > 1:
            column = "admin refused"
        elif e.status == 302 and e.to in ("login", "admin-login"):
            column = "302 to login"
        elif e.status == 302:
            column = "302 allowed"
        elif (pattern.key, method, e.status) == ("retrieval:mailbox-add", "POST", 200):
            column = "200 form refused"
        else:
            column = str(e.status)
        assert column in _ROLE_COLUMNS, column
        table[role][column] += 1
        table["all"][column] += 1
    head = ["role", *_ROLE_COLUMNS, "total"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for role in (*m.ROLES, "all"):
        row = [str(table[role][c]) for c in _ROLE_COLUMNS]
        lines.append(
            f"| {role} | " + " | ".join(row) + f" | {sum(table[role].values())} |"
        )
    return "\n".join(lines)


_OBJECT_COLUMNS = (
    "own: allowed", "own: 403", "read-only: allowed", "read-only: 403",
    "read-only: 405", "foreign: 404", "foreign: 405",
)  # fmt: skip
# Routes whose object is not one mailbox named by the URL: the owner is in the
# form or body, or the object is a domain or a person.
_NOT_BY_ID = _CHOSEN_OWNER | {
    "retrieval:mailbox-bulk",
    "api:domain-list",
    "api:domain-detail",
    "api:user-list",
    "api:user-detail",
}


def object_table(patterns: list[m.Pattern]) -> str:
    """The objects taken by id (mailboxes, and runs and connection tests reached
    through their mailbox), by the role's right on the mailbox's owner."""
    table: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(
        collections.Counter
    )
    for pattern, role, owner, method in m.iter_probes(patterns):
        if (
            role == "anonymous"
            or pattern.admin
            or pattern.key in _NOT_BY_ID
            or pattern.key in m.PEOPLE_PAGES
            or owner.partition("+")[0] not in (*m.OWNERS, "missing")
        ):
            continue
        e = m.expect(pattern, role, owner, method)[0]
        lvl = m.NONE if "+" in owner or owner == "missing" else m.level(role, owner)
        where = {m.OWN: "own", m.ADMIN: "own", m.READ: "read-only"}.get(lvl, "foreign")
        if where == "own" and e.status == 405:
            continue  # a method the route does not take
        allowed = e.status in (200, 201, 202, 204) or (e.status == 302 and e.allowed)
        column = f"{where}: {'allowed' if allowed else e.status}"
        assert column in _OBJECT_COLUMNS, (pattern.key, role, owner, method, column)
        kind = "API" if pattern.key in m.API else "pages"
        table[(kind, role)][column] += 1
    head = ["where", "role", *_OBJECT_COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for kind in ("pages", "API"):
        rows: list[tuple[list[str], list[str]]] = []
        for role in ("alice", "peer", "bob", "admin1", "staff1", "admin2", "root"):
            counted = [str(table[(kind, role)][c] or "") for c in _OBJECT_COLUMNS]
            if rows and rows[-1][1] == counted:
                rows[-1][0].append(role)
            else:
                rows.append(([role], counted))
        for roles, counted in rows:
            who = ", ".join(roles) + (" (each)" if len(roles) > 1 else "")
            lines.append(f"| {kind} | {who} | " + " | ".join(counted) + " |")
    return "\n".join(lines)


BLOCKS = {
    "counts": counts,
    "url-table": url_table,
    "admin-table": admin_table,
    "role-table": role_table,
    "object-table": object_table,
}
_BLOCK = re.compile(
    r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)",
    re.S,
)


def doc_blocks(text: str) -> dict[str, str]:
    return {
        match["name"]: match["body"].rstrip("\n") for match in _BLOCK.finditer(text)
    }


def render(text: str, patterns: list[m.Pattern]) -> str:
    """``text`` with every generated block rendered anew."""

    def sub(match: re.Match[str]) -> str:
        body = BLOCKS[match["name"]](patterns)
        return match.group(1) + body + "\n" + match.group(4)

    return _BLOCK.sub(sub, text)


def missing_routes(text: str, patterns: list[m.Pattern]) -> list[str]:
    """The routes outside the admin that the doc's URL table does not name."""
    table = doc_blocks(text).get("url-table", "")
    return [
        _route(p) for p in patterns if not p.admin and f"| `{_route(p)}` |" not in table
    ]


def main(argv: list[str]) -> int:
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fetchweb.settings")
    django.setup()
    text = DOC.read_text()
    new = render(text, m.url_patterns())
    if "--write" in argv:
        DOC.write_text(new)
        return 0
    sys.stdout.write(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
