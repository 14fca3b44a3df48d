"""Pages of the alerts app outside the admin's model pages: the confirmation page an
action link in a message leads to (alerts/actions.py)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from . import lifecycle
from .actions import ACTIONS, SNOOZE, BadActionLink, read_action_token
from .models import Alert


@staff_member_required
@require_http_methods(["GET", "POST"])
def alert_action(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows what the link would do; only the button (POST) does it."""
    context = {**admin.site.each_context(request), "title": "Act on an alert"}
    try:
        link = read_action_token(token)
    except BadActionLink as exc:
        return render(
            request, "admin/alerts/action.html", {**context, "problem": str(exc)}, status=400
        )
    if not request.user.has_perm("alerts.view_alert"):
        return render(
            request,
            "admin/alerts/action.html",
            {**context, "problem": "Your role may not look at alerts."},
            status=403,
        )
    alert = Alert.objects.select_related("connector__customer").filter(pk=link.alert_id).first()
    change_url = reverse("admin:alerts_alert_change", args=[link.alert_id])
    if alert is None:
        return render(
            request,
            "admin/alerts/action.html",
            {**context, "problem": "This alert no longer exists (it was pruned)."},
            status=404,
        )
    permission = "alerts.change_alert"
    if request.method == "POST":
        if not request.user.has_perm(permission):
            return render(
                request,
                "admin/alerts/action.html",
                {**context, "problem": "Your role may look at alerts but not act on them."},
                status=403,
            )
        now = timezone.now()
        by = request.user.get_username()
        if link.action == "acknowledge":
            done = lifecycle.acknowledge([alert.pk], by=by, note="From a message link", now=now)
            said = "Acknowledged." if done else "Nothing to do: it was not open."
        else:
            done = lifecycle.snooze(
                [alert.pk], until=now + SNOOZE, reason="From a message link", by=by, now=now
            )
            said = "Snoozed for 4 hours." if done else "Nothing to do: it is resolved."
        if done:
            messages.success(request, said)
        else:
            messages.info(request, said)
        return HttpResponseRedirect(change_url)
    return render(
        request,
        "admin/alerts/action.html",
        {
            **context,
            "alert": alert,
            "action": link.action,
            "action_label": ACTIONS[link.action],
            "change_url": change_url,
            "can_act": request.user.has_perm(permission),
        },
    )
