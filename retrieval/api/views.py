"""The API's views: found through the selectors and permissions, checked by the
pages' forms, changed through the services (see retrieval/api/__init__.py)."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.core.management import CommandError, call_command
from django.db.models import OuterRef, ProtectedError, Q, QuerySet, Subquery
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, parsers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Domain, User
from retrieval import services
from retrieval.api import forms
from retrieval.api import serializers as s
from retrieval.api.errors import ApiError
from retrieval.forms import SUPERUSER_FIELDS, MailboxForm, RulesForm
from retrieval.models import ConnectionTest, Mailbox, MessageResult, PollRun
from retrieval.permissions import (
    can_edit_rules,
    get_mailbox_for_user,
    get_rw_mailbox_for_user,
    owners_for,
)
from retrieval.selectors import (
    domains_administered_by,
    mailboxes_visible_to,
    people_visible_to,
)

if TYPE_CHECKING:
    from datetime import datetime

    from rest_framework.request import Request

TESTABLE = {Mailbox.Protocol.POP3, Mailbox.Protocol.IMAP}
MAX_RCFILE = 1024 * 1024


def _invalid(fields: dict[str, list[str]], message: str = "") -> ApiError:
    return ApiError(
        400, "invalid", message or "Some values were refused: see fields.", fields
    )


def _param(request: Request, name: str) -> str:
    """A query parameter's text, stripped; "" when absent. A NUL or an absurd
    length is refused (no database keeps a NUL in text)."""
    raw = str(request.query_params.get(name) or "").strip()
    if "\0" in raw or len(raw) > 1000:
        raise _invalid({name: ["This value cannot contain a NUL character."]})
    return raw


def _when(request: Request, name: str) -> datetime | None:
    raw = _param(request, name)
    if not raw:
        return None
    value = parse_datetime(raw)
    if value is None:
        raise _invalid({name: ["Give a date and time such as 2026-01-31T12:00:00Z."]})
    if timezone.is_naive(value):
        value = timezone.make_aware(value, timezone.get_current_timezone())
    return value


def _int(request: Request, name: str) -> int | None:
    raw = _param(request, name)
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise _invalid({name: ["Give a whole number (an id)."]})
    return int(raw)


def _choice(request: Request, name: str, allowed: Any) -> str | None:
    raw = _param(request, name)
    if not raw:
        return None
    if raw not in allowed:
        raise _invalid({name: [f"One of: {', '.join(sorted(allowed))}."]})
    return raw


# --- mailboxes -----------------------------------------------------------------------

STATES = ("ok", "failing", "disabled", "never")
ORDERINGS = {"name", "host", "created_at", "id", "protocol", "owner"}
# Shown by GET and ignored when sent back: not values anyone sets.
READ_ONLY = {
    "id",
    "owner_id",
    "domain",
    "has_password",
    "effective_port",
    "next_poll_at",
    "created_at",
    "updated_at",
    "state",
    "last_run",
}
INPUT = set(s.MailboxInputSerializer().fields)


def mailboxes_listed(request: Request) -> QuerySet[Mailbox]:
    """The caller's mailboxes, filtered as the console filters them."""
    last = PollRun.objects.filter(mailbox=OuterRef("pk")).order_by("-started_at")
    rows = (
        mailboxes_visible_to(user=request.user)
        .select_related("owner", "domain")
        .annotate(last_outcome=Subquery(last.values("outcome")[:1]))
    )
    search = _param(request, "search")
    if search:
        rows = rows.filter(
            Q(name__icontains=search)
            | Q(host__icontains=search)
            | Q(username__icontains=search)
            | Q(owner__email__icontains=search)
        )
    domain = _param(request, "domain")
    if domain:
        rows = rows.filter(
            Q(domain__pk=int(domain))
            if domain.isdigit() and len(domain) < 19
            else Q(domain__name=domain.lower())
        )
    owner = _param(request, "owner")
    if owner:
        rows = rows.filter(
            Q(owner__pk=int(owner))
            if owner.isdigit() and len(owner) < 19
            else Q(owner__email=owner.lower())
        )
    protocol = _choice(request, "protocol", set(Mailbox.Protocol.values))
    if protocol:
        rows = rows.filter(protocol=protocol)
    state = _choice(request, "state", set(STATES))
    failing = list(s.FAILING)
    if state == "disabled":
        rows = rows.filter(enabled=False)
    elif state == "never":
        rows = rows.filter(enabled=True, last_outcome__isnull=True)
    elif state == "failing":
        rows = rows.filter(enabled=True, last_outcome__in=failing)
    elif state == "ok":
        rows = rows.filter(enabled=True, last_outcome__isnull=False).exclude(
            last_outcome__in=failing
        )
    ordering = _param(request, "ordering") or "name"
    if ordering.lstrip("-") not in ORDERINGS:
        raise _invalid(
            {"ordering": [f"One of: {', '.join(sorted(ORDERINGS))}, or with a -."]}
        )
    field = ordering.replace("owner", "owner__email")
    return rows.order_by(field, "pk")


