"""docs/security.md keeps up with the URLconf: its per-URL tables and its counts
are the ones rendered from the matrix's expectations (tests/security/doc_tables.py).

No database: the expectations are tables, the URL patterns come from the resolver.
"""

from __future__ import annotations

from django.test.utils import override_settings

from tests.security import doc_tables as d
from tests.security import matrix as m

FIX = "regenerate with: .venv/bin/python -m tests.security.doc_tables --write"


def test_every_generated_block_is_in_the_doc() -> None:
    assert set(d.doc_blocks(d.DOC.read_text())) == set(d.BLOCKS)


def test_the_doc_tables_are_the_rendered_ones() -> None:
    text = d.DOC.read_text()
    patterns = m.url_patterns()
    for name, body in d.doc_blocks(text).items():
        assert body == d.BLOCKS[name](patterns), f"docs/security.md, {name}: {FIX}"


def test_every_url_pattern_has_a_row() -> None:
    text = d.DOC.read_text()
    assert d.missing_routes(text, m.url_patterns()) == [], FIX


@override_settings(ROOT_URLCONF="tests.security.extra_urls")
def test_a_new_url_missing_from_the_doc_is_caught() -> None:
    """The guard can fail: one more URL pattern, and it is named."""
    missing = d.missing_routes(d.DOC.read_text(), m.url_patterns())
    assert missing == ["/extra/<int:pk>/export/"]
