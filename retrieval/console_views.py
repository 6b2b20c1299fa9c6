"""The console: the dashboard (/) and the mailbox list (/mailboxes/).

Both read through retrieval.console, scoped to the person; the list's bulk
actions change state only through retrieval.services.console, on the mailboxes
the person may change (a foreign or read-only id is silently left alone, as the
single-object pages answer 404 for it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import format_html_join
from django.views.decorators.http import require_GET, require_POST

from retrieval import console
from retrieval.display import shown_to
from retrieval.engine.report import ExitCode
from retrieval.models import Mailbox
from retrieval.services.console import BULK_ACTIONS, mailboxes_bulk
from retrieval.views import EXIT_CODE_MEANINGS

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.http import HttpResponse
    from django.utils.safestring import SafeString

    from retrieval.http import AuthenticatedHttpRequest


PER_PAGE = 50
RUNNING_REFRESH_SECONDS = 5


def _meaning(exit_code: int | None) -> str:
    """What a fetchmail exit status means, in the words of the run's page."""
    if exit_code is None:
        return ""
    try:
        return EXIT_CODE_MEANINGS.get(ExitCode(exit_code), "")
    except ValueError:
        return ""


def _url_maker(name: str, arity: int) -> Callable[..., str]:
    """``reverse(name, args=...)`` for many rows: reversed once with stand-in
    numbers that are then replaced (100 reverses were a tenth of a list page)."""
    stand_ins = [str(_STAND_IN + i) for i in range(arity)]
    pattern = reverse(name, args=stand_ins)

    def url(*args: int) -> str:
        made = pattern
        for stand_in, value in zip(stand_ins, args, strict=True):
            made = made.replace(stand_in, str(value), 1)
        return made

    return url


_STAND_IN = 9_876_543_210


# --- the dashboard --------------------------------------------------------------------


def _running(request: AuthenticatedHttpRequest) -> dict[str, object]:
    zone = console.person_zone(request.user)
    runs = console.running_polls(console.scope(request.user))
    return {
        "running": [(run, console.when(run.started_at, zone)) for run in runs],
        "running_max": console.RUNNING_SHOWN,
    }


@login_required
@require_GET
def dashboard(request: AuthenticatedHttpRequest) -> HttpResponse:
    user = request.user
    span = request.GET.get("range", "24h")
    if span not in console.RANGES:
        span = "24h"
    zone = console.person_zone(user)
    mine = console.scope(user)
    errors = []
    for run in console.recent_errors(mine):
        shown = shown_to(user, run.mailbox)
        errors.append(
            {
                "run": run,
                "meaning": _meaning(run.exit_code) or run.get_outcome_display(),
                "error": shown.text(run.error),
                "when": console.when(run.finished_at or run.started_at, zone),
            }
        )
    buckets = console.traffic(
        mine, span=span, zone=zone, domains=console.whole_domains(user)
    )
    domains = console.per_domain(span=span) if user.is_superuser else None
    # A superuser's tiles add up the per-domain rows: the state of 10,000
    # mailboxes is looked up once, not twice.
    counts = (
        {key: sum(row[key] for row in domains) for key in console.STATES}
        if domains is not None
        else console.state_counts(mine)
    )
    context = {
        "tiles": [(key, console.STATES[key], n) for key, n in counts.items()],
        "states": console.STATES,
        "errors": errors,
        "span": span,
        "spans": list(console.RANGES),
        "zone": str(zone),
        "charts": [
            console.chart(buckets, "messages", "Messages delivered", "bar-messages"),
            console.chart(buckets, "errors", "Failed polls", "bar-errors"),
        ],
        "totals": {
            "polls": sum(b.polls for b in buckets),
            "errors": sum(b.errors for b in buckets),
            "messages": sum(b.messages for b in buckets),
            "bytes": sum(b.bytes for b in buckets),
        },
        "domains": domains,
        "domain_rows": _domain_rows(domains) if domains is not None else "",
        "refresh": RUNNING_REFRESH_SECONDS,
        **_running(request),
    }
    return render(request, "retrieval/dashboard.html", context)


# The per-domain table's columns after the name, as its header lists them.
DOMAIN_COLUMNS = (*console.STATES, "polls", "messages", "errors")


def _domain_rows(domains: list[dict[str, Any]]) -> SafeString:
    """The per-domain table's rows, made here: a row per domain (200 and more on
    a large installation) was 1,800 template variables, a fifth of a
    superuser's dashboard (bench/console.py)."""
    cells = '<td class="num">{}</td>' * len(DOMAIN_COLUMNS)
    return format_html_join(
        "\n",
        "<tr><td>{}</td>" + cells + "</tr>",
        ((row["name"], *(row[key] for key in DOMAIN_COLUMNS)) for row in domains),
    )


