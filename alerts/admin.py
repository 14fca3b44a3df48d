"""Alerts in the admin: rules, alerts (acknowledge, snooze, unsnooze), their history and
the e-mails sent for them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html

from backups.models import ConnectorKind

from . import services
from .models import Alert, AlertEvent, AlertNotification, AlertRule

STATE_BADGES: dict[str, str] = {
    Alert.State.OPEN: "vx-failed",
    Alert.State.ACKNOWLEDGED: "vx-warning",
    Alert.State.RESOLVED: "vx-ok",
}


class AlertRuleForm(forms.ModelForm[AlertRule]):
    kind = forms.ChoiceField(label="Type", choices=AlertRule.Kind.choices, widget=forms.RadioSelect)
    connector_kinds = forms.MultipleChoiceField(
        label="Connector kinds",
        choices=ConnectorKind.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Leave all unticked for every kind.",
    )

    class Meta:
        model = AlertRule
        fields = [
            "name",
            "kind",
            "enabled",
            "threshold_hours",
            "onboarding_grace_hours",
            "lookback_hours",
            "include_failed_status",
            "customers",
            "connector_kinds",
            "recipients",
            "send_resolved",
            "reminder_hours",
        ]
        widgets = {"recipients": forms.Textarea(attrs={"rows": 3})}


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin[AlertRule]):
    form = AlertRuleForm
    list_display = ["name", "kind", "enabled", "condition", "scope", "recipients"]
    list_filter = ["kind", "enabled"]
    list_editable = ["enabled"]
    search_fields = ["name", "recipients"]
    filter_horizontal = ["customers"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "enabled"]}),
        ("Backup Stale", {"fields": ["threshold_hours", "onboarding_grace_hours"]}),
        ("Backup Failed", {"fields": ["lookback_hours", "include_failed_status"]}),
        ("Scope", {"fields": ["customers", "connector_kinds"]}),
        ("Notifications", {"fields": ["recipients", "send_resolved", "reminder_hours"]}),
    ]

    @admin.display(description="Condition")
    def condition(self, rule: AlertRule) -> str:
        if rule.kind == AlertRule.Kind.BACKUP_STALE:
            return f"no complete backup for {rule.threshold_hours} h"
        return f"failure within {rule.lookback_hours} h"

    @admin.display(description="Scope")
    def scope(self, rule: AlertRule) -> str:
        kinds = ", ".join(rule.kind_labels()) or "all kinds"
        return f"{kinds}"


class AlertEventInline(admin.TabularInline[AlertEvent, Alert]):
    model = AlertEvent
    extra = 0
    can_delete = False
    fields = ["at", "kind", "by", "note", "notified_at"]
    readonly_fields = ["at", "kind", "by", "note", "notified_at"]
    verbose_name_plural = "History"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SnoozeForm(forms.Form):
    until = forms.DateTimeField(
        label="Snooze until (UTC)",
        help_text="YYYY-MM-DD HH:MM",
        initial=lambda: (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%d %H:%M"),
    )
    reason = forms.CharField(label="Reason", widget=forms.Textarea(attrs={"rows": 2}))

    def clean_until(self) -> Any:
        until = self.cleaned_data["until"]
        if until <= timezone.now():
            raise forms.ValidationError("Choose a time in the future.")
        return until


class AcknowledgeForm(forms.Form):
    note = forms.CharField(label="Note", required=False, widget=forms.Textarea(attrs={"rows": 2}))


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin[Alert]):
    list_display = [
        "summary",
        "kind",
        "state_badge",
        "customer",
        "connector_kind",
        "opened_at",
        "last_seen_at",
        "snoozed_until",
    ]
    # Only customers that have alerts: a list of every customer would swamp the sidebar.
    list_filter = [
        "state",
        "kind",
        "rule",
        ("connector__customer", admin.RelatedOnlyFieldListFilter),
        "connector__kind",
    ]
    list_select_related = ["connector__customer", "rule"]
    search_fields = ["summary", "connector__name", "connector__customer__name"]
    date_hierarchy = "opened_at"
    inlines = [AlertEventInline]
    actions = ["acknowledge_action", "snooze_action", "unsnooze_action"]
    readonly_fields = [
        "summary",
        "kind",
        "state",
        "rule",
        "connector",
        "connection",
        "reason",
        "opened_at",
        "last_seen_at",
        "resolved_at",
        "acknowledged_at",
        "acknowledged_by",
        "acknowledge_note",
        "snoozed_until",
        "snoozed_by",
        "snooze_reason",
        "previous",
        "emails",
    ]
    fields = list(readonly_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="State", ordering="state")
    def state_badge(self, alert: Alert) -> str:
        return format_html(
            '<span class="vx-badge {}">{}</span>',
            STATE_BADGES[alert.state],
            alert.get_state_display(),
        )

    @admin.display(description="Customer", ordering="connector__customer__name")
    def customer(self, alert: Alert) -> str:
        if alert.connector and alert.connector.customer:
            return alert.connector.customer.name
        return ""

    @admin.display(description="Kind")
    def connector_kind(self, alert: Alert) -> str:
        return alert.connector.get_kind_display() if alert.connector else ""

    @admin.display(description="E-mails sent")
    def emails(self, alert: Alert) -> str:
        notifications = AlertNotification.objects.filter(events__alert=alert).distinct()
        rows = [
            format_html(
                "{} · {} · {}{}",
                n.created_at.strftime("%Y-%m-%d %H:%M"),
                n.recipient,
                n.get_status_display(),
                f" ({n.error})" if n.error else "",
            )
            for n in notifications
        ]
        return format_html("<br>".join(["{}"] * len(rows)), *rows) if rows else "none"

    def _user(self, request: HttpRequest) -> str:
        return request.user.get_username()

    @admin.action(description="Acknowledge selected alerts")
    def acknowledge_action(
        self, request: HttpRequest, queryset: QuerySet[Alert]
    ) -> HttpResponse | None:
        form = AcknowledgeForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            count = services.acknowledge(
                list(queryset.values_list("pk", flat=True)),
                by=self._user(request),
                note=form.cleaned_data["note"],
                now=timezone.now(),
            )
            self.message_user(request, f"{count} alert(s) acknowledged.", messages.SUCCESS)
            return None
        return self._intermediate(request, queryset, form, "acknowledge_action", "Acknowledge")

    @admin.action(description="Snooze selected alerts")
    def snooze_action(self, request: HttpRequest, queryset: QuerySet[Alert]) -> HttpResponse | None:
        form = SnoozeForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            count = services.snooze(
                list(queryset.values_list("pk", flat=True)),
                until=form.cleaned_data["until"],
                reason=form.cleaned_data["reason"],
                by=self._user(request),
                now=timezone.now(),
            )
            self.message_user(request, f"{count} alert(s) snoozed.", messages.SUCCESS)
            return None
        return self._intermediate(request, queryset, form, "snooze_action", "Snooze")

    @admin.action(description="Unsnooze selected alerts")
    def unsnooze_action(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        count = services.unsnooze(
            list(queryset.values_list("pk", flat=True)), by=self._user(request), now=timezone.now()
        )
        self.message_user(request, f"{count} alert(s) unsnoozed.", messages.SUCCESS)

    def _intermediate(
        self,
        request: HttpRequest,
        queryset: QuerySet[Alert],
        form: forms.Form,
        action: str,
        verb: str,
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": f"{verb} alerts",
            "alerts": queryset,
            "form": form,
            "action": action,
            "verb": verb,
            "opts": self.model._meta,
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
        }
        return TemplateResponse(request, "admin/alerts/alert/action_form.html", context)


@admin.register(AlertNotification)
class AlertNotificationAdmin(admin.ModelAdmin[AlertNotification]):
    list_display = ["created_at", "recipient", "subject", "status", "attempts", "sent_at", "error"]
    list_filter = ["status"]
    search_fields = ["recipient", "subject"]
    readonly_fields = [
        "recipient",
        "subject",
        "status",
        "attempts",
        "error",
        "created_at",
        "next_attempt_at",
        "sent_at",
        "body_text",
    ]
    fields = list(readonly_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
