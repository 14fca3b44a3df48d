"""Root URLs: the admin is the product UI; /accounts/ is sign-in (django-allauth); /api/
is the public REST API."""

from __future__ import annotations

from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import include, path
from django.views.generic import RedirectView

from access import sso
from access.timezones import preferences
from alerts.views import alert_action

from .health import healthz
from .pages.wallboard import wallboard, wallboard_kiosk


def page_not_found_view(request: HttpRequest) -> HttpResponse:
    raise Http404("E-mail addresses are set by an administrator.")


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # Where the Acknowledge / Snooze links of alert messages lead (a confirmation page).
    path("alerts/act/<str:token>/", alert_action, name="alert_action"),
    path("admin/", admin.site.urls),
    # The public REST API (vectis/api/): /api/v1/, /api/schema/, /api/docs/.
    path("api/", include("vectis.api.urls")),
    # The wall screen: for a signed-in user, or a TV through a kiosk link (read-only).
    path("wallboard/", wallboard, name="wallboard"),
    path("wallboard/k/<str:token>/", wallboard_kiosk, name="wallboard_kiosk"),
    # Single sign-on with the ID token's signature checked (ahead of allauth's own views).
    path("accounts/oidc/<str:provider_id>/login/", sso.login),
    path("accounts/oidc/<str:provider_id>/login/callback/", sso.callback),
    # Users do not manage their own e-mail addresses: single sign-on trusts them.
    path("accounts/email/", page_not_found_view, name="account_email"),
    path("accounts/preferences/", preferences, name="preferences"),
    path("accounts/", include("allauth.urls")),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
