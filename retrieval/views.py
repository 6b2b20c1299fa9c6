"""The mailbox pages: a mailbox, its polls, the forms, and the buttons.

Every view finds its mailbox through retrieval.permissions (404 for a mailbox the
person cannot see, 403 for one they may only look at); changes happen only on
POST, with Django's CSRF check, through retrieval.services.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import (
    require_GET,
    require_http_methods,
    require_POST,
)

from retrieval import services
from retrieval.display import shown_to
from retrieval.engine.report import ExitCode
from retrieval.forms import MailboxForm, RulesForm, default_port
from retrieval.models import ConnectionTest, Mailbox, PollRun
from retrieval.permissions import (
    can_edit_rules,
    get_mailbox_for_user,
    get_rw_mailbox_for_user,
    owners_for,
)

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

    from accounts.models import User

    class AuthenticatedHttpRequest(HttpRequest):
        user: User  # type: ignore[assignment]


RECENT_RUNS = 20
MESSAGES_PER_PAGE = 200
TESTABLE = {Mailbox.Protocol.POP3, Mailbox.Protocol.IMAP}

EXIT_CODE_MEANINGS = {
    ExitCode.SUCCESS: "mail was delivered",
    ExitCode.NOMAIL: "there was no new mail",
    ExitCode.SOCKET: "the connection failed (refused, reset, timed out or TLS)",
    ExitCode.AUTHFAIL: "the server refused the user name or password",
    ExitCode.PROTOCOL: "the server said something a correct server would not",
    ExitCode.SYNTAX: "the mailbox's settings cannot be used",
    ExitCode.IOERR: "a file could not be read",
    ExitCode.ERROR: "the server reported an error",
    ExitCode.EXCLUDE: "the mailbox was excluded",
    ExitCode.LOCKBUSY: "the mailbox was busy (locked by the server or another poll)",
    ExitCode.SMTP: "the local listener failed",
    ExitCode.DNS: "a name did not resolve",
    ExitCode.BSMTP: "the batch SMTP file could not be written",
    ExitCode.MAXFETCH: "the poll stopped at the fetch limit; more mail waits",
    ExitCode.SERVBUSY: "the server was busy",
    ExitCode.UNDEFINED: "fetchweb failed unexpectedly",
}


def _detail(mailbox: Mailbox) -> HttpResponse:
    return redirect("retrieval:mailbox-detail", pk=mailbox.pk)


# --- reading -----------------------------------------------------------------------


@login_required
@require_GET
def mailbox_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox, can_write = get_mailbox_for_user(request.user, pk)
    runs = list(mailbox.runs.order_by("-started_at")[:RECENT_RUNS])
    shown = shown_to(request.user, mailbox)
    for run in runs:
        run.error = shown.text(run.error)  # for this page only; never saved
    mailbox.health_reason = shown.text(mailbox.health_reason)  # idem
    mda = ((mailbox.options or {}).get("user") or {}).get("mda")
    context = {
        "mailbox": mailbox,
        "can_write": can_write,
        "can_edit_rules": can_write and can_edit_rules(request.user, mailbox),
        "can_test": can_write and mailbox.protocol in TESTABLE,
        "runs": runs,
        "rules": list(mailbox.rules.all()),
        "port": mailbox.port or default_port(mailbox.protocol, mailbox.tls_mode),
        "mda": mda if request.user.is_superuser else "",
    }
    return render(request, "retrieval/mailbox_detail.html", context)


@login_required
@require_GET
def run_detail(request: AuthenticatedHttpRequest, pk: int, run_pk: int) -> HttpResponse:
    mailbox, _ = get_mailbox_for_user(request.user, pk)
    run = get_object_or_404(PollRun, pk=run_pk, mailbox=mailbox)
    page = Paginator(run.messages.all(), MESSAGES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    meaning = ""
    if run.exit_code is not None:
        try:
            meaning = EXIT_CODE_MEANINGS.get(ExitCode(run.exit_code), "")
        except ValueError:
            meaning = ""
    shown = shown_to(request.user, mailbox)
    page.object_list = list(page.object_list)
    for message in page.object_list:
        # An MDA's answer can quote its command line; for this page only.
        message.listener_reply = shown.text(message.listener_reply)
    context = {
        "mailbox": mailbox,
        "run": run,
        "page": page,
        "meaning": meaning,
        "greeting": shown.text(run.greeting),
        "error": shown.text(run.error),
        "transcript": shown.text(run.transcript),
    }
    return render(request, "retrieval/run_detail.html", context)


# --- forms ---------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def mailbox_add(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = MailboxForm(
        request.POST if request.method == "POST" else None,
        instance=services.mailbox_new(),
        editor=request.user,
        owners=owners_for(request.user),
    )
    if request.method == "POST" and form.is_valid():
        try:
            mailbox = services.mailbox_save(
                mailbox=form.instance,
                owner=form.owner(),
                creator=request.user,
                editor=request.user,
                new_password=form.cleaned_data["new_password"],
                mda=form.cleaned_data.get("mda"),
            )
        except services.QuotaExceeded as exc:
            # Another request took the last place since the form was checked.
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"The mailbox {mailbox} was added.")
            return _detail(mailbox)
    return render(request, "retrieval/mailbox_form.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def mailbox_edit(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = get_rw_mailbox_for_user(request.user, pk)
    form = MailboxForm(
        request.POST if request.method == "POST" else None,
        instance=mailbox,
        editor=request.user,
    )
    if request.method == "POST" and form.is_valid():
        services.mailbox_save(
            mailbox=form.instance,
            editor=request.user,
            new_password=form.cleaned_data["new_password"],
            clear_password=form.cleaned_data.get("clear_password", False),
            mda=form.cleaned_data.get("mda"),
        )
        messages.success(request, "The changes were saved.")
        return _detail(mailbox)
    # A failed form has already written its values into the instance: show the
    # stored name in the heading, not the one just refused.
    mailbox.refresh_from_db()
    return render(
        request, "retrieval/mailbox_form.html", {"form": form, "mailbox": mailbox}
    )


@login_required
@require_http_methods(["GET", "POST"])
def mailbox_rules(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = get_rw_mailbox_for_user(request.user, pk)
    if not can_edit_rules(request.user, mailbox):
        raise PermissionDenied("Only a domain administrator may change these rules.")
    stored = [(r.remote, r.local) for r in mailbox.rules.all()]
    form = RulesForm(
        request.POST if request.method == "POST" else None,
        initial={"rules": RulesForm.as_text(stored)},
        mailbox=mailbox,
        editor=request.user,
    )
    if request.method == "POST" and form.is_valid():
        services.mailbox_rules_replace(
            mailbox=mailbox, rules=form.cleaned_data["rules"]
        )
        messages.success(request, "The multidrop rules were saved.")
        return _detail(mailbox)
    return render(
        request, "retrieval/mailbox_rules.html", {"form": form, "mailbox": mailbox}
    )


@login_required
@require_http_methods(["GET", "POST"])
def mailbox_delete(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation; POST deletes."""
    mailbox = get_rw_mailbox_for_user(request.user, pk)
    if request.method == "POST":
        try:
            services.mailbox_delete(mailbox=mailbox)
        except services.MailboxBusy as exc:
            messages.error(request, str(exc))
            return _detail(mailbox)
        messages.success(request, f"The mailbox {mailbox} was deleted.")
        return redirect("home")
    return render(request, "retrieval/mailbox_delete.html", {"mailbox": mailbox})


