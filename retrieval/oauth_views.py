"""The OAuth2 buttons of a mailbox page: connect (or reconnect), the provider's
answer (the callback), disconnect. Tokens never reach a page: the views only
call retrieval/services/oauth.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from retrieval import oauth
from retrieval.permissions import get_rw_mailbox_for_user
from retrieval.services import oauth as oauth_services

SOURCE = oauth_services.Purpose.SOURCE

if TYPE_CHECKING:
    from django.http import HttpResponse

    from retrieval.views import AuthenticatedHttpRequest


@login_required
@require_POST
def oauth_connect(
    request: AuthenticatedHttpRequest, pk: int, purpose: str = SOURCE
) -> HttpResponse:
    """Send the browser to the provider's consent page (authorization code flow
    with PKCE); the state and verifier (and the purpose: the source's login or
    the destination's) stay in this session."""
    mailbox = get_rw_mailbox_for_user(request.user, pk)
    try:
        url = oauth_services.oauth_consent_begin(
            session=request.session,
            user=request.user,
            mailbox=mailbox,
            provider_key=request.POST.get("provider", ""),
            purpose=purpose,
        )
    except oauth.ProviderError as exc:
        messages.error(request, f"Cannot connect: {exc}")
        return redirect("retrieval:mailbox-detail", pk=mailbox.pk)
    return redirect(url)


@login_required
@require_GET
def oauth_callback(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The provider sends the browser back here with ``code`` and ``state``
    (or ``error``). Only a state this session started, for this person and a
    mailbox they may change, is accepted."""
    try:
        pending = oauth_services.oauth_consent_take(
            session=request.session,
            user=request.user,
            state=request.GET.get("state", ""),
        )
    except oauth_services.ConsentRefused as exc:
        return render(
            request, "retrieval/oauth_refused.html", {"reason": str(exc)}, status=400
        )
    mailbox = get_rw_mailbox_for_user(request.user, pending.mailbox_id)
    error = request.GET.get("error", "")
    code = request.GET.get("code", "")
    if error or not code:
        messages.error(
            request,
            "The provider did not grant access"
            + (f" ({error[:100]})" if error else "")
            + "; nothing was changed.",
        )
        return redirect("retrieval:mailbox-detail", pk=mailbox.pk)
    try:
        oauth_services.oauth_consent_finish(mailbox=mailbox, consent=pending, code=code)
    except oauth.ProviderError as exc:
        messages.error(request, f"The connection failed: {exc}")
    else:
        messages.success(
            request,
            (
                "Destination account connected: messages are delivered with "
                "OAuth2 from now on."
                if pending.purpose == oauth_services.Purpose.DESTINATION
                else "Account connected: polls log in with OAuth2 from now on."
            ),
        )
    return redirect("retrieval:mailbox-detail", pk=mailbox.pk)


@login_required
@require_POST
def oauth_disconnect(
    request: AuthenticatedHttpRequest, pk: int, purpose: str = SOURCE
) -> HttpResponse:
    mailbox = get_rw_mailbox_for_user(request.user, pk)
    if oauth_services.oauth_disconnect(mailbox=mailbox, purpose=purpose):
        messages.success(request, "Disconnected: the stored tokens are deleted.")
    else:
        messages.info(request, "This mailbox was not connected.")
    return redirect("retrieval:mailbox-detail", pk=mailbox.pk)
