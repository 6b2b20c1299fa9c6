"""Read /metrics the way Prometheus does."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``
    (0 when there is none: a labelled counter appears at its first increment)."""
    return sum(
        v
        for n, ls, v in samples(text)
        if n == name and all(ls.get(k) == want for k, want in labels.items())
    )


def scrape(client: Any, **headers: str) -> str:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()