def mailbox_form(
    *, user: User, data: Any, instance: Mailbox | None = None
) -> MailboxForm:
    """The page's form bound to the stored (or default) values with ``data`` over
    them: the same fields for the same roles, the same checks."""
    if not isinstance(data, dict):
        raise _invalid({}, "Send a JSON object of the mailbox's values.")
    adding = instance is None
    mailbox = instance if instance is not None else services.mailbox_new()
    owners = owners_for(user) if adding else None
    unbound = MailboxForm(instance=mailbox, editor=user, owners=owners)
    values: dict[str, Any] = {name: unbound[name].value() for name in unbound.fields}
    refused: dict[str, list[str]] = {}
    for key, value in data.items():
        name = "new_password" if key == "password" else key
        if key in READ_ONLY or (key == "owner" and not adding):
            continue  # as GET shows it; set by nobody here
        if key not in INPUT:
            refused[key] = ["There is no such field."]
        elif name in unbound.fields:
            values[name] = "" if value is None else value
        elif key == "owner":
            if value != user.pk:
                refused[key] = ["You may add mailboxes only for yourself."]
        elif key in SUPERUSER_FIELDS or key == "mda":
            stored = getattr(mailbox, key, None)
            if (key == "mda" and value) or (key != "mda" and value != stored):
                refused[key] = ["Only a superuser may set this."]
        else:
            refused[key] = ["You may not set this."]
    if refused:
        raise _invalid(refused)
    form = MailboxForm(values, instance=mailbox, editor=user, owners=owners)
    if not form.is_valid():
        errors = {
            {"new_password": "password", "__all__": "non_field_errors"}.get(k, k): [
                str(m) for m in v
            ]
            for k, v in form.errors.items()
        }
        raise _invalid(errors)
    return form


def _shown(request: Request, mailbox: Mailbox) -> dict[str, Any]:
    data: dict[str, Any] = s.MailboxSerializer(
        mailbox, context={"request": request}
    ).data
    return data


MAILBOX_FILTERS = [
    OpenApiParameter("search", str, description="In name, host, user name, owner."),
    OpenApiParameter("domain", str, description="A domain's id or name."),
    OpenApiParameter("owner", str, description="The owner's id or address."),
    OpenApiParameter("state", str, enum=list(STATES)),
    OpenApiParameter("protocol", str, enum=list(Mailbox.Protocol.values)),
    OpenApiParameter(
        "ordering",
        str,
        description="name, host, created_at, id, protocol, owner; "
        "a leading - reverses.",
    ),
]
ERRORS = {
    400: s.ErrorSerializer,
    401: s.ErrorSerializer,
    403: s.ErrorSerializer,
    404: s.ErrorSerializer,
}


