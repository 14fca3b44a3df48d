"""`/healthz`: is the database reachable, is the broker reachable.

Used by docker compose and load balancers. It answers 200 only when both answer, and 503
naming the failing part otherwise; it never shows credentials from the URLs.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection

BROKER_TIMEOUT_SECONDS = 3


def check_database() -> str | None:
    """None when a query succeeds, otherwise a short reason."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not reachable"
        return f"{type(exc).__name__}"
    return None


def check_broker() -> str | None:
    """None when the Celery broker accepts a connection, otherwise a short reason."""
    try:
        with Connection(
            settings.CELERY_BROKER_URL,
            connect_timeout=BROKER_TIMEOUT_SECONDS,
            transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        ) as broker:
            broker.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
    except Exception as exc:  # kombu raises the transport's own errors
        return f"{type(exc).__name__}"
    return None


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    failures = {
        name: reason
        for name, reason in (("database", check_database()), ("broker", check_broker()))
        if reason is not None
    }
    checks = {
        name: ("unreachable: " + failures[name]) if name in failures else "ok"
        for name in ("database", "broker")
    }
    if failures:
        return JsonResponse(
            {"status": "unavailable", "failing": sorted(failures), "checks": checks}, status=503
        )
    return JsonResponse({"status": "ok", "checks": checks})
