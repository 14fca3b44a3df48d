"""Admin → Integrations: the provider cards page."""

from __future__ import annotations

from django.contrib.admin import AdminSite
from django.http import HttpRequest
from django.template.response import TemplateResponse

from .base import Provider
from .services import provider_cards


def integrations_overview(request: HttpRequest, *, site: AdminSite) -> TemplateResponse:
    user = request.user

    def can_configure(provider: Provider) -> bool:
        return user.has_module_perms(provider.kind)

    context = {
        **site.each_context(request),
        "title": "Integrations",
        "cards": provider_cards(can_configure=can_configure),
    }
    return TemplateResponse(request, "admin/integrations/overview.html", context)
