"""Domains and people in the browser (issue 13 item 6).

Who sees what:

* superusers: every domain (create, rename, name its administrators), every
  person, the delivery targets offered to domains, the audit log;
* domain administrators: the people of their domains (add, invite, disable,
  remove) and their domains' defaults. Another domain's person does not exist
  for them (404); nothing here makes a superuser;
* everyone: their own time zone.

A person who administers no domain gets 403 on the people and domain pages,
whatever the id: the refusal says nothing about what exists. Every write goes
through retrieval.services; the audit log records it from the model signals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, ProtectedError, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import (
    require_GET,
    require_http_methods,
    require_POST,
)

from accounts.models import AuditEvent, DeliveryTarget, Domain, User
from accounts.people_forms import (
    ActiveForm,
    AddPersonForm,
    AuditFilterForm,
    DeleteTargetForm,
    DeliveryTargetForm,
    DomainDefaultsForm,
    PersonForm,
    TimeZoneForm,
)
from retrieval import services
from retrieval.api.forms import DomainForm
from retrieval.selectors import domains_administered_by, people_visible_to

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

PAGE_SIZE = 50


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)
    return user


def _administrator(request: HttpRequest) -> User:
    user = _user(request)
    if not (user.is_superuser or user.is_domain_admin):
        raise PermissionDenied(
            "Only domain administrators and superusers manage people."
        )
    return user


def _superuser(request: HttpRequest) -> User:
    user = _user(request)
    if not user.is_superuser:
        raise PermissionDenied("Only a superuser may do this.")
    return user


def _page(request: HttpRequest, rows: Any) -> Any:
    return Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))


def _query(request: HttpRequest) -> str:
    """The filters of a paginated list, without the page number."""
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


# --- people -------------------------------------------------------------------------


def _people(user: User) -> Any:
    """The people ``user`` manages: their domains' members (themselves shown, not
    acted on), or everyone for a superuser. A member who also administers a
    domain that ``user`` does not is left to the superusers: their page would
    name that domain and their mailboxes in it."""
    rows = people_visible_to(user=user)
    if not user.is_superuser:
        elsewhere = Domain.objects.exclude(pk__in=user.administered_domains.all())
        rows = rows.exclude(administered_domains__in=elsewhere)
    return rows.annotate(mailbox_count=Count("mailboxes", distinct=True))


def _person(user: User, pk: int) -> User:
    person: User = get_object_or_404(_people(user), pk=pk)
    return person


@login_required
@require_GET
def people(request: HttpRequest) -> HttpResponse:
    user = _administrator(request)
    domains = domains_administered_by(user=user)
    rows = _people(user).prefetch_related("administered_domains").order_by("email")
    text = request.GET.get("q", "").strip()
    if text:
        rows = rows.filter(Q(email__icontains=text) | Q(full_name__icontains=text))
    domain = request.GET.get("domain", "")
    if domain.isdigit():
        rows = rows.filter(domain_id=int(domain))
    return render(
        request,
        "accounts/people.html",
        {
            "page": _page(request, rows),
            "page_query": _query(request),
            "domains": domains,
            "q": text,
            "domain": domain,
        },
    )


def _new_person(request: HttpRequest, *, invite: bool) -> HttpResponse:
    """Add someone with a password chosen for them, or invite them to choose one."""
    user = _administrator(request)
    form_class = PersonForm if invite else AddPersonForm
    form = form_class(
        request.POST if request.method == "POST" else None,
        domains=domains_administered_by(user=user),
        superuser=user.is_superuser,
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        who = {k: data[k] for k in ("email", "full_name", "domain")}
        if invite:
            person = services.person_invite(
                **who, site_url=request.build_absolute_uri("/"), invited_by=user
            )
            done = (
                f"An invitation was mailed to {person.email}: its link lets them "
                "choose a password and sign in."
            )
        else:
            person = services.person_add(**who, password=data["password1"])
            done = f"{person.email} was added and may sign in now."
        messages.success(request, done)
        return redirect("people:person", person_pk=person.pk)
    return render(
        request, "accounts/person_form.html", {"form": form, "invite": invite}
    )


@login_required
@require_http_methods(["GET", "POST"])
def person_add(request: HttpRequest) -> HttpResponse:
    return _new_person(request, invite=False)


@login_required
@require_http_methods(["GET", "POST"])
def person_invite(request: HttpRequest) -> HttpResponse:
    return _new_person(request, invite=True)


@login_required
@require_http_methods(["GET", "POST"])
def person_detail(request: HttpRequest, person_pk: int) -> HttpResponse:
    """One person; POST disables or enables them."""
    user = _administrator(request)
    person = _person(user, person_pk)
    if request.method == "POST":
        form = ActiveForm(request.POST)
        if form.is_valid():
            active = form.cleaned_data["action"] == "enable"
            try:
                services.person_set_active(person=person, active=active, actor=user)
            except services.SelfRefused as exc:
                messages.error(request, str(exc))
            else:
                messages.success(
                    request,
                    f"{person.email} was {'enabled' if active else 'disabled'}.",
                )
                return redirect("people:person", person_pk=person.pk)
        else:
            messages.error(request, "Choose to disable or to enable.")
    return render(
        request,
        "accounts/person_detail.html",
        {
            "person": person,
            "mailboxes": person.mailboxes.order_by("host", "username")[:PAGE_SIZE],
            "administers": person.administered_domains.all(),
            "is_self": person.pk == user.pk,
        },
    )


@login_required
@require_POST
def person_invite_resend(request: HttpRequest, person_pk: int) -> HttpResponse:
    """Mail the invitation again to someone who has not chosen a password yet."""
    user = _administrator(request)
    person = _person(user, person_pk)
    try:
        services.person_invite_resend(
            person=person, site_url=request.build_absolute_uri("/"), invited_by=user
        )
    except services.InvitationRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"The invitation was mailed again to {person.email}, with a new link.",
        )
    return redirect("people:person", person_pk=person.pk)


@login_required
@require_http_methods(["GET", "POST"])
def person_remove(request: HttpRequest, person_pk: int) -> HttpResponse:
    user = _administrator(request)
    person = _person(user, person_pk)
    if request.method == "POST":
        email = person.email
        try:
            count = services.person_remove(person=person, actor=user)
        except (services.SelfRefused, services.MailboxBusy) as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request,
                f"{email} was removed, with {count} mailbox{'es' if count != 1 else ''}.",
            )
            return redirect("people:people")
    return render(
        request,
        "accounts/person_remove.html",
        {
            "person": person,
            "mailboxes": person.mailboxes.order_by("host", "username"),
            "is_self": person.pk == user.pk,
        },
    )


# --- domains ------------------------------------------------------------------------


@login_required
@require_GET
def domains(request: HttpRequest) -> HttpResponse:
    user = _administrator(request)
    rows = (
        domains_administered_by(user=user)
        .select_related("default_delivery")
        .prefetch_related("admins")
        .annotate(
            member_count=Count("members", distinct=True),
            mailbox_count=Count("mailboxes", distinct=True),
        )
        .order_by("name")
    )
    return render(
        request,
        "accounts/domains.html",
        {"page": _page(request, rows), "page_query": _query(request)},
    )


def _domain_form(request: HttpRequest, domain: Domain | None) -> HttpResponse:
    form = DomainForm(
        request.POST if request.method == "POST" else None,
        instance=domain,
        initial={"admins": list(domain.admins.all())} if domain else None,
    )
    if request.method == "POST" and form.is_valid():
        saved = services.domain_save(
            domain=form.instance, admins=form.cleaned_data["admins"]
        )
        messages.success(request, f"The domain {saved.name} was saved.")
        return redirect("people:domain-edit", domain_pk=saved.pk)
    return render(
        request, "accounts/domain_form.html", {"form": form, "domain": domain}
    )


@login_required
@require_http_methods(["GET", "POST"])
def domain_add(request: HttpRequest) -> HttpResponse:
    _superuser(request)
    return _domain_form(request, None)


@login_required
@require_http_methods(["GET", "POST"])
def domain_edit(request: HttpRequest, domain_pk: int) -> HttpResponse:
    _superuser(request)
    return _domain_form(request, get_object_or_404(Domain, pk=domain_pk))


@login_required
@require_http_methods(["GET", "POST"])
def domain_defaults(request: HttpRequest, domain_pk: int) -> HttpResponse:
    user = _administrator(request)
    domain = get_object_or_404(domains_administered_by(user=user), pk=domain_pk)
    form = DomainDefaultsForm(
        request.POST if request.method == "POST" else None, instance=domain
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        services.domain_defaults_set(
            domain=domain,
            delivery=data["default_delivery"],
            postmaster=data["default_postmaster"],
            poll_interval=data["default_poll_interval"],
        )
        messages.success(request, f"The defaults of {domain.name} were saved.")
        return redirect("people:domain-defaults", domain_pk=domain.pk)
    return render(
        request, "accounts/domain_defaults.html", {"form": form, "domain": domain}
    )


@login_required
@require_http_methods(["GET", "POST"])
def delivery_targets(request: HttpRequest) -> HttpResponse:
    """The listeners domain administrators may choose for their domains."""
    _superuser(request)
    form = DeliveryTargetForm()
    if request.method == "POST" and "delete" in request.POST:
        delete = DeleteTargetForm(request.POST)
        target = (
            DeliveryTarget.objects.filter(pk=delete.cleaned_data["delete"]).first()
            if delete.is_valid()
            else None
        )
        if target is None:
            messages.error(request, "There is no such delivery target.")
        else:
            try:
                services.delivery_target_delete(target=target)
            except ProtectedError:
                messages.error(
                    request,
                    f"{target.name} is the delivery target of a domain: choose "
                    "another one there first.",
                )
            else:
                messages.success(request, f"{target.name} was deleted.")
        return redirect("people:delivery-targets")
    if request.method == "POST":
        form = DeliveryTargetForm(request.POST)
        if form.is_valid():
            target = services.delivery_target_save(target=form.instance)
            messages.success(request, f"{target.name} was added.")
            return redirect("people:delivery-targets")
    rows = DeliveryTarget.objects.annotate(domain_count=Count("domains"))
    return render(
        request, "accounts/delivery_targets.html", {"form": form, "targets": rows}
    )


# --- everyone: the time zone --------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def time_zone(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    form = TimeZoneForm(
        request.POST if request.method == "POST" else None,
        initial={"time_zone": user.time_zone},
    )
    if request.method == "POST" and form.is_valid():
        services.user_time_zone_set(user=user, time_zone=form.cleaned_data["time_zone"])
        messages.success(request, "Times are now shown in your zone.")
        return redirect("people:time-zone")
    return render(request, "accounts/time_zone.html", {"form": form})


# --- superusers: the audit log ------------------------------------------------------


@login_required
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    _superuser(request)
    form = AuditFilterForm(request.GET or None)
    rows = AuditEvent.objects.all()
    if form.is_valid():
        if form.cleaned_data["actor"]:
            rows = rows.filter(actor_label__icontains=form.cleaned_data["actor"])
        if form.cleaned_data["action"]:
            rows = rows.filter(action=form.cleaned_data["action"])
    return render(
        request,
        "accounts/audit_log.html",
        {"form": form, "page": _page(request, rows), "page_query": _query(request)},
    )