class Listing(generics.GenericAPIView):  # type: ignore[type-arg]
    """A list with pagination. Its rows come from the scoped functions of each
    view; get_queryset is only for DRF's browsable page (empty: it lists nothing
    by itself)."""

    def get_queryset(self) -> QuerySet[Any]:
        model = self.get_serializer_class().Meta.model  # type: ignore[attr-defined]
        return model.objects.none()  # type: ignore[no-any-return]

    def page_of(self, request: Request, rows: QuerySet[Any]) -> Response:
        """The requested page of ``rows``, through the view's serializer."""
        page = self.paginate_queryset(rows)
        serializer = self.get_serializer_class()
        data = serializer(page, many=True, context={"request": request}).data
        return self.get_paginated_response(data)


class MailboxList(Listing):
    serializer_class = s.MailboxSerializer

    @extend_schema(
        parameters=MAILBOX_FILTERS,
        responses={200: s.MailboxSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        return self.page_of(request, mailboxes_listed(request))

    @extend_schema(
        request=s.MailboxInputSerializer, responses={201: s.MailboxSerializer, **ERRORS}
    )
    def post(self, request: Request) -> Response:
        user = request.user
        assert isinstance(user, User)
        form = mailbox_form(user=user, data=request.data)
        try:
            mailbox = services.mailbox_save(
                mailbox=form.instance,
                owner=form.owner(),
                creator=user,
                editor=user,
                new_password=form.cleaned_data["new_password"],
                destination_password=form.cleaned_data.get("destination_password", ""),
                mda=form.cleaned_data.get("mda"),
            )
        except services.QuotaExceeded as exc:
            raise ApiError(409, "quota", str(exc)) from exc
        except (services.ServerCommandRefused, services.OwnerDomainMismatch) as exc:
            raise _invalid({"mda": [str(exc)]}, str(exc)) from exc
        return Response(_shown(request, mailbox), status=status.HTTP_201_CREATED)


class MailboxDetail(APIView):
    @extend_schema(responses={200: s.MailboxSerializer, **ERRORS})
    def get(self, request: Request, pk: int) -> Response:
        mailbox, _ = get_mailbox_for_user(request.user, pk)  # type: ignore[arg-type]
        return Response(_shown(request, mailbox))

    def _change(self, request: Request, pk: int) -> Response:
        user = request.user
        assert isinstance(user, User)
        mailbox = get_rw_mailbox_for_user(user, pk)
        form = mailbox_form(user=user, data=request.data, instance=mailbox)
        try:
            services.mailbox_save(
                mailbox=form.instance,
                editor=user,
                new_password=form.cleaned_data["new_password"],
                destination_password=form.cleaned_data.get("destination_password", ""),
                clear_password=form.cleaned_data.get("clear_password", False),
                mda=form.cleaned_data.get("mda"),
            )
        except (services.ServerCommandRefused, services.OwnerDomainMismatch) as exc:
            raise _invalid({"mda": [str(exc)]}, str(exc)) from exc
        return Response(_shown(request, mailbox))

    @extend_schema(
        request=s.MailboxInputSerializer,
        responses={200: s.MailboxSerializer, **ERRORS},
        description="Like PATCH: the fields sent are changed, the others kept.",
    )
    def put(self, request: Request, pk: int) -> Response:
        return self._change(request, pk)

    @extend_schema(
        request=s.MailboxInputSerializer, responses={200: s.MailboxSerializer, **ERRORS}
    )
    def patch(self, request: Request, pk: int) -> Response:
        return self._change(request, pk)

    @extend_schema(responses={204: None, 409: s.ErrorSerializer, **ERRORS})
    def delete(self, request: Request, pk: int) -> Response:
        mailbox = get_rw_mailbox_for_user(request.user, pk)  # type: ignore[arg-type]
        try:
            services.mailbox_delete(mailbox=mailbox)
        except services.MailboxBusy as exc:
            raise ApiError(409, "busy", str(exc)) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class MailboxPoll(APIView):
    @extend_schema(
        request=None,
        responses={202: s.QueuedSerializer, 429: s.ErrorSerializer, **ERRORS},
    )
    def post(self, request: Request, pk: int) -> Response:
        user = request.user
        assert isinstance(user, User)
        mailbox = get_rw_mailbox_for_user(user, pk)
        if not services.action_allowed(user=user, mailbox=mailbox, action="poll"):
            raise ApiError(
                429,
                "too_soon",
                "A poll was asked for a moment ago: wait a few seconds.",
            )
        since = timezone.now().replace(microsecond=0)
        services.mailbox_poll_request(mailbox=mailbox)
        query = urlencode({"mailbox": mailbox.pk, "since": since.isoformat()})
        url = request.build_absolute_uri(f"{reverse('api:run-list')}?{query}")
        return Response(
            {
                "status": "queued",
                "message": "A poll was queued; its run appears at status_url.",
                "status_url": url,
            },
            status=status.HTTP_202_ACCEPTED,
        )


class MailboxTest(APIView):
    @extend_schema(
        request=None,
        responses={202: s.QueuedSerializer, 429: s.ErrorSerializer, **ERRORS},
    )
    def post(self, request: Request, pk: int) -> Response:
        user = request.user
        assert isinstance(user, User)
        mailbox = get_rw_mailbox_for_user(user, pk)
        if mailbox.protocol not in TESTABLE:
            raise ApiError(
                400, "not_testable", "Only POP3 and IMAP mailboxes can be tested."
            )
        if not services.action_allowed(user=user, mailbox=mailbox, action="test"):
            raise ApiError(
                429,
                "too_soon",
                "The connection was tested a moment ago: wait a few seconds.",
            )
        try:
            probe = services.connection_test_request(mailbox=mailbox, user=user)
        except services.ProbeLimit as exc:
            raise ApiError(429, "too_many_tests", str(exc)) from exc
        url = request.build_absolute_uri(
            reverse("api:connection-test-detail", args=[probe.pk])
        )
        return Response(
            {
                "status": probe.status,
                "message": "A connection test was queued; follow status_url.",
                "status_url": url,
            },
            status=status.HTTP_202_ACCEPTED,
        )


class MailboxRules(APIView):
    @extend_schema(responses={200: s.RulesSerializer, **ERRORS})
    def get(self, request: Request, pk: int) -> Response:
        mailbox, _ = get_mailbox_for_user(request.user, pk)  # type: ignore[arg-type]
        rules = [{"remote": r.remote, "local": r.local} for r in mailbox.rules.all()]
        return Response({"rules": rules})

    @extend_schema(
        request=s.RulesSerializer, responses={200: s.RulesSerializer, **ERRORS}
    )
    def put(self, request: Request, pk: int) -> Response:
        user = request.user
        assert isinstance(user, User)
        mailbox = get_rw_mailbox_for_user(user, pk)
        if not can_edit_rules(user, mailbox):
            raise PermissionDenied(
                "Only a domain administrator may change these rules."
            )
        given = s.RulesSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        pairs = [
            (r["remote"], r.get("local", "")) for r in given.validated_data["rules"]
        ]
        form = RulesForm(
            {"rules": RulesForm.as_text(pairs)}, mailbox=mailbox, editor=user
        )
        if not form.is_valid():
            raise _invalid({"rules": [str(m) for m in form.errors.get("rules", [])]})
        services.mailbox_rules_replace(
            mailbox=mailbox, rules=form.cleaned_data["rules"]
        )
        return self.get(request, pk)


# --- runs, messages, connection tests -----------------------------------------------

TIME_FILTERS = [
    OpenApiParameter("mailbox", int),
    OpenApiParameter(
        "since", OpenApiTypes.DATETIME, description="Started at or after."
    ),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description="Started before."),
]


def _in_window(request: Request, rows: QuerySet[Any], field: str) -> QuerySet[Any]:
    """``rows`` whose ``field`` (a time) is within the ``since`` and ``until``
    parameters (TIME_FILTERS): from ``since`` on, before ``until``."""
    since, until = _when(request, "since"), _when(request, "until")
    if since:
        rows = rows.filter(**{f"{field}__gte": since})
    if until:
        rows = rows.filter(**{f"{field}__lt": until})
    return rows


def _visible_ids(request: Request) -> Any:
    return mailboxes_visible_to(user=request.user).order_by().values("pk")


class RunList(Listing):
    serializer_class = s.RunSerializer

    @extend_schema(
        parameters=[
            *TIME_FILTERS,
            OpenApiParameter("outcome", str, enum=list(PollRun.Outcome.values)),
        ],
        responses={200: s.RunSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        rows = PollRun.objects.filter(mailbox__in=_visible_ids(request)).select_related(
            "mailbox", "mailbox__owner"
        )
        mailbox = _int(request, "mailbox")
        if mailbox is not None:
            rows = rows.filter(mailbox_id=mailbox)
        outcome = _choice(request, "outcome", set(PollRun.Outcome.values))
        if outcome:
            rows = rows.filter(outcome=outcome)
        rows = _in_window(request, rows, "started_at")
        return self.page_of(request, rows.order_by("-started_at", "-pk"))


class RunDetail(APIView):
    @extend_schema(responses={200: s.RunDetailSerializer, **ERRORS})
    def get(self, request: Request, pk: int) -> Response:
        run = get_object_or_404(
            PollRun.objects.select_related("mailbox", "mailbox__owner"),
            pk=pk,
            mailbox__in=_visible_ids(request),
        )
        return Response(s.RunDetailSerializer(run, context={"request": request}).data)


class MessageList(Listing):
    serializer_class = s.MessageSerializer

    @extend_schema(
        parameters=[
            *TIME_FILTERS,
            OpenApiParameter("run", int),
            OpenApiParameter("status", str, description="delivered, kept, …"),
        ],
        responses={200: s.MessageSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        rows = MessageResult.objects.filter(
            run__mailbox__in=_visible_ids(request)
        ).select_related("run", "run__mailbox", "run__mailbox__owner")
        mailbox, run = _int(request, "mailbox"), _int(request, "run")
        if mailbox is not None:
            rows = rows.filter(run__mailbox_id=mailbox)
        if run is not None:
            rows = rows.filter(run_id=run)
        wanted = _param(request, "status")
        if wanted:
            rows = rows.filter(status=wanted)
        rows = _in_window(request, rows, "run__started_at")
        return self.page_of(request, rows.order_by("-run__started_at", "pk"))


class ConnectionTestDetail(APIView):
    @extend_schema(responses={200: s.ConnectionTestSerializer, **ERRORS})
    def get(self, request: Request, pk: int) -> Response:
        probe = get_object_or_404(
            ConnectionTest.objects.select_related("mailbox", "mailbox__owner"),
            pk=pk,
            mailbox__in=_visible_ids(request),
        )
        data = s.ConnectionTestSerializer(probe, context={"request": request}).data
        return Response(data)


# --- domains and users ----------------------------------------------------------------


def _domains(user: User) -> QuerySet[Domain]:
    return domains_administered_by(user=user)


def _people(user: User) -> QuerySet[User]:
    return people_visible_to(user=user)


def _administrator(request: Request) -> User:
    user = request.user
    assert isinstance(user, User)
    if not (user.is_superuser or user.is_domain_admin):
        raise PermissionDenied("Only superusers and domain administrators list these.")
    return user


def _superuser(request: Request) -> User:
    user = request.user
    assert isinstance(user, User)
    if not user.is_superuser:
        # The same for every id: a refusal that says nothing about what exists.
        raise PermissionDenied("Only a superuser may change domains and people.")
    return user


def _bound(form_class: Any, request: Request, instance: Any = None) -> Any:
    """A form over the stored values with the request's over them."""
    if not isinstance(request.data, dict):
        raise _invalid({}, "Send a JSON object.")
    unbound = form_class(instance=instance)
    values = {name: unbound[name].value() for name in unbound.fields}
    unknown = sorted(set(request.data) - set(unbound.fields) - {"id", "created_at"})
    if unknown:
        raise _invalid({name: ["There is no such field."] for name in unknown})
    values |= {k: v for k, v in request.data.items() if k in unbound.fields}
    if "admins" in values and values["admins"] is None:
        values["admins"] = []
    form = form_class(values, instance=instance)
    if not form.is_valid():
        raise _invalid(
            {
                ("non_field_errors" if k == "__all__" else k): [str(m) for m in v]
                for k, v in form.errors.items()
            }
        )
    return form


def _domain_data(domain: Domain) -> dict[str, Any]:
    data: dict[str, Any] = s.DomainSerializer(domain).data
    return data


class DomainList(Listing):
    serializer_class = s.DomainSerializer

    @extend_schema(responses={200: s.DomainSerializer(many=True), **ERRORS})
    def get(self, request: Request) -> Response:
        return self.page_of(request, _domains(_administrator(request)).order_by("name"))

    @extend_schema(
        request=s.DomainInputSerializer,
        responses={201: s.DomainSerializer, **ERRORS},
        description="Superusers only.",
    )
    def post(self, request: Request) -> Response:
        _superuser(request)
        form = _bound(forms.DomainForm, request)
        domain = services.domain_save(
            domain=form.instance, admins=form.cleaned_data.get("admins")
        )
        return Response(_domain_data(domain), status=status.HTTP_201_CREATED)


class DomainDetail(APIView):
    @extend_schema(responses={200: s.DomainSerializer, **ERRORS})
    def get(self, request: Request, pk: int) -> Response:
        user = request.user
        assert isinstance(user, User)
        domain = get_object_or_404(_domains(user), pk=pk)
        return Response(_domain_data(domain))

    @extend_schema(
        request=s.DomainInputSerializer,
        responses={200: s.DomainSerializer, **ERRORS},
        description="Superusers only; the fields sent are changed.",
    )
    def patch(self, request: Request, pk: int) -> Response:
        _superuser(request)
        domain = get_object_or_404(Domain, pk=pk)
        form = _bound(forms.DomainForm, request, domain)
        admins = form.cleaned_data.get("admins") if "admins" in request.data else None
        services.domain_save(domain=form.instance, admins=admins)
        return Response(_domain_data(domain))

    @extend_schema(responses={204: None, 409: s.ErrorSerializer, **ERRORS})
    def delete(self, request: Request, pk: int) -> Response:
        _superuser(request)
        domain = get_object_or_404(Domain, pk=pk)
        try:
            services.domain_delete(domain=domain)
        except ProtectedError as exc:
            raise ApiError(
                409,
                "in_use",
                "People or mailboxes are in this domain: move or delete them first.",
            ) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


def _person_saved(form: Any) -> User:
    person: User = form.instance
    password = form.cleaned_data.get("password")
    if password:
        person.set_password(password)
    elif person._state.adding:
        person.set_unusable_password()
    return services.user_save(user=person)


class UserList(Listing):
    serializer_class = s.UserSerializer

    @extend_schema(responses={200: s.UserSerializer(many=True), **ERRORS})
    def get(self, request: Request) -> Response:
        return self.page_of(request, _people(_administrator(request)).order_by("email"))

    @extend_schema(
        request=s.PersonInputSerializer,
        responses={201: s.UserSerializer, **ERRORS},
        description="Superusers only; makes a person who is not a superuser.",
    )
    def post(self, request: Request) -> Response:
        _superuser(request)
        person = _person_saved(_bound(forms.PersonForm, request))
        return Response(s.UserSerializer(person).data, status=status.HTTP_201_CREATED)


class UserDetail(APIView):
    @extend_schema(responses={200: s.UserSerializer, **ERRORS})
    def get(self, request: Request, pk: int) -> Response:
        user = request.user
        assert isinstance(user, User)
        person = get_object_or_404(_people(user), pk=pk)
        return Response(s.UserSerializer(person).data)

    @extend_schema(
        request=s.PersonInputSerializer,
        responses={200: s.UserSerializer, **ERRORS},
        description="Superusers only; the fields sent are changed.",
    )
    def patch(self, request: Request, pk: int) -> Response:
        _superuser(request)
        person = get_object_or_404(User, pk=pk)
        saved = _person_saved(_bound(forms.PersonForm, request, person))
        return Response(s.UserSerializer(saved).data)

    @extend_schema(responses={204: None, **ERRORS})
    def delete(self, request: Request, pk: int) -> Response:
        user = _superuser(request)
        person = get_object_or_404(User, pk=pk)
        if person.pk == user.pk:
            raise ApiError(400, "invalid", "You cannot delete yourself.")
        services.user_delete(user=person)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- rcfiles -------------------------------------------------------------------------


class PlainTextParser(parsers.BaseParser):
    media_type = "text/plain"

    def parse(
        self, stream: Any, media_type: Any = None, parser_context: Any = None
    ) -> Any:
        data = stream.read(MAX_RCFILE + 1)
        if len(data) > MAX_RCFILE:
            raise ApiError(413, "too_large", "An rcfile is at most 1 MiB.")
        return str(data.decode("utf-8", "surrogateescape"))


SCOPE = [
    OpenApiParameter("owner", str, description="Whose mailboxes (default: yours)."),
    OpenApiParameter("domain", str, description="A domain you administer."),
]


def _scope(request: Request) -> dict[str, Any]:
    user = request.user
    assert isinstance(user, User)
    owner = _param(request, "owner") or None
    domain = _param(request, "domain") or None
    if owner is None and domain is None:
        owner = user.email
    # Someone or a domain the caller does not manage does not exist for them:
    # the command's own refusal would confirm that the address has an account.
    if owner is not None and not _people(user).filter(email=owner.lower()).exists():
        raise NotFound()
    if domain is not None and not _domains(user).filter(name=domain.lower()).exists():
        raise NotFound()
    return {"owner": owner, "domain": domain, "as_email": user.email}


def _refused(exc: CommandError, where: str = "") -> ApiError:
    lines = [line.replace(where, "") for line in str(exc).splitlines() if line]
    message = lines[-1] if lines else "The request was refused."
    return ApiError(
        400, "refused", message, {"rcfile": lines} if len(lines) > 1 else None
    )


class RcfileImport(APIView):
    parser_classes = [PlainTextParser, parsers.JSONParser]

    @extend_schema(
        parameters=[
            *SCOPE,
            OpenApiParameter(
                "dry_run", bool, description="Check and report, save nothing."
            ),
        ],
        request={"text/plain": OpenApiTypes.STR},
        responses={200: s.ImportResultSerializer, **ERRORS},
        description="A .fetchmailrc as the body (text/plain). Refusals say FILE:LINE "
        "and why; a file with one refused line imports nothing.",
    )
    def post(self, request: Request) -> Response:
        text = request.data
        if isinstance(text, dict):
            text = text.get("rcfile", "")
        if not isinstance(text, str) or not text.strip():
            raise _invalid(
                {"rcfile": ["Send the rcfile's text as the body (text/plain)."]}
            )
        dry_run = request.query_params.get("dry_run", "") not in ("", "0", "false")
        out = io.StringIO()
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "fetchmailrc"
            path.write_text(text, encoding="utf-8", errors="surrogateescape")
            where = folder + "/"
            try:
                call_command(
                    "import_fetchmailrc",
                    str(path),
                    **_scope(request),
                    netrc="/nonexistent/.netrc",  # never this server's own
                    login=None,
                    dry_run=dry_run,
                    stdout=out,
                    stderr=io.StringIO(),
                )
            except CommandError as exc:
                raise _refused(exc, where) from exc
        report = [line.replace(where, "") for line in out.getvalue().splitlines()]
        return Response({"dry_run": dry_run, "saved": not dry_run, "report": report})


class RcfileExport(APIView):
    @extend_schema(
        parameters=SCOPE,
        responses={(200, "text/plain"): OpenApiTypes.STR, **ERRORS},
        description="The mailboxes as a .fetchmailrc, without passwords.",
    )
    def get(self, request: Request) -> HttpResponse:
        out = io.StringIO()
        try:
            call_command(
                "export_fetchmailrc",
                **_scope(request),
                with_passwords=False,
                output=None,
                stdout=out,
                stderr=io.StringIO(),
            )
        except CommandError as exc:
            raise _refused(exc) from exc
        return HttpResponse(out.getvalue(), content_type="text/plain; charset=utf-8")
