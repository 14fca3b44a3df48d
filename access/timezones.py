"""Each viewer sees times in their own time zone (`UserAccess.time_zone`, set on their
Preferences page), else in the MSP's `TIME_ZONE`. The zone is remembered in the session,
so a page costs no query for it."""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from functools import cache

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from .models import UserAccess

SESSION_KEY = "vectis_time_zone"


@cache
def zone_names() -> list[str]:
    return sorted(zoneinfo.available_timezones() - {"Factory", "localtime"})


class ViewerTimeZoneMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        name = ""
        if request.user.is_authenticated:
            if SESSION_KEY not in request.session:
                request.session[SESSION_KEY] = (
                    UserAccess.objects.filter(user_id=request.user.pk)
                    .values_list("time_zone", flat=True)
                    .first()
                    or ""
                )
            name = request.session[SESSION_KEY]
        if name:
            try:
                timezone.activate(zoneinfo.ZoneInfo(name))
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                timezone.deactivate()
        else:
            timezone.deactivate()
        return self.get_response(request)


class PreferencesForm(forms.Form):
    time_zone = forms.ChoiceField(
        label="Time zone",
        required=False,
        help_text="Every time on every page is shown in this zone.",
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        default = timezone.get_default_timezone_name()
        field = self.fields["time_zone"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [("", f"The MSP's time zone ({default})"), *((n, n) for n in zone_names())]


@login_required
def preferences(request: HttpRequest) -> HttpResponse:
    """A user's own settings: the time zone times are shown in."""
    user_id = int(request.user.pk or 0)
    current = UserAccess.objects.filter(user_id=user_id).values_list("time_zone", flat=True)
    form = PreferencesForm(request.POST or None, initial={"time_zone": current.first() or ""})
    if request.method == "POST" and form.is_valid():
        zone = form.cleaned_data["time_zone"]
        UserAccess.objects.update_or_create(user_id=user_id, defaults={"time_zone": zone})
        request.session[SESSION_KEY] = zone
        messages.success(
            request, f"Times are now shown in {zone or timezone.get_default_timezone_name()}."
        )
        return HttpResponseRedirect(reverse("preferences"))
    return render(request, "access/preferences.html", {"form": form, "title": "Preferences"})
