"""Every API error is JSON with a sentence:
`{"error": {"status": 403, "code": "permission_denied", "message": "…", "field_errors": {…}}}`
(`field_errors` only when the request's values are wrong)."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from django.urls import Resolver404, resolve
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)


class Conflict(exceptions.APIException):
    """The request is right but the object's state refuses it (a resolved alert)."""

    status_code = 409
    default_code = "conflict"
    default_detail = "The object's state refuses this."


def _first(detail: Any) -> str:
    if isinstance(detail, dict):
        for field, value in detail.items():
            return f"{field}: {_first(value)}" if field != "non_field_errors" else _first(value)
    if isinstance(detail, list) and detail:
        return _first(detail[0])
    return str(detail)


def _not_found(context: dict[str, Any]) -> exceptions.NotFound:
    view = context.get("view")
    pk = (getattr(view, "kwargs", None) or {}).get("pk")
    queryset = getattr(view, "queryset", None)
    if queryset is None and view is not None and hasattr(view, "get_queryset"):
        queryset = view.get_queryset()
    if pk is not None and queryset is not None:
        return exceptions.NotFound(
            f"There is no {queryset.model._meta.verbose_name} with the id {pk}."
        )
    return exceptions.NotFound("There is nothing here.")


def handle(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Http404):
        exc = _not_found(context)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        # Not ours to explain: logged with its traceback, answered as JSON all the same.
        logger.error("API request failed", exc_info=exc)
        body = {
            "error": {
                "status": 500,
                "code": "server_error",
                "message": "Vectis could not answer because of an error on its side; it is "
                "logged. Try again later.",
            }
        }
        return Response(body, status=500)
    codes = exc.get_codes()
    error: dict[str, Any] = {
        "status": response.status_code,
        "code": codes if isinstance(codes, str) else exc.default_code,
    }
    if isinstance(exc, exceptions.ValidationError):
        error["message"] = f"Some values are not valid — {_first(exc.detail)}"
        error["field_errors"] = exc.detail
    elif isinstance(exc, exceptions.Throttled):
        seconds = getattr(exc, "wait", None)
        wait = f" Try again in {int(seconds) + 1} s." if seconds is not None else ""
        error["message"] = "Too many requests with this API key." + wait
    elif isinstance(exc, exceptions.NotAuthenticated):
        error["message"] = (
            "Send an API key: Authorization: Api-Key <key> (an administrator creates keys "
            "under API keys, or with manage.py create_api_key)."
        )
    else:
        error["message"] = _first(exc.detail)
    response.data = {"error": error}
    return response


def not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Anything under /api/ that is not an endpoint. Without its trailing slash an
    endpoint is one redirect away (308: the method and body are kept, so POSTs from
    automation tools that follow redirects work too)."""
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not not_found:
            target = request.path + "/"
            if request.META.get("QUERY_STRING"):
                target += "?" + request.META["QUERY_STRING"]
            answer = _error(308, "moved", f"The endpoint is {target} (with a trailing slash).")
            answer["Location"] = target
            return answer
    return _error(404, "not_found", f"There is no API endpoint at {request.path}: see /api/docs/.")


def _error(status: int, code: str, message: str) -> JsonResponse:
    body = {"error": {"status": status, "code": code, "message": message}}
    return JsonResponse(body, status=status)
