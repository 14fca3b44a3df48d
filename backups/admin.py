"""The backup inventory in the admin: connectors, statuses and audit events are view only
(the sync writes them; nobody edits them). Account links are the account-link review:
the admin's own changelist — filters, search, paging, actions — with suggested
customers per account, one-click links, and an autocomplete for any other customer."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_POST

from customers.models import Customer
from integrations.admin import HistoryAdmin
from integrations.registry import provider_label

from . import accounts
from .models import AccountLink, BackupAuditEvent, BackupConnector, BackupConnectorStatus


@admin.register(BackupConnector)
class BackupConnectorAdmin(HistoryAdmin[BackupConnector]):
    list_display = ["name", "customer", "kind", "vendor_type", "last_seen_at", "removed_at"]
    list_filter = ["kind", "connection"]
    list_select_related = ["customer"]
    search_fields = ["name", "external_id", "customer__name"]


@admin.register(BackupConnectorStatus)
class BackupConnectorStatusAdmin(HistoryAdmin[BackupConnectorStatus]):
    list_display = [
        "connector",
        "status",
        "health",
        "reason",
        "reason_text",
        "last_success_at",
        "checked_at",
    ]
    list_filter = ["status", "health"]
    list_select_related = ["connector"]
    search_fields = ["connector__name", "reason", "reason_text"]


@admin.register(BackupAuditEvent)
class BackupAuditEventAdmin(HistoryAdmin[BackupAuditEvent]):
    list_display = ["occurred_at", "customer", "category", "area", "message", "actor", "succeeded"]
    list_filter = ["category", "succeeded", "is_own_read"]
    list_select_related = ["customer"]
    search_fields = ["message", "actor"]
    # Millions of rows: no full COUNT(*) for the "n total" link.
    show_full_result_count = False


# --- the account-link review -------------------------------------------------------------


def safe_next(request: HttpRequest, fallback: str) -> str:
    """The `next` a form carries if it stays on this site, else the fallback: a link in a
    phishing e-mail must not turn Vectis into a redirector."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback


