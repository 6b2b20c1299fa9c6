"""Import and export of a .fetchmailrc in the browser (issue 13 item 5).

The same code as ``manage.py import_fetchmailrc`` / ``export_fetchmailrc``:
retrieval.rcimport checks, services.rcfile_import writes, retrieval.rcexport
writes the file. Importing is two steps. The preview parses the text and shows
what the import would do; the text is kept in the session, encrypted (it holds
passwords), never in the page. The confirm parses that text again, checks
again who may import for whom, and applies the plan only if it is still the one
the preview showed, in one transaction. The preview is that import rolled back,
so it lists every refusal the confirm would meet (a quota's too). Refused
entries are listed with FILE:LINE and left out; the others are stored (the
command refuses the whole file instead, as it always has).
"""

from __future__ import annotations

import base64
import secrets
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import User
from retrieval import crypto, services
from retrieval.permissions import get_mailbox_for_user, owners_for
from retrieval.rcexport import rcfile_of
from retrieval.rcfile import RcfileError
from retrieval.rcfile.parser import MAX_INPUT_BYTES, parse_bytes
from retrieval.rcimport import (
    ImportPlan,
    Scope,
    ScopeRefused,
    checked_scope,
    import_environment,
)
from retrieval.selectors import mailboxes_visible_to

if TYPE_CHECKING:
    from collections.abc import Sequence

    from django.core.files.uploadedfile import UploadedFile
    from django.db.models import QuerySet

    from retrieval.http import AuthenticatedHttpRequest
    from retrieval.models import Mailbox


PASTED = "pasted .fetchmailrc"  # the FILE of FILE:LINE for pasted text
SESSION_KEY = "rcfile-import"
TOO_LARGE = (
    "This file is {size:,} bytes; a .fetchmailrc may be at most {limit:,} bytes "
    "(1 MiB). Nothing was read."
)


class WriteOnlyTextarea(forms.Textarea):
    """Pasted text holds passwords: never sent back to the browser."""

    def format_value(self, value: Any) -> str | None:
        return None


