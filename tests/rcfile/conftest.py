"""Fixtures for the rcfile tests (no Django)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .oracle import Oracle, have_fetchmail

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="session")
def oracle() -> Iterator[Oracle]:
    """fetchmail itself, run as an unprivileged user on files it accepts to read."""
    if not have_fetchmail():
        pytest.skip("the fetchmail binary is not installed")
    o = Oracle()
    yield o
    o.close()
