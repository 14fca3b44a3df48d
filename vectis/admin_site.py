"""The Vectis admin site: the MSP admin UI, branded and grouped by what MSPs look for.

The index shows sections (Integrations, Customers, Backups, Alerts) rather than Django
apps; every provider's app (the package of a dotted path in `VECTIS_PROVIDERS`) appears
under Integrations, so a second vendor needs no line here.
"""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils import timezone

from access.mfa import HAS_SECOND_FACTOR, MFA_BY_PROVIDER, has_second_factor
from integrations.views import integrations_overview

from .pages.dashboard import dashboard, dashboard_summary

# app label -> section title; sections appear in this order, unknown apps after them.
SECTIONS: dict[str, str] = {
    "integrations": "Integrations",
    "customers": "Customers",
    "backups": "Backups",
    "alerts": "Alerts",
    "auth": "Users and permissions",
    "axes": "Users and permissions",
    "access": "Users and permissions",
    "account": "Users and permissions",
    "socialaccount": "Users and permissions",
    "mfa": "Users and permissions",
    "vectis": "Reports and API",
}
SECTION_ORDER = [
    "Integrations",
    "Customers",
    "Backups",
    "Alerts",
    "Reports and API",
    "Users and permissions",
]


def section_of(app_label: str, default: str) -> str:
    """The section an app's models appear under: a provider's app under Integrations."""
    if app_label in SECTIONS:
        return SECTIONS[app_label]
    providers = {path.split(".", 1)[0] for path in settings.VECTIS_PROVIDERS.values()}
    return "Integrations" if app_label in providers else default


REVIEW_TABS = {"review": "to_review", "linked": "linked", "excluded": "excluded"}


def review_redirect(request: HttpRequest) -> HttpResponseRedirect:
    tab = REVIEW_TABS.get(request.GET.get("tab", "review"), "to_review")
    changelist = reverse("admin:backups_accountlink_changelist")
    return HttpResponseRedirect(f"{changelist}?review={tab}")


class VectisAdminSite(admin.AdminSite):
    site_header = "Vectis"
    site_title = "Vectis"
    index_title = "Backup monitoring"

    def get_urls(self) -> list[URLResolver | URLPattern]:
        # Admin → Integrations is the provider cards page and Admin → Backups the backup
        # health dashboard, not plain model lists.
        overview = self.admin_view(partial(integrations_overview, site=self))
        return [
            path("integrations/", overview, name="integrations_overview"),
            path("backups/", self.admin_view(partial(dashboard, site=self)), name="dashboard"),
            # The review's old address (bookmarks, e-mails): now the account-link list.
            path("account-links/review/", self.admin_view(review_redirect), name="account_review"),
            *super().get_urls(),
        ]

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        """One sign-in page for everything (password, second factor, single sign-on):
        django-allauth's, in the admin's look."""
        if request.user.is_authenticated:
            if self.has_permission(request):
                return HttpResponseRedirect(reverse("admin:index"))
            # Signed in, but not let in: say so (sending them to sign in again would loop).
            context = {
                "title": "No access",
                "sentence": f"You are signed in as {request.user.get_username()}, but your "
                "user has no access to Vectis (no role, or not marked as staff). Ask an "
                "administrator to give you a role, or sign out and use another account.",
            }
            return TemplateResponse(request, "access/no_access.html", context, status=403)
        target = request.GET.get(REDIRECT_FIELD_NAME) or reverse("admin:index")
        return HttpResponseRedirect(f"{reverse('account_login')}?{urlencode({'next': target})}")

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        context = dict(extra_context or {})
        context["offer_second_factor"] = not (
            request.session.get(MFA_BY_PROVIDER)
            or request.session.get(HAS_SECOND_FACTOR)
            or has_second_factor(request.user)
        )
        if request.user.has_perm("backups.view_backupconnector"):
            context["health"] = dashboard_summary(now=timezone.now())
        return super().index(request, context)

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[Any]:
        apps = super().get_app_list(request, app_label)
        if app_label is not None:
            return apps
        sections: dict[str, dict[str, Any]] = {}
        for app in apps:
            title = section_of(app["app_label"], app["name"])
            section = sections.get(title)
            if section is None:
                sections[title] = {**app, "name": title, "models": list(app["models"])}
            else:
                section["models"].extend(app["models"])
        order = {title: index for index, title in enumerate(SECTION_ORDER)}
        return sorted(
            sections.values(), key=lambda s: (order.get(s["name"], len(order)), s["name"])
        )