class ReviewFilter(admin.SimpleListFilter):
    """The review opens on what needs a decision: accounts that matched no customer or
    several."""

    title = "review"
    parameter_name = "review"
    DEFAULT = "to_review"
    STATES = {
        "to_review": [AccountLink.State.UNLINKED, AccountLink.State.AMBIGUOUS],
        "linked": [AccountLink.State.LINKED],
        "excluded": [AccountLink.State.EXCLUDED],
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        counts = dict(
            AccountLink.objects.filter(removed_at__isnull=True)
            .values_list("state")
            .annotate(n=Count("id"))
        )

        def count(key: str) -> int:
            return sum(counts.get(state, 0) for state in self.STATES[key])

        return [
            ("to_review", f"To review ({count('to_review')})"),
            ("linked", f"Linked ({count('linked')})"),
            ("excluded", f"Excluded ({count('excluded')})"),
            ("all", "All"),
        ]

    def value(self) -> str:
        return super().value() or self.DEFAULT

    def choices(self, changelist: Any) -> Any:
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == str(lookup),
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        states = self.STATES.get(self.value())
        if states is None:
            return queryset
        return queryset.filter(state__in=states)


class LinkForm(forms.Form):
    customer = forms.ModelChoiceField(
        queryset=Customer.objects.all(),
        label="Customer",
        help_text="Type to search; syncs never change a link made here.",
    )

    def __init__(self, *args: Any, site: admin.AdminSite, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        customer = self.fields["customer"]
        assert isinstance(customer, forms.ModelChoiceField)
        widget = AutocompleteSelect(AccountLink._meta.get_field("customer"), site)
        widget.choices = customer.choices  # the widget renders the field's own iterator
        customer.widget = widget


@admin.register(AccountLink)
class AccountLinkAdmin(admin.ModelAdmin[AccountLink]):
    """Accounts to review: link each to a customer (a manual link), create a customer for
    it, or exclude it; linked and excluded accounts one filter away."""

    list_display = ["account", "state_display", "customer", "connector_count", "suggestions"]
    list_filter = [ReviewFilter, "connection"]
    list_select_related = ["customer", "connection"]
    search_fields = ["company_name", "contact_name", "email", "=external_id"]
    actions = ["link_action", "create_customer_action", "exclude_action", "include_action"]
    ordering = ["company_name", "id"]
    list_per_page = 25
    fields = ["account", "connection", "state", "method", "customer", "first_seen_at"]
    readonly_fields = ["account", "connection", "state", "method", "first_seen_at"]
    autocomplete_fields = ["customer"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AccountLink]:
        return (
            super()
            .get_queryset(request)
            .filter(removed_at__isnull=True)
            .annotate(
                live_connectors=Count("connectors", filter=Q(connectors__removed_at__isnull=True))
            )
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {"title": "Accounts to review", "subtitle": None, **(extra_context or {})}
        return super().changelist_view(request, context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # syncs create links

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # exclude instead: a deleted link would come back with the next sync

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        # Suggestions for the page's rows only, from one query of customers.
        rows = list(changelist.result_list)
        suggestions = accounts.suggest_customers(rows)
        can_link = self.has_change_permission(request)
        here = request.get_full_path()
        for row in rows:
            row.suggested = suggestions.get(row.pk, [])
            row.can_link = can_link  # a viewer sees the suggestions, not the buttons
            row.review_next = here  # a one-click link comes back to this very list
        return changelist

    # --- columns -----------------------------------------------------------------------

    @admin.display(description="Account", ordering="company_name")
    def account(self, link: AccountLink) -> str:
        detail = link.contact_name if link.company_name else "no company name at the vendor"
        return format_html(
            '<strong data-account="{}">{}</strong><br>'
            '<small class="vx-muted">{} account · {} · {}</small>',
            link.external_id,
            link.display_name,
            provider_label(link.connection.provider),
            detail,
            link.external_id,
        )

    @admin.display(description="State", ordering="state")
    def state_display(self, link: AccountLink) -> str:
        return link.get_state_display()

    @admin.display(description="Connectors", ordering="live_connectors")
    def connector_count(self, link: AccountLink) -> int:
        return int(getattr(link, "live_connectors", 0))

    @admin.display(description="Suggested customers")
    def suggestions(self, link: AccountLink) -> str:
        found: list[accounts.Suggestion] = getattr(link, "suggested", [])
        if not found:
            return format_html('<span class="vx-muted">{}</span>', "no close match")
        if not getattr(link, "can_link", False) or link.state in (
            AccountLink.State.LINKED,
            AccountLink.State.EXCLUDED,
        ):
            return format_html_join(
                "<br>",
                "{} <span class='vx-muted'>({}%, {})</span>",
                ((s.name, s.score, s.why) for s in found),
            )
        # Buttons of the changelist's own form (its CSRF token goes along); `formaction`
        # sends just this one to the link view.
        url = reverse("admin:backups_accountlink_link", args=[link.pk])
        url += "?" + urlencode({"next": getattr(link, "review_next", "")})
        return format_html_join(
            "<br>",
            '<button type="submit" class="button vx-suggestion" formaction="{}" '
            'name="customer" value="{}">Link to {}</button> '
            '<span class="vx-muted">({}%, {})</span>',
            ((url, s.customer_id, s.name, s.score, s.why) for s in found),
        )

    # --- editing one link: choosing its customer is a manual link ---------------------------

    def save_model(self, request: HttpRequest, obj: AccountLink, form: Any, change: bool) -> None:
        """Choosing a customer here is a manual link; clearing it sends the account back to
        review (the next sync matches it again); saving without a change changes nothing."""
        if "customer" not in form.changed_data:
            return
        if obj.customer is not None:
            accounts.link_account(obj, obj.customer)
        else:
            accounts.include_account(obj)

    # --- actions -------------------------------------------------------------------------

    def _done(self, request: HttpRequest, text: str) -> None:
        self.message_user(request, text, messages.SUCCESS)

    def _record(self, request: HttpRequest, links: Iterable[AccountLink], decision: str) -> None:
        """Who decided what, on each account's history (and its customer's timeline)."""
        LogEntry.objects.log_actions(
            user_id=request.user.pk or 0,
            queryset=list(links),
            action_flag=CHANGE,
            change_message=decision,
        )

    @admin.action(description="Link to a customer…", permissions=["change"])
    def link_action(
        self, request: HttpRequest, queryset: QuerySet[AccountLink]
    ) -> HttpResponse | None:
        form = LinkForm(request.POST if "apply" in request.POST else None, site=self.admin_site)
        if "apply" in request.POST and form.is_valid():
            customer = form.cleaned_data["customer"]
            links = list(queryset)
            for link in links:
                accounts.link_account(link, customer)
            self._record(request, links, f"Linked to customer “{customer}”.")
            self._done(
                request,
                f"{len(links)} account(s) linked to \u201c{customer}\u201d; syncs will keep "
                "these links.",
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Link accounts to a customer",
            "links": queryset,
            "form": form,
            "media": self.media + form.media,
            "opts": self.model._meta,
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
        }
        return TemplateResponse(request, "admin/backups/accountlink/link_form.html", context)

    @admin.action(description="Create a customer for each", permissions=["change"])
    def create_customer_action(self, request: HttpRequest, queryset: QuerySet[AccountLink]) -> None:
        links = list(queryset)
        created = [str(accounts.create_customer_for_account(link)) for link in links]
        self._record(request, links, "Created a customer for the account and linked it.")
        self._done(
            request, "Created customer(s): " + ", ".join(f"\u201c{n}\u201d" for n in created)
        )

    @admin.action(description="Exclude from monitoring", permissions=["change"])
    def exclude_action(self, request: HttpRequest, queryset: QuerySet[AccountLink]) -> None:
        links = list(queryset)
        for link in links:
            accounts.exclude_account(link, by=request.user.get_username())
        self._record(request, links, "Excluded from monitoring.")
        self._done(
            request,
            f"{len(links)} account(s) excluded: their connectors are out of the dashboard "
            "and the alert rules, and their open alerts ended without a notice.",
        )

    @admin.action(description="Include again", permissions=["change"])
    def include_action(self, request: HttpRequest, queryset: QuerySet[AccountLink]) -> None:
        links = list(queryset)
        for link in links:
            accounts.include_account(link)
        self._record(request, links, "Included in monitoring again.")
        self._done(request, f"{len(links)} account(s) included again; the next sync matches them.")

    # --- one click: link to a suggested customer ------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/link/", wrap(self.link_view), name="backups_accountlink_link"),
            *super().get_urls(),
        ]

    @staticmethod
    def review_url() -> str:
        return reverse("admin:backups_accountlink_changelist")

    @method_decorator(require_POST)
    def link_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        link = get_object_or_404(AccountLink, pk=object_id)
        if not self.has_change_permission(request, link):
            raise PermissionDenied
        chosen = request.POST.get("customer", "")
        customer = Customer.objects.filter(pk=int(chosen)).first() if chosen.isdigit() else None
        if customer is None:
            messages.error(
                request, f"Choose a customer to link \u201c{link.display_name}\u201d to."
            )
        else:
            accounts.link_account(link, customer)
            self._record(request, [link], f"Linked to customer \u201c{customer}\u201d.")
            self._done(
                request,
                f"\u201c{link.display_name}\u201d is now linked to \u201c{customer}\u201d; syncs "
                "will keep this link.",
            )
        return HttpResponseRedirect(safe_next(request, self.review_url()))
