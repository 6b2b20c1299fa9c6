"""The mailbox pages: a mailbox, its polls, the forms, and the buttons.

Every view finds its mailbox through retrieval.permissions (404 for a mailbox the
person cannot see, 403 for one they may only look at); changes happen only on
POST, with Django's CSRF check, through retrieval.services.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import (
    require_GET,
    require_http_methods,
    require_POST,
)

from retrieval import explain, oauth, presets, services
from retrieval.display import shown_to
from retrieval.engine.report import ExitCode
from retrieval.forms import MailboxForm, MultidropForm, default_port
from retrieval.models import ConnectionTest, Mailbox, OAuthGrant, PollRun
from retrieval.permissions import (
    can_edit_rules,
    get_mailbox_for_user,
    get_rw_mailbox_for_user,
    owners_for,
)

if TYPE_CHECKING:
    from datetime import timedelta

    from django.http import HttpRequest

    from retrieval.http import AuthenticatedHttpRequest


RUNS_PER_PAGE = 20
# A transcript longer than this is folded on the poll page (<details>).
TRANSCRIPT_FOLD_LINES = 40
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
    # Every poll still kept (retention removes the oldest), newest first, by page.
    page = Paginator(
        mailbox.runs.order_by("-started_at", "-pk"), RUNS_PER_PAGE
    ).get_page(request.GET.get("page"))
    runs = list(page.object_list)
    page.object_list = runs
    port = mailbox.port or default_port(mailbox.protocol, mailbox.tls_mode)
    # The newest poll, explained above the table on page 1 only.
    last = runs[0] if runs and page.number == 1 else None
    last_explanation = (
        explain.for_mailbox(last.error, last.exit_code, mailbox, port)
        if last is not None and last.finished_at is not None
        else None
    )
    shown = shown_to(request.user, mailbox)
    for run in runs:
        run.error = shown.text(run.error)  # for this page only; never saved
    mailbox.health_reason = shown.text(mailbox.health_reason)  # idem
    mda = ((mailbox.options or {}).get("user") or {}).get("mda")
    after = request.GET.get("after")
    context = {
        "mailbox": mailbox,
        "can_write": can_write,
        "can_edit_rules": can_write and can_edit_rules(request.user, mailbox),
        "can_test": can_write and mailbox.protocol in TESTABLE,
        "runs": runs,
        "page": page,
        "last_run": last,
        "last_explanation": last_explanation,
        "rules": list(mailbox.rules.all()),
        "port": port,
        "mda": mda if request.user.is_superuser else "",
        **_oauth_context(mailbox),
        # Set by "Poll now": the page follows that poll (mailbox_poll_status).
        "poll_status_url": (
            reverse("retrieval:mailbox-poll-status", args=[mailbox.pk])
            + f"?after={int(after)}"
            if after is not None and after.isdigit()
            else ""
        ),
    }
    response = render(request, "retrieval/mailbox_detail.html", context)
    known = list(oauth.providers().values())
    if known and settings.CONTENT_SECURITY_POLICY:
        response["Content-Security-Policy"] = oauth.form_action_policy(
            settings.CONTENT_SECURITY_POLICY, known
        )
    return response


def _oauth_context(mailbox: Mailbox) -> dict[str, object]:
    """The OAuth2 panels: one for the source's login and, for delivery into an
    IMAP mailbox, one for the destination's; each with its grant (never its
    tokens) and the providers it may connect to."""
    providers = oauth.providers()
    purposes = [OAuthGrant.Purpose.SOURCE]
    if mailbox.delivery_kind == Mailbox.DeliveryKind.IMAP:
        purposes.append(OAuthGrant.Purpose.DESTINATION)
    sides = [_oauth_side(mailbox, providers, purpose) for purpose in purposes]
    source = sides[0]
    return {
        "oauth_providers": list(providers.values()),
        "oauth_sides": [side for side in sides if side["providers"] or side["grant"]],
        # The grants that no longer work: the "reconnect needed" note's buttons.
        "oauth_broken": [side for side in sides if side["broken"]],
        "oauth_grant": source["grant"],
        "oauth_grant_label": source["label"],
    }


# Per purpose: the Mailbox fields of that login, and its buttons' URL names.
_OAUTH_SIDES: dict[str, tuple[str, str, str, str]] = {
    OAuthGrant.Purpose.SOURCE: (
        "auth",
        "host",
        "retrieval:oauth-connect",
        "retrieval:oauth-disconnect",
    ),
    OAuthGrant.Purpose.DESTINATION: (
        "destination_auth",
        "destination_host",
        "retrieval:oauth-destination-connect",
        "retrieval:oauth-destination-disconnect",
    ),
}


def _oauth_side(
    mailbox: Mailbox, providers: dict[str, oauth.Provider], purpose: str
) -> dict[str, object]:
    auth_field, host_field, connect, disconnect = _OAUTH_SIDES[purpose]
    auth, host = getattr(mailbox, auth_field), getattr(mailbox, host_field)
    # Only a token login uses a grant (services.specs): a password login's
    # page costs no query for it.
    grant = (
        OAuthGrant.objects.filter(mailbox=mailbox, purpose=purpose).first()
        if auth in (Mailbox.Auth.XOAUTH2, Mailbox.Auth.OAUTHBEARER)
        else None
    )
    label = ""
    if grant is not None:
        known = providers.get(grant.provider)
        label = known.label if known is not None else grant.provider
    # A server of a preset with a configured provider (imap.gmail.com: Google)
    # is offered that provider's button alone.
    preset = presets.preset_for_host(host)
    offered = list(providers.values())
    if preset is not None and preset.oauth_provider in providers:
        offered = [providers[preset.oauth_provider]]
    return {
        "purpose": purpose,
        "destination": purpose == OAuthGrant.Purpose.DESTINATION,
        "grant": grant,
        "label": label,
        "broken": grant is not None
        and not (grant.access_token_encrypted or grant.refresh_token_encrypted),
        "token_login": auth in (Mailbox.Auth.XOAUTH2, Mailbox.Auth.OAUTHBEARER),
        "providers": offered,
        "connect_url": reverse(connect, args=[mailbox.pk]),
        "disconnect_url": reverse(disconnect, args=[mailbox.pk]),
    }


@login_required
@require_GET
def mailbox_poll_status(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """What became of the poll asked for with "Poll now": the first poll started
    after run ``after`` (the newest when the button was pressed). Fetched again by
    static/js/poll-status.js until it is finished."""
    mailbox, _ = get_mailbox_for_user(request.user, pk)
    after = request.GET.get("after", "")
    run = (
        mailbox.runs.filter(pk__gt=int(after)).order_by("pk").first()
        if after.isdigit()
        else None
    )
    context: dict[str, object] = {"mailbox": mailbox, "run": run}
    if run is not None:
        shown = shown_to(request.user, mailbox)
        port = mailbox.port or default_port(mailbox.protocol, mailbox.tls_mode)
        context["error"] = shown.text(run.error)
        if run.finished_at is None:
            context["progress"] = services.progress_text(
                kind="run", pk=run.pk, host=mailbox.host
            )
        context["explanation"] = (
            explain.for_mailbox(run.error, run.exit_code, mailbox, port)
            if run.finished_at is not None
            else None
        )
    response = render(request, "retrieval/mailbox_poll_status.html", context)
    response["Cache-Control"] = "no-store"
    return response


def _duration(delta: timedelta) -> str:
    seconds = max(delta.total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.1f} seconds"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


_TLS_LINE = re.compile(
    r"^\*: TLS established: (?P<version>\S+)(?: (?P<cipher>\S+))?", re.M
)
# The client's login commands to the mail server: IMAP AUTHENTICATE/LOGIN, POP3
# AUTH/USER/APOP. Only those before the first talk to a listener (LHLO/EHLO/HELO).
_LOGIN_LINE = re.compile(
    r"^C: (?:(?:\S+ )?(?:AUTHENTICATE|AUTH) (?P<sasl>[A-Z0-9_-]+)|"
    r"\S+ (?P<login>LOGIN) |(?P<user>USER) |(?P<apop>APOP) )",
    re.M,
)
_LISTENER_START = re.compile(r"^C: (?:LHLO|EHLO|HELO) ", re.M)


def session_facts(transcript: str) -> dict[str, str]:
    """TLS version, cipher and login mechanism, as the engine's transcript records
    them ("*: TLS established: TLSv1.3 TLS_AES_256_GCM_SHA384"; the client's login
    command). Empty strings for what it does not show."""
    facts = {"tls_version": "", "tls_cipher": "", "auth": ""}
    cut = _LISTENER_START.search(transcript)
    head = transcript[: cut.start()] if cut else transcript
    tls = _TLS_LINE.search(head)
    if tls:
        facts["tls_version"] = tls["version"]
        facts["tls_cipher"] = tls["cipher"] or ""
    logins = list(_LOGIN_LINE.finditer(head))
    if logins:
        last = logins[-1]
        if last["sasl"]:
            facts["auth"] = f"SASL {last['sasl']}"
        elif last["login"]:
            facts["auth"] = "IMAP LOGIN (password)"
        elif last["user"]:
            facts["auth"] = "POP3 USER/PASS (password)"
        else:
            facts["auth"] = "POP3 APOP"
    return facts


def _run_for(
    request: AuthenticatedHttpRequest, pk: int, run_pk: int
) -> tuple[Mailbox, PollRun]:
    mailbox, _ = get_mailbox_for_user(request.user, pk)
    return mailbox, get_object_or_404(PollRun, pk=run_pk, mailbox=mailbox)


@login_required
@require_GET
def run_detail(request: AuthenticatedHttpRequest, pk: int, run_pk: int) -> HttpResponse:
    mailbox, run = _run_for(request, pk, run_pk)
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
    transcript = shown.text(run.transcript)
    port = mailbox.port or default_port(mailbox.protocol, mailbox.tls_mode)
    context = {
        "mailbox": mailbox,
        "run": run,
        "page": page,
        "meaning": meaning,
        "greeting": shown.text(run.greeting),
        "error": shown.text(run.error),
        "explanation": explain.for_mailbox(run.error, run.exit_code, mailbox, port),
        "transcript": transcript,
        "transcript_lines": transcript.count("\n") + 1 if transcript else 0,
        "fold": transcript.count("\n") + 1 > TRANSCRIPT_FOLD_LINES,
        "facts": session_facts(transcript),
        "duration": (
            _duration(run.finished_at - run.started_at) if run.finished_at else ""
        ),
    }
    return render(request, "retrieval/run_detail.html", context)


@login_required
@require_GET
def run_transcript(
    request: AuthenticatedHttpRequest, pk: int, run_pk: int
) -> HttpResponse:
    """The poll's transcript as a text file: what the poll page shows, command
    lines hidden from non-superusers the same way (retrieval.display)."""
    mailbox, run = _run_for(request, pk, run_pk)
    text = shown_to(request.user, mailbox).text(run.transcript)
    response = HttpResponse(
        text + "\n" if text else "", content_type="text/plain; charset=utf-8"
    )
    response["Content-Disposition"] = (
        f'attachment; filename="fetchweb-poll-{mailbox.pk}-{run.pk}.txt"'
    )
    response["Cache-Control"] = "no-store"
    return response


# --- forms ---------------------------------------------------------------------------


def _preset_initial(
    request: HttpRequest,
) -> tuple[presets.Preset | None, dict[str, object]]:
    """``?preset=KEY`` (the select's "Fill in" without JavaScript): the form
    starts with that provider's server settings."""
    if request.method != "GET":
        return None, {}
    chosen = presets.preset(request.GET.get("preset", ""))
    initial: dict[str, object] = {}
    if chosen is not None:
        initial = {
            "protocol": chosen.protocol,
            "host": chosen.host,
            "port": chosen.port,
            "tls_mode": chosen.tls_mode,
        }
    # ``?destination_preset=KEY``: the "Where messages go" select's, the same way.
    into = presets.destination_preset(request.GET.get("destination_preset", ""))
    if into is not None:
        initial |= {
            "delivery_kind": Mailbox.DeliveryKind.IMAP,
            "destination_host": into.host,
            "destination_port": into.port,
            "destination_tls_mode": into.tls_mode,
        }
        # With its provider configured, the mailbox page offers "Connect a
        # ... account" for the destination: no password is asked for then.
        if into.oauth_provider in oauth.providers():
            initial["destination_auth"] = Mailbox.Auth.XOAUTH2
    return chosen, initial


def _form_page(
    request: AuthenticatedHttpRequest,
    form: MailboxForm,
    chosen: presets.Preset | None,
    mailbox: Mailbox | None = None,
) -> HttpResponse:
    host = str(form["host"].value() or "")
    into = (
        str(form["destination_host"].value() or "")
        if "destination_host" in form.fields
        else ""
    )
    context = {
        "form": form,
        "mailbox": mailbox,
        "presets": presets.grouped(),
        "preset": chosen or presets.preset_for_host(host),
        "destination_presets": presets.DESTINATION_PRESETS,
        "destination_preset": presets.preset_for_host(
            into, presets.DESTINATION_PRESETS
        ),
        # The providers an OAuth2 login can be connected with: a preset of
        # theirs sets the destination's login to XOAUTH2 (mailbox-presets.js).
        "oauth_ready": list(oauth.providers()),
    }
    return render(request, "retrieval/mailbox_form.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def mailbox_add(request: AuthenticatedHttpRequest) -> HttpResponse:
    chosen, initial = _preset_initial(request)
    form = MailboxForm(
        request.POST if request.method == "POST" else None,
        instance=services.mailbox_new(),
        editor=request.user,
        owners=owners_for(request.user),
        initial=initial,
    )
    if request.method == "POST" and form.is_valid():
        try:
            mailbox = services.mailbox_save(
                mailbox=form.instance,
                owner=form.owner(),
                creator=request.user,
                editor=request.user,
                new_password=form.cleaned_data["new_password"],
                destination_password=form.cleaned_data.get("destination_password", ""),
                mda=form.cleaned_data.get("mda"),
                user_options=form.user_options(),
            )
        except services.QuotaExceeded as exc:
            # Another request took the last place since the form was checked.
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"The mailbox {mailbox} was added.")
            return _detail(mailbox)
    return _form_page(request, form, chosen)


@login_required
@require_http_methods(["GET", "POST"])
def mailbox_edit(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = get_rw_mailbox_for_user(request.user, pk)
    chosen, initial = _preset_initial(request)
    form = MailboxForm(
        request.POST if request.method == "POST" else None,
        instance=mailbox,
        editor=request.user,
        initial=initial,
    )
    if request.method == "POST" and form.is_valid():
        services.mailbox_save(
            mailbox=form.instance,
            editor=request.user,
            new_password=form.cleaned_data["new_password"],
            destination_password=form.cleaned_data.get("destination_password", ""),
            clear_password=form.cleaned_data.get("clear_password", False),
            mda=form.cleaned_data.get("mda"),
            user_options=form.user_options(),
        )
        messages.success(request, "The changes were saved.")
        return _detail(mailbox)
    # A failed form has already written its values into the instance: show the
    # stored name in the heading, not the one just refused.
    mailbox.refresh_from_db()
    return _form_page(request, form, chosen, mailbox)


@login_required
@require_http_methods(["GET", "POST"])
def mailbox_rules(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = get_rw_mailbox_for_user(request.user, pk)
    if not can_edit_rules(request.user, mailbox):
        raise PermissionDenied("Only a domain administrator may change these rules.")
    form = MultidropForm(
        request.POST if request.method == "POST" else None,
        initial=MultidropForm.initial_of(services.multidrop_of(mailbox=mailbox)),
        mailbox=mailbox,
        editor=request.user,
    )
    if request.method == "POST" and form.is_valid():
        services.mailbox_multidrop_save(mailbox=mailbox, values=form.values())
        messages.success(request, "The multidrop settings were saved.")
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
    newest = mailbox.runs.order_by("-pk").values_list("pk", flat=True).first()
    services.mailbox_poll_request(mailbox=mailbox)
    messages.success(request, "A poll was queued; its progress shows below.")
    # The page follows the poll that starts next (mailbox_poll_status).
    url = reverse("retrieval:mailbox-detail", args=[mailbox.pk])
    return redirect(f"{url}?after={newest or 0}")


@login_required
@require_POST
def mailbox_resume(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Take a mailbox back into the schedule: paused by its owner (enabled off),
    or paused by the scheduler after repeated failures, or both."""
    mailbox = get_rw_mailbox_for_user(request.user, pk)
    resumed = services.mailbox_set_enabled(mailbox=mailbox, enabled=True)
    if services.mailbox_resume(mailbox=mailbox) or resumed:
        messages.success(request, "Polling resumed: the next poll starts shortly.")
    else:
        messages.info(request, "This mailbox was not paused.")
    return _detail(mailbox)


@login_required
@require_POST
def mailbox_pause(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Stop scheduled polls until Resume; Poll now still works."""
    mailbox = get_rw_mailbox_for_user(request.user, pk)
    if services.mailbox_set_enabled(mailbox=mailbox, enabled=False):
        messages.success(request, "Polling paused: no scheduled poll until Resume.")
    else:
        messages.info(request, "This mailbox was already paused.")
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
    port = mailbox.port or default_port(mailbox.protocol, mailbox.tls_mode)
    return {
        "mailbox": mailbox,
        "probe": probe,
        "greeting": shown.text(probe.greeting),
        "error": shown.text(probe.error),
        "explanation": (
            explain.for_mailbox(probe.error, None, mailbox, port)
            if probe.done and not probe.ok
            else None
        ),
        "transcript": shown.text(probe.transcript),
        "lost": probe.lost(stale_after=services.PROBE_STALE_SECONDS),
        "progress": (
            services.progress_text(kind="test", pk=probe.pk, host=mailbox.host)
            if probe.status == ConnectionTest.Status.RUNNING
            else ""
        ),
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
