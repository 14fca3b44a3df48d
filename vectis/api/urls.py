"""/api/v1/ (the endpoints), /api/schema/ (OpenAPI 3) and /api/docs/ (interactive docs,
Swagger UI served from drf-spectacular-sidecar: nothing is fetched from a CDN)."""

from __future__ import annotations

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from . import views
from .errors import not_found

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("customers", views.CustomerViewSet, basename="customer")
router.register("connectors", views.ConnectorViewSet, basename="connector")
router.register("alerts", views.AlertViewSet, basename="alert")
router.register("sync-runs", views.SyncRunViewSet, basename="syncrun")
router.register("connections", views.ConnectionViewSet, basename="connection")

urlpatterns = [
    path("v1/", include((router.urls, "api"), namespace="v1")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    re_path(r"^(?P<path>.*)$", not_found),
]