# --- buttons -------------------------------------------------------------------------


@login_required
@require_POST
def mailbox_poll(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = get_rw_mailbox_for_user(request.user, pk)
    if not services.action_allowed(user=request.user, mailbox=mailbox, action="poll"):
        messages.warning(
            request, "A poll was asked for a moment ago: wait a few seconds."
        )
        return _detail(mailbox)
    services.mailbox_poll_request(mailbox=mailbox)
    messages.success(
        request, "A poll was queued. Its result appears under Last polls when done."
    )
    return _detail(mailbox)


@login_required
@require_POST
def mailbox_resume(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Take a mailbox paused after repeated failures back into the schedule."""
    mailbox = get_rw_mailbox_for_user(request.user, pk)
    if services.mailbox_resume(mailbox=mailbox):
        messages.success(request, "Polling resumed: the next poll starts shortly.")
    else:
        messages.info(request, "This mailbox was not paused.")
    return _detail(mailbox)


@login_required
@require_POST
def mailbox_test(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Queue a connection test and show its page at once: the worker connects,
    the page follows its status (connection_test_status)."""
    mailbox = get_rw_mailbox_for_user(request.user, pk)
    if mailbox.protocol not in TESTABLE:
        messages.warning(request, "Only POP3 and IMAP mailboxes can be tested.")
        return _detail(mailbox)
    if not services.action_allowed(user=request.user, mailbox=mailbox, action="test"):
        messages.warning(
            request, "The connection was tested a moment ago: wait a few seconds."
        )
        return _detail(mailbox)
    try:
        probe = services.connection_test_request(mailbox=mailbox, user=request.user)
    except services.ProbeLimit as exc:
        messages.warning(request, str(exc))
        return _detail(mailbox)
    return redirect("retrieval:connection-test", pk=mailbox.pk, test_pk=probe.pk)


def _connection_test(
    request: AuthenticatedHttpRequest, pk: int, test_pk: int
) -> dict[str, object]:
    mailbox, _ = get_mailbox_for_user(request.user, pk)
    probe = get_object_or_404(ConnectionTest, pk=test_pk, mailbox=mailbox)
    shown = shown_to(request.user, mailbox)
    return {
        "mailbox": mailbox,
        "probe": probe,
        "greeting": shown.text(probe.greeting),
        "error": shown.text(probe.error),
        "transcript": shown.text(probe.transcript),
        "lost": probe.lost(stale_after=services.PROBE_STALE_SECONDS),
        "status_url": reverse(
            "retrieval:connection-test-status", args=[mailbox.pk, probe.pk]
        ),
    }


@login_required
@require_GET
def connection_test(
    request: AuthenticatedHttpRequest, pk: int, test_pk: int
) -> HttpResponse:
    context = _connection_test(request, pk, test_pk)
    return render(request, "retrieval/mailbox_test.html", context)


@login_required
@require_GET
def connection_test_status(
    request: AuthenticatedHttpRequest, pk: int, test_pk: int
) -> HttpResponse:
    """The status part of the page alone, fetched again by static/js/poll-status.js
    until the test is done."""
    context = _connection_test(request, pk, test_pk)
    response = render(request, "retrieval/connection_test_status.html", context)
    response["Cache-Control"] = "no-store"
    return response
