"""The wallboard: the backup console for a wall screen — large status tiles, what needs
attention worst first, open alerts and "data as of" per connection, refreshing itself.

Reached by a signed-in user who may see the dashboard (`/wallboard/`), or by a TV
without a user through a kiosk link (`/wallboard/k/<token>/`, access/kiosk.py): read-only,
no secrets, no action, refused once revoked.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache

from access import kiosk
from alerts.selectors import open_alerts

from .dashboard import dashboard_summary, needs_attention
from .rows import connector_row

ATTENTION_SHOWN = 25
ALERTS_SHOWN = 10
REFRESH_SECONDS = 60
MIN_REFRESH_SECONDS = 15
MAX_REFRESH_SECONDS = 3600


def _board() -> dict[str, Any]:
    now = timezone.now()
    # The board's own view of the fleet (a link's query string selects nothing else).
    health = dashboard_summary(now=now, for_list=True)
    attention_total, attention = needs_attention(ATTENTION_SHOWN, health["fleet"])
    return {
        "now": now,
        "health": health,
        "attention": [connector_row(c) for c in attention],
        "attention_total": attention_total,
        "alerts": list(
            open_alerts()
            .select_related("connector__customer", "rule")
            .order_by("opened_at")[:ALERTS_SHOWN]
        ),
    }


def _render(request: HttpRequest, *, kiosk_name: str = "") -> HttpResponse:
    asked = request.GET.get("refresh", "")[:6]
    refresh = (
        min(max(int(asked), MIN_REFRESH_SECONDS), MAX_REFRESH_SECONDS)
        if asked.isdecimal()  # (not isdigit: "²" is a digit int() refuses)
        else REFRESH_SECONDS
    )
    context = {**_board(), "refresh": refresh, "kiosk_name": kiosk_name}
    template = (
        "vectis/wallboard_board.html" if request.GET.get("fragment") else "vectis/wallboard.html"
    )
    return render(request, template, context)


@never_cache
def wallboard(request: HttpRequest) -> HttpResponse:
    if not (request.user.is_authenticated and request.user.is_staff):
        return redirect_to_login(request.get_full_path())
    if not request.user.has_perm("backups.view_backupconnector"):
        raise PermissionDenied
    return _render(request)


@never_cache
def wallboard_kiosk(request: HttpRequest, token: str) -> HttpResponse:
    link = kiosk.read(token, now=timezone.now())
    if link is None:
        return render(request, "vectis/wallboard_refused.html", status=403)
    return _render(request, kiosk_name=link.name)
