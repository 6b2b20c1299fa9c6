from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from retrieval.selectors import mailboxes_visible_to


@login_required
def home(request: HttpRequest) -> HttpResponse:
    mailboxes = mailboxes_visible_to(user=request.user).select_related("owner")
    return render(request, "accounts/home.html", {"mailboxes": mailboxes})


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers and compose: the web process runs and reaches its database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
