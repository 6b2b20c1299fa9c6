"""Every error of the API is JSON: ``{"code", "message", "fields"}``.

``code`` is a stable word for programs, ``message`` a sentence for people and
``fields`` (on validation errors) each refused field's messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.views import exception_handler as drf_handler

if TYPE_CHECKING:
    from collections.abc import Mapping

    from rest_framework.response import Response

CODES = {
    exceptions.NotAuthenticated: ("not_authenticated", "Log in or send a token."),
    exceptions.AuthenticationFailed: ("authentication_failed", ""),
    exceptions.PermissionDenied: ("forbidden", "You may not do this."),
    exceptions.NotFound: ("not_found", "There is no such object."),
    exceptions.MethodNotAllowed: ("method_not_allowed", ""),
    exceptions.NotAcceptable: ("not_acceptable", ""),
    exceptions.UnsupportedMediaType: ("unsupported_media_type", ""),
    exceptions.ParseError: ("bad_request", ""),
    exceptions.Throttled: ("too_soon", ""),
    exceptions.ValidationError: ("invalid", "Some values were refused: see fields."),
}


class ApiError(exceptions.APIException):
    """An error with our own code: ``raise ApiError(409, "busy", "…")``."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        fields: Mapping[str, list[str]] | None = None,
    ) -> None:
        super().__init__(message, code)
        self.status_code = status_code
        self.error_code = code
        self.fields = dict(fields or {})


def _text(detail: Any) -> str:
    if isinstance(detail, list):
        return " ".join(_text(d) for d in detail)
    if isinstance(detail, dict):
        return " ".join(_text(d) for d in detail.values())
    return str(detail)


def _fields(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {
            str(name): [_text(d) for d in (v if isinstance(v, list) else [v])]
            for name, v in detail.items()
        }
    if isinstance(detail, list):
        return {"non_field_errors": [_text(d) for d in detail]}
    return {"non_field_errors": [str(detail)]}


def body(
    code: str, message: str, fields: Mapping[str, list[str]] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"code": code, "message": message}
    if fields:
        out["fields"] = dict(fields)
    return out


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_handler(exc, context)
    if response is None:
        return None  # a bug: Django's 500, logged
    if isinstance(exc, ApiError):
        response.data = body(exc.error_code, str(exc.detail), exc.fields)
        return response
    code, message = "error", ""
    for cls, (name, text) in CODES.items():
        if isinstance(exc, cls):
            code, message = name, text
            break
    fields: dict[str, list[str]] = {}
    if isinstance(exc, exceptions.ValidationError):
        fields = _fields(exc.detail)
        if set(fields) == {"non_field_errors"}:
            message = " ".join(fields.pop("non_field_errors"))
    elif isinstance(exc, exceptions.APIException):
        message = message if code in ("not_found",) else (_text(exc.detail) or message)
    if response.status_code == status.HTTP_404_NOT_FOUND:
        message = "There is no such object."  # says nothing about whose it is
    response.data = body(code, message, fields)
    return response
