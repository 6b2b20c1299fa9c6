"""Generated rcfiles: fetchmail and our parser agree on accept/reject and, when
accepted, on the whole dump. ``RCFILE_GENERATED_EXAMPLES`` raises the count
(the suite runs 600; a one-off run of 5000 is reported in README)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings

from .differential import compare
from .strategies import rcfile_text

if TYPE_CHECKING:
    from .oracle import Oracle

pytestmark = pytest.mark.fetchmail

EXAMPLES = int(os.environ.get("RCFILE_GENERATED_EXAMPLES", "600"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(text=rcfile_text())
def test_generated_rcfiles_agree_with_fetchmail(oracle: Oracle, text: str) -> None:
    outcome = compare(oracle, text.encode("utf-8", "surrogateescape"))
    assert outcome.agree, outcome.explain()
