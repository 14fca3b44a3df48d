"""Admin → Integrations: the provider cards page."""

from __future__ import annotations

from django.contrib.admin import AdminSite
from django.http import HttpRequest
from django.template.response import TemplateResponse

from .base import Provider
from .registry import all_providers
from .services import provider_cards


def integrations_overview(request: HttpRequest, *, site: AdminSite) -> TemplateResponse:
    user = request.user

    granted = user.get_all_permissions()

    def can_configure(provider: Provider) -> bool:
        """Adding or changing connections (credentials): an Administrator's."""
        return any(
            name.startswith(f"{provider.kind}.") and not name.startswith(f"{provider.kind}.view_")
            for name in granted
        )

    context = {
        **site.each_context(request),
        "title": "Integrations",
        "cards": provider_cards(can_configure=can_configure),
        "can_view": {p.kind for p in all_providers() if user.has_module_perms(p.kind)},
    }
    return TemplateResponse(request, "admin/integrations/overview.html", context)
