"""The project's URLs plus one that the matrix has no entry for: proves that
test_every_url_has_an_expectation notices a new URL."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from fetchweb.urls import urlpatterns as project_urls


def export(request: HttpRequest, pk: int) -> HttpResponse:
    return HttpResponse(str(pk))


urlpatterns = [
    *project_urls,
    path(
        "extra/",
        include(([path("<int:pk>/export/", export, name="export")], "retrieval-extra")),
    ),
]
