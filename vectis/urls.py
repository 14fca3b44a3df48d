"""Root URLs: the admin is the product UI."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from alerts.views import alert_action

from .health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # Where the Acknowledge / Snooze links of alert messages lead (a confirmation page).
    path("alerts/act/<str:token>/", alert_action, name="alert_action"),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
