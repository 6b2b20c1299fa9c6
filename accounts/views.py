from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from retrieval.selectors import mailboxes_visible_to

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse


@login_required
def home(request: HttpRequest) -> HttpResponse:
    mailboxes = mailboxes_visible_to(user=request.user).select_related("owner")
    return render(request, "accounts/home.html", {"mailboxes": mailboxes})