class ImportForm(forms.Form):
    """A file or pasted text, and (for whoever may choose) whose mailboxes."""

    owner = forms.ModelChoiceField(
        queryset=User.objects.none(),
        required=False,
        help_text="Whose mailboxes these are.",
    )
    rcfile = forms.FileField(required=False, label="A .fetchmailrc file")
    text = forms.CharField(
        required=False,
        strip=False,  # a comment on the last line ends at its newline
        label="Or paste its text",
        widget=WriteOnlyTextarea(attrs={"rows": 12, "spellcheck": "false"}),
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        choices = owners_for(user)
        if choices is None:
            del self.fields["owner"]
        else:
            field = self.fields["owner"]
            assert isinstance(field, forms.ModelChoiceField)
            field.queryset = choices.order_by("email")
            field.empty_label = f"Myself ({user.email})"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        upload: UploadedFile | None = cleaned.get("rcfile")
        text: str = cleaned.get("text") or ""
        if upload is not None and text.strip():
            raise forms.ValidationError("Upload a file or paste its text, not both.")
        if upload is not None:
            size = upload.size or 0
            if size > MAX_INPUT_BYTES:
                raise forms.ValidationError(
                    TOO_LARGE.format(size=size, limit=MAX_INPUT_BYTES)
                )
            cleaned["data"] = upload.read(MAX_INPUT_BYTES + 1)
            cleaned["name"] = _file_name(upload.name)
        elif text.strip():
            data = text.replace("\r\n", "\n").encode("utf-8", "surrogateescape")
            if len(data) > MAX_INPUT_BYTES:
                raise forms.ValidationError(
                    TOO_LARGE.format(size=len(data), limit=MAX_INPUT_BYTES)
                )
            cleaned["data"], cleaned["name"] = data, PASTED
        else:
            raise forms.ValidationError("Upload a .fetchmailrc or paste its text.")
        return cleaned

    def chosen_owner(self) -> User:
        return self.cleaned_data.get("owner") or self.user


def _file_name(name: str | None) -> str:
    """The uploaded file's own name (no folders), printable, for FILE:LINE."""
    base = PurePath(name or "").name
    shown = "".join(c for c in base if c.isprintable())[:100]
    return shown or "uploaded .fetchmailrc"


def _scope(user: User, owner: User) -> Scope:
    """Who imports for whom, checked again on every request: a person for
    themselves, a domain administrator for the people of their domains, a
    superuser for anyone (the owner select offers no one else)."""
    allowed = owners_for(user)
    if owner.pk != user.pk and (
        allowed is None or not allowed.filter(pk=owner.pk).exists()
    ):
        raise ScopeRefused(f"You may not import mailboxes for {owner.email}.")
    return checked_scope(Scope(owner=owner, domain=None, actor=user))


def _plan(scope: Scope, data: bytes, name: str) -> ImportPlan:
    """The preview: the confirm's import, rolled back (a quota's refusals too)."""
    return services.rcfile_import(
        config=parse_bytes(data, name),
        scope=scope,
        env=import_environment(scope),
        skip_refused=True,
        dry_run=True,
    )


# --- the pending import, in the session ----------------------------------------------


def _sealed(token: str, user: User) -> str:
    return f"rcfile-import:{user.pk}:{token}"


def _keep(
    request: AuthenticatedHttpRequest, data: bytes, name: str, **rest: Any
) -> str:
    token = secrets.token_urlsafe(16)
    request.session[SESSION_KEY] = {
        "token": token,
        "name": name,
        # The text holds passwords: encrypted like the stored ones, never in the page.
        "data": crypto.encrypt(
            base64.b64encode(data).decode(), bound_to=_sealed(token, request.user)
        ),
        **rest,
    }
    return token


def _pending(request: AuthenticatedHttpRequest) -> dict[str, Any] | None:
    kept = request.session.get(SESSION_KEY)
    token = request.POST.get("token", "")
    if not isinstance(kept, dict) or not secrets.compare_digest(
        str(kept.get("token", "")), token
    ):
        return None
    try:
        raw = crypto.decrypt(kept["data"], bound_to=_sealed(token, request.user))
    except crypto.DecryptionError:
        return None
    return {**kept, "data": base64.b64decode(raw)}


# --- the pages --------------------------------------------------------------------------


def _preview(
    request: AuthenticatedHttpRequest, form: ImportForm, plan: ImportPlan, token: str
) -> HttpResponse:
    return render(
        request,
        "retrieval/rcfile_import.html",
        {"form": form, "plan": plan, "token": token, "owner": plan.scope.owner},
    )


@login_required
@require_http_methods(["GET", "POST"])
def rcfile_import(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The form; on POST, the preview of what the file would do."""
    if request.method != "POST":
        form = ImportForm(user=request.user)
        return render(request, "retrieval/rcfile_import.html", {"form": form})
    form = ImportForm(request.POST, request.FILES, user=request.user)
    if not form.is_valid():
        return render(request, "retrieval/rcfile_import.html", {"form": form})
    data, name = form.cleaned_data["data"], form.cleaned_data["name"]
    try:
        scope = _scope(request.user, form.chosen_owner())
        plan = _plan(scope, data, name)
    except ScopeRefused as exc:
        form.add_error(None, str(exc))
        return render(request, "retrieval/rcfile_import.html", {"form": form})
    except RcfileError as exc:
        context = {"form": form, "parse_error": exc}
        return render(request, "retrieval/rcfile_import.html", context)
    token = _keep(
        request, data, name, owner=scope.owner.pk, fingerprint=plan.fingerprint()
    )
    return _preview(request, form, plan, token)


@login_required
@require_POST
def rcfile_import_confirm(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Apply the previewed import: the kept text parsed and checked again."""
    pending = _pending(request)
    if pending is None:
        messages.error(
            request,
            "There is no import waiting to be confirmed (it was confirmed already, "
            "or another preview replaced it): choose the file again.",
        )
        return redirect("retrieval:rcfile-import")
    form = ImportForm(user=request.user)
    try:
        owner = User.objects.get(pk=pending["owner"], is_active=True)
        scope = _scope(request.user, owner)
        config = parse_bytes(pending["data"], pending["name"])
        plan = services.rcfile_import(
            config=config,
            scope=scope,
            env=import_environment(scope),
            skip_refused=True,
            expected=pending["fingerprint"],
        )
    except (User.DoesNotExist, ScopeRefused, RcfileError) as exc:
        request.session.pop(SESSION_KEY, None)
        context = {"form": form, "error": f"Nothing was imported: {exc}"}
        return render(request, "retrieval/rcfile_import.html", context)
    except services.PreviewOutdated as exc:
        token = _keep(
            request,
            pending["data"],
            pending["name"],
            owner=scope.owner.pk,
            fingerprint=exc.plan.fingerprint(),
        )
        messages.warning(
            request,
            "Nothing was imported: the mailboxes changed since the preview. "
            "Here is what the file would do now.",
        )
        return _preview(request, form, exc.plan, token)
    request.session.pop(SESSION_KEY, None)
    created = sum(e.created for e in plan.accepted)
    messages.success(
        request,
        f"Imported {len(plan.accepted)} mailbox(es) for {scope.owner.email}: "
        f"{created} created, {len(plan.accepted) - created} updated"
        + (f"; {len(plan.problems)} refusal(s) left out." if plan.problems else "."),
    )
    return redirect("retrieval:mailbox-list")


def _download(mailboxes: Sequence[Mailbox], filename: str) -> HttpResponse:
    """An rcfile, without passwords (a placeholder comment for each)."""
    text, notes = rcfile_of(mailboxes, with_passwords=False)
    head = "".join(f"# note: {note}\n" for note in notes)
    response = HttpResponse(head + text, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


def _with_rules(rows: QuerySet[Mailbox]) -> list[Mailbox]:
    return list(rows.select_related("owner").prefetch_related("rules").order_by("pk"))


@login_required
@require_GET
def rcfile_export(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Every mailbox the person may see, as one .fetchmailrc."""
    rows = mailboxes_visible_to(user=request.user).prefetch_related(None)
    return _download(_with_rules(rows), "fetchmailrc")


@login_required
@require_GET
def mailbox_export(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """One mailbox, for whoever may see it, as a .fetchmailrc."""
    mailbox, _ = get_mailbox_for_user(request.user, pk)
    rows = mailboxes_visible_to(user=request.user).prefetch_related(None)
    return _download(_with_rules(rows.filter(pk=mailbox.pk)), f"fetchmailrc-{pk}")
