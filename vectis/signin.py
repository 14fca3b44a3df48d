"""Sign-in protection: the page shown when django-axes locks a user or an address out."""

from __future__ import annotations

from typing import Any

from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def _minutes(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    """The admin login page with one sentence saying why and for how long (HTTP 429)."""
    cool_off = get_cool_off(request)
    context = {
        "username": get_client_username(request, credentials) or "",
        "failure_limit": get_failure_limit(request, credentials),
        "cool_off": _minutes(cool_off.total_seconds()) if cool_off else "",
        "site_header": "Vectis",
        "site_title": "Vectis",
        "title": "Sign-in locked",
    }
    return render(request, "admin/lockout.html", context, status=429)