@login_required
@require_GET
def dashboard_running(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The "polls running now" panel alone, fetched again by htmx."""
    response = render(request, "retrieval/dashboard_running.html", _running(request))
    response["Cache-Control"] = "no-store"
    return response


# --- the list -------------------------------------------------------------------------


def _filter(
    chosen: str,
    choices: list[tuple[int, str]] | None,
    rows: list[dict[str, Any]],
    field: str,
) -> dict[str, object]:
    """A domain or owner filter: a select of ``choices`` (id, name), the chosen
    one marked; or, for too many to list (None), a text box matching names,
    which shows the name of an id chosen elsewhere (a link) from the page's rows."""
    if choices is None:
        text = chosen
        if chosen.isdigit() and rows:
            related = getattr(rows[0]["mailbox"], field)
            text = related.email if field == "owner" else related.name
        return {"choices": None, "text": text}
    return {
        "choices": [(pk, name, str(pk) == chosen) for pk, name in choices],
        "text": "",
    }


@login_required
@require_GET
def mailbox_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    user = request.user
    query = console.ListQuery.from_get(request.GET)
    zone = console.person_zone(user)
    ids = console.mailbox_list(user, query).values_list("pk", flat=True)
    page = Paginator(ids, PER_PAGE).get_page(request.GET.get("page"))
    rows = []
    detail_url = _url_maker("retrieval:mailbox-detail", 1)
    run_url = _url_maker("retrieval:run-detail", 2)
    for mailbox in console.page_rows(list(page.object_list)):
        shown = shown_to(user, mailbox)
        rows.append(
            {
                "mailbox": mailbox,
                "url": detail_url(mailbox.pk),
                "run_url": run_url(mailbox.pk, mailbox.last_run_id)
                if mailbox.last_run_id
                else "",
                "state_label": console.STATES[mailbox.state],
                "checked": console.when(mailbox.last_at, zone),
                "next": console.when(mailbox.next_poll_at, zone)
                if mailbox.enabled
                else {"ago": "paused", "exact": ""},
                "meaning": _meaning(mailbox.last_exit),
                "error": shown.text(mailbox.last_error or ""),
                "can_write": user.is_superuser or not mailbox.owner.is_superuser,
            }
        )
    filters = {
        k: v
        for k, v in {
            "q": query.q,
            "domain": query.domain,
            "state": query.state,
            "protocol": query.protocol,
            "owner": query.owner,
        }.items()
        if v
    }
    choices = console.filter_choices(user)
    domains, owners = choices["domains"], choices["owners"]
    # One domain in sight (a user, most domain administrators): no Domain column.
    show_domain = domains is None or len(domains) > 1
    columns = []
    for key, label in (
        ("name", "Mailbox"),
        ("state", "State"),
        ("protocol", "Protocol"),
        ("host", "Host"),
        ("user", "User name"),
        ("owner", "Owner"),
        ("domain", "Domain"),
        ("checked", "Last checked"),
        ("next", "Next poll"),
    ):
        if key == "domain" and not show_domain:
            continue
        current = query.sort.lstrip("-") == key
        descending = query.sort.startswith("-")
        target = f"-{key}" if current and not descending else key
        columns.append(
            {
                "label": label,
                "url": "?" + urlencode({**filters, "sort": target}),
                "current": current,
                "arrow": ("▼" if descending else "▲") if current else "",
            }
        )
    context = {
        "show_domain": show_domain,
        "page": page,
        "rows": rows,
        "query": query,
        "columns": columns,
        "states": console.STATES,
        "protocols": Mailbox.Protocol.choices,
        "domain_filter": _filter(query.domain, domains, rows, "domain"),
        "owner_filter": _filter(query.owner, owners, rows, "owner"),
        "owner_shown": owners is None or len(owners) > 1,
        "page_query": urlencode({**filters, "sort": query.sort}),
        "zone": str(zone),
        "actions": BULK_ACTIONS,
        "next_url": request.get_full_path(),
    }
    return render(request, "retrieval/mailbox_list.html", context)


@login_required
@require_POST
def mailbox_bulk(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Poll now, pause, resume or delete the ticked mailboxes the person may change;
    any other id is ignored without a word."""
    action = request.POST.get("action", "")
    back = request.POST.get("next", "")
    if not back.startswith(reverse("retrieval:mailbox-list")):
        back = reverse("retrieval:mailbox-list")
    ids = [int(v) for v in request.POST.getlist("ids") if v.isdigit()][:1000]
    if action not in BULK_ACTIONS:
        messages.error(request, "Choose what to do with the ticked mailboxes.")
        return redirect(back)
    if not ids:
        messages.warning(request, "Tick at least one mailbox first.")
        return redirect(back)
    targets = console.changeable(request.user).filter(pk__in=ids)
    result = mailboxes_bulk(user=request.user, action=action, mailboxes=targets)
    verb = {
        "poll": "queued for a poll",
        "pause": "paused",
        "resume": "resumed",
        "delete": "deleted",
    }[action]
    messages.success(request, f"{result.done} mailbox(es) {verb}.")
    for reason in result.skipped:
        messages.warning(request, reason)
    return redirect(back)
