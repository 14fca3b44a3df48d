"""Alerts in the admin: rules, alerts (acknowledge, snooze, unsnooze), their history and
the e-mails sent for them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apprise.plugins.slack import NotifySlack
from apprise.plugins.workflows import NotifyWorkflows
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from backups.models import ConnectorKind
from integrations.admin import HistoryAdmin

from . import lifecycle, maintenance
from .channels import describe_target, secret_for_new_webhook, service_for
from .models import (
    Alert,
    AlertEvent,
    AlertNotification,
    AlertRule,
    MaintenanceWindow,
    NotificationChannel,
    validate_recipients,
)
from .services import enable_channel, send_test

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
            "include_failed_jobs",
            "include_failed_status",
            "success_rate_days",
            "success_rate_percent",
            "customers",
            "connector_kinds",
            "recipients",
            "channels",
            "send_resolved",
            "reminder_hours",
            "escalation_channel",
            "escalation_minutes",
        ]
        widgets = {
            "recipients": forms.Textarea(attrs={"rows": 3}),
            "channels": forms.CheckboxSelectMultiple,
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("recipients", "").strip() and not data.get("channels"):
            raise forms.ValidationError(
                "Give the rule at least one e-mail recipient or one channel, or nobody hears "
                "of its alerts."
            )
        if bool(data.get("escalation_channel")) != bool(data.get("escalation_minutes")):
            raise forms.ValidationError("Escalation needs both a channel and a delay (or neither).")
        return data


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
        (
            "Backup Failed",
            {"fields": ["lookback_hours", "include_failed_jobs", "include_failed_status"]},
        ),
        ("Backup Success Rate", {"fields": ["success_rate_days", "success_rate_percent"]}),
        ("Scope", {"fields": ["customers", "connector_kinds"]}),
        (
            "Notifications",
            {"fields": ["recipients", "channels", "send_resolved", "reminder_hours"]},
        ),
        ("Escalation", {"fields": ["escalation_channel", "escalation_minutes"]}),
    ]

    @admin.display(description="Condition")
    def condition(self, rule: AlertRule) -> str:
        if rule.kind == AlertRule.Kind.BACKUP_STALE:
            return f"no complete backup for {rule.threshold_hours} h"
        if rule.kind == AlertRule.Kind.SUCCESS_RATE:
            return (
                f"under {rule.success_rate_percent} % of backup jobs succeeded in "
                f"{rule.success_rate_days} d"
            )
        return f"failure within {rule.lookback_hours} h"

    @admin.display(description="Scope")
    def scope(self, rule: AlertRule) -> str:
        kinds = ", ".join(rule.kind_labels()) or "all kinds"
        return f"{kinds}"


class NotificationChannelForm(forms.ModelForm[NotificationChannel]):
    """A channel's target: addresses for e-mail; a URL for everything else, which is a
    secret — stored encrypted, never shown again (leave it empty to keep the stored one)."""

    url = forms.CharField(
        label="URL",
        required=False,
        widget=forms.TextInput(attrs={"size": 80, "autocomplete": "off"}),
        help_text="Teams: the Workflows webhook URL (https://….logic.azure.com/workflows/…) "
        "or workflows://…; Slack: https://hooks.slack.com/services/…; generic webhook: your "
        "https:// endpoint; other services: any apprise URL (https://appriseit.com). Stored "
        "encrypted and never shown again: leave empty to keep the stored one.",
    )
    new_secret = forms.BooleanField(
        label="Generate a new signing secret",
        required=False,
        help_text="Generic webhook: the receiver checks X-Vectis-Signature with it. A new "
        "secret is shown once, after saving.",
    )

    class Meta:
        model = NotificationChannel
        fields = [
            "name",
            "kind",
            "addresses",
            "min_severity",
            "enabled",
            "digest_enabled",
            "digest_time",
            "digest_timezone",
            "digest_only",
        ]
        widgets = {"addresses": forms.Textarea(attrs={"rows": 2, "cols": 60})}
        help_texts = {"addresses": "E-mail channel: addresses, separated by commas or lines."}

    def clean_digest_timezone(self) -> str:
        name = str(self.cleaned_data.get("digest_timezone") or "").strip()
        if name:
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise forms.ValidationError(
                    f"“{name}” is not a time zone name (e.g. Europe/Copenhagen)."
                ) from None
        return name

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        url = str(data.get("url") or "").strip()
        if data.get("digest_enabled") and not data.get("digest_time"):
            self.add_error("digest_time", "Choose the local time the digest goes out.")
        if data.get("digest_only") and not data.get("digest_enabled"):
            self.add_error("digest_only", "Only the digest needs the digest switched on.")
        if kind == NotificationChannel.Kind.EMAIL:
            addresses = str(data.get("addresses") or "")
            try:
                validate_recipients(addresses)
            except forms.ValidationError as exc:
                self.add_error("addresses", exc)
            return data
        stored = self.instance.pk is not None and self.instance.has_url
        if not url and not stored:
            self.add_error("url", "Enter the URL messages are posted to.")
            return data
        # A new URL, or the stored one under a kind that changed, must suit the kind.
        checked = url or (self.instance.secrets().get("url", "") if stored else "")
        if url or kind != self.initial.get("kind"):
            problem = url_problem(str(kind), checked)
            if problem:
                self.add_error("url", problem)
        return data


def url_problem(kind: str, url: str) -> str:
    """Why this URL cannot be used for this kind of channel ("" when it can)."""
    if kind == NotificationChannel.Kind.WEBHOOK:
        if not re.match(r"^https?://[^\s/]+", url):
            return "A webhook URL starts with https:// (or http:// inside your network)."
        return ""
    plugin = service_for(url)
    if kind == NotificationChannel.Kind.TEAMS and not isinstance(plugin, NotifyWorkflows):
        return (
            "A Teams channel needs the URL Teams gives when you add the workflow “Post to a "
            "channel when a webhook request is received” (https://…logic.azure.com/… or "
            "https://…api.powerplatform.com/…); the old Office 365 connectors are retired."
        )
    if kind == NotificationChannel.Kind.SLACK and not isinstance(plugin, NotifySlack):
        return "A Slack incoming webhook starts with https://hooks.slack.com/services/."
    if plugin is None:
        return "Apprise does not recognise this URL (see https://appriseit.com for its forms)."
    return ""


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin[NotificationChannel]):
    """Where alerts go besides plain e-mail. The URL is write-only; **Send test**
    delivers a sample message through the very code alerts take and shows the answer."""

    form = NotificationChannelForm
    list_display = ["name", "kind", "target", "min_severity", "state", "digest"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name"]
    readonly_fields = ["target", "state"]
    change_form_template = "admin/alerts/notificationchannel/change_form.html"
    fieldsets = [
        (None, {"fields": ["name", "kind", "min_severity", "enabled", "state"]}),
        ("Target", {"fields": ["target", "url", "addresses", "new_secret"]}),
        (
            "Daily digest",
            {"fields": ["digest_enabled", "digest_time", "digest_timezone", "digest_only"]},
        ),
    ]

    @admin.display(description="Target")
    def target(self, channel: NotificationChannel) -> str:
        return describe_target(channel) or "—"

    @admin.display(description="State")
    def state(self, channel: NotificationChannel) -> str:
        if channel.enabled:
            return "Enabled"
        return f"Disabled: {channel.disabled_reason}" if channel.disabled_reason else "Disabled"

    @admin.display(description="Digest")
    def digest(self, channel: NotificationChannel) -> str:
        if not channel.digest_enabled or channel.digest_time is None:
            return "—"
        return f"daily at {channel.digest_time:%H:%M} {channel.digest_timezone or 'UTC'}"

    def save_model(
        self, request: HttpRequest, obj: NotificationChannel, form: Any, change: bool
    ) -> None:
        url = str(form.cleaned_data.get("url") or "").strip()
        values = obj.secrets() if obj.has_url else {}
        if obj.kind == NotificationChannel.Kind.EMAIL:
            values = {}
        elif url:
            values["url"] = url
        new_secret = ""
        if obj.kind == NotificationChannel.Kind.WEBHOOK and (
            form.cleaned_data.get("new_secret") or not values.get("secret")
        ):
            new_secret = values["secret"] = secret_for_new_webhook()
        obj.set_secrets(values)
        enabled_again = change and obj.enabled and not form.initial.get("enabled", True)
        if enabled_again:
            obj.consecutive_failures, obj.disabled_at, obj.disabled_reason = 0, None, ""
        if obj.digest_enabled and not form.initial.get("digest_enabled", False):
            obj.last_digest_at = None  # switched (back) on: the first digest counts from now
        super().save_model(request, obj, form, change)
        if enabled_again:
            expired = enable_channel(obj, now=timezone.now())
            if expired:
                messages.info(
                    request,
                    f"{expired} message(s) that waited more than "
                    f"{settings.VECTIS_EMAIL_MAX_AGE_HOURS} hours for this channel were not "
                    "sent (see the delivery log).",
                )
        if new_secret:
            messages.warning(
                request,
                f"The webhook's signing secret (shown this once; give it to the receiver): "
                f"{new_secret}",
            )

    def construct_change_message(
        self, request: HttpRequest, form: Any, formsets: Any, add: bool = False
    ) -> list[dict[str, Any]]:
        # History names the fields that changed, never a URL or a secret.
        message = super().construct_change_message(request, form, formsets, add)
        for entry in message:
            changed = entry.get("changed")
            if changed:
                changed["fields"] = [f for f in changed.get("fields", []) if f != "URL"]
        return message

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:object_id>/send-test/",
                self.admin_site.admin_view(self.send_test_view),
                name="alerts_notificationchannel_send_test",
            ),
            *super().get_urls(),
        ]

    @method_decorator(require_POST)
    def send_test_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        channel = get_object_or_404(NotificationChannel, pk=object_id)
        if not self.has_change_permission(request, channel):
            raise PermissionDenied
        ok, message = send_test(channel, now=timezone.now())
        return JsonResponse({"ok": ok, "message": message})


class MaintenanceWindowForm(forms.ModelForm[MaintenanceWindow]):
    weekdays = forms.TypedMultipleChoiceField(
        label="Days",
        coerce=int,
        required=False,
        choices=[
            (1, "Mon"),
            (2, "Tue"),
            (3, "Wed"),
            (4, "Thu"),
            (5, "Fri"),
            (6, "Sat"),
            (7, "Sun"),
        ],
        widget=forms.CheckboxSelectMultiple,
        help_text="Every week: the days it starts on.",
    )

    class Meta:
        model = MaintenanceWindow
        fields = [
            "reason",
            "customer",
            "connector",
            "connection",
            "repeat",
            "starts_at",
            "ends_at",
            "weekdays",
            "start_time",
            "duration_minutes",
            "timezone",
        ]
        help_texts = {
            "timezone": "The time zone of the times entered here, one-off and weekly alike, "
            "e.g. Europe/Copenhagen (empty: UTC).",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # One-off times are shown (and typed) as wall-clock times in the window's zone.
        window = self.instance
        if window.pk and window.timezone and not self.is_bound:
            for name in ("starts_at", "ends_at"):
                moment = getattr(window, name)
                if moment is not None:
                    self.initial[name] = _as_wall_clock(moment, _zone_or_utc(window.timezone))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        scopes = [name for name in ("customer", "connector", "connection") if data.get(name)]
        if len(scopes) != 1:
            raise forms.ValidationError(
                "Choose what the window covers: one customer, one connector or one connection."
            )
        if data.get("repeat") == MaintenanceWindow.Repeat.ONCE:
            starts, ends = data.get("starts_at"), data.get("ends_at")
            if not starts or not ends:
                raise forms.ValidationError("A one-off window needs its start and its end.")
            if ends <= starts:
                self.add_error("ends_at", "The end must come after the start.")
        else:
            if not data.get("weekdays"):
                self.add_error("weekdays", "Choose at least one day.")
            if not data.get("start_time"):
                self.add_error("start_time", "Choose the local start time.")
            if not data.get("duration_minutes"):
                self.add_error("duration_minutes", "How long it lasts, in minutes.")
        name = str(data.get("timezone") or "").strip()
        if name:
            try:
                zone = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                self.add_error("timezone", f"“{name}” is not a time zone name.")
                return data
            for field in ("starts_at", "ends_at"):
                if data.get(field):
                    data[field] = _from_wall_clock(data[field], zone)
        return data


def _zone_or_utc(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _as_wall_clock(moment: datetime, zone: ZoneInfo) -> datetime:
    """`moment`'s wall-clock time in `zone`, as the admin's date/time widgets show it
    (they render in the current time zone)."""
    local = moment.astimezone(zone).replace(tzinfo=None)
    return timezone.make_aware(local, timezone.get_current_timezone())


def _from_wall_clock(typed: datetime, zone: ZoneInfo) -> datetime:
    """What the widgets parsed in the current time zone, read as a wall-clock time in
    `zone` instead."""
    local = timezone.make_naive(typed, timezone.get_current_timezone())
    return local.replace(tzinfo=zone).astimezone(UTC)


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(admin.ModelAdmin[MaintenanceWindow]):
    """Planned work: alerts go on, their messages wait until it ends (one summary)."""

    form = MaintenanceWindowForm
    list_display = ["reason", "covers", "when", "on_now"]
    autocomplete_fields = ["customer", "connector"]
    search_fields = ["reason", "customer__name", "connector__name"]
    list_select_related = ["customer", "connector", "connection"]
    fieldsets = [
        (None, {"fields": ["reason", "customer", "connector", "connection"]}),
        ("When", {"fields": ["repeat", "timezone", "starts_at", "ends_at"]}),
        ("Every week", {"fields": ["weekdays", "start_time", "duration_minutes"]}),
    ]

    @admin.display(description="Covers")
    def covers(self, window: MaintenanceWindow) -> str:
        return str(window.connector or window.customer or window.connection or "—")

    @admin.display(description="When")
    def when(self, window: MaintenanceWindow) -> str:
        zone = _zone_or_utc(window.timezone)
        if window.repeat == MaintenanceWindow.Repeat.ONCE:
            if window.starts_at is None or window.ends_at is None:
                return "—"
            starts, ends = window.starts_at.astimezone(zone), window.ends_at.astimezone(zone)
            return f"{starts:%Y-%m-%d %H:%M} to {ends:%Y-%m-%d %H:%M} ({zone.key})"
        days = ", ".join(
            ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][d - 1] for d in window.weekdays
        )
        start = f"{window.start_time:%H:%M}" if window.start_time else "?"
        return f"every {days} at {start} for {window.duration_minutes} min ({zone.key})"

    @admin.display(description="On now", boolean=True)
    def on_now(self, window: MaintenanceWindow) -> bool:
        return maintenance.current(window, timezone.now()) is not None


class AlertEventInline(admin.TabularInline[AlertEvent, Alert]):
    model = AlertEvent
    extra = 0
    can_delete = False
    fields = ["at", "kind", "by", "note", "notified_at"]
    readonly_fields = ["at", "kind", "by", "note", "notified_at"]
    verbose_name_plural = "History"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SnoozeForm(forms.Form):
    until = forms.DateTimeField(
        label="Snooze until",
        initial=lambda: (timezone.localtime() + timedelta(days=1)).replace(second=0, microsecond=0),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    reason = forms.CharField(label="Reason", widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        zone = timezone.get_current_timezone_name()
        self.fields["until"].help_text = f"In {zone}: YYYY-MM-DD HH:MM."

    def clean_until(self) -> Any:
        until = self.cleaned_data["until"]
        if until <= timezone.now():
            raise forms.ValidationError("Choose a time in the future.")
        return until


class AcknowledgeForm(forms.Form):
    note = forms.CharField(label="Note", required=False, widget=forms.Textarea(attrs={"rows": 2}))


def quick_snoozes(now: datetime) -> list[tuple[str, str, datetime]]:
    """The one-click snooze choices: (value, label, until) in the viewer's time zone."""
    local = timezone.localtime(now)
    tomorrow_nine = (local + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    return [
        ("4h", "4 hours", now + timedelta(hours=4)),
        ("tomorrow", f"Until tomorrow {tomorrow_nine:%H:%M}", tomorrow_nine),
        ("week", "1 week", now + timedelta(weeks=1)),
    ]


class AlertStatusFilter(admin.SimpleListFilter):
    """The alert list opens on what is still open; resolved alerts are one click away."""

    title = "status"
    parameter_name = "status"
    DEFAULT = "unresolved"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            (self.DEFAULT, "Open or acknowledged"),
            ("open", "Open"),
            ("acknowledged", "Acknowledged"),
            ("snoozed", "Snoozed"),
            ("resolved", "Resolved"),
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
        value = self.value()
        if value == self.DEFAULT:
            return queryset.filter(resolved_at__isnull=True)
        if value in (Alert.State.OPEN, Alert.State.ACKNOWLEDGED):
            return queryset.filter(state=value, resolved_at__isnull=True)
        if value == "snoozed":
            return queryset.filter(resolved_at__isnull=True, snoozed_until__gt=timezone.now())
        if value == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin[Alert]):
    """Alerts are looked at and triaged (acknowledge, snooze, unsnooze), never edited
    or deleted: the list actions and the buttons on the alert page both call the same
    services, and both need the "change alert" permission."""

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
        AlertStatusFilter,
        "kind",
        "rule",
        ("connector__customer", admin.RelatedOnlyFieldListFilter),
        "connector__kind",
    ]
    list_select_related = ["connector__customer", "rule", "account_link__customer"]
    search_fields = ["summary", "connector__name", "connector__customer__name"]
    date_hierarchy = "opened_at"
    inlines = [AlertEventInline]
    actions = ["acknowledge_action", "snooze_action", "unsnooze_action"]
    change_form_template = "admin/alerts/alert/change_form.html"
    readonly_fields = [
        "summary",
        "detail",
        "kind",
        "state",
        "rule",
        "connector",
        "connection",
        "account_link",
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
        "escalated_at",
        "parent",
        "previous",
        "emails",
    ]
    fields = list(readonly_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the alert page is a view; triage has its own permission check

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_triage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("alerts.change_alert")

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
        if alert.account_link and alert.account_link.customer:
            return alert.account_link.customer.name
        return ""

    @admin.display(description="Connector kind")
    def connector_kind(self, alert: Alert) -> str:
        return alert.connector.get_kind_display() if alert.connector else ""

    @admin.display(description="Messages sent")
    def emails(self, alert: Alert) -> str:
        notifications = AlertNotification.objects.filter(events__alert=alert).distinct()
        rows = [
            format_html(
                "{} · {} · {}{}",
                # (the absolute form of vectis/timefmt.py, in the viewer's zone)
                f"{timezone.localtime(n.created_at):%Y-%m-%d %H:%M %Z}",
                n.recipient,
                n.get_status_display(),
                f" ({n.error})" if n.error else "",
            )
            for n in notifications
        ]
        return format_html("<br>".join(["{}"] * len(rows)), *rows) if rows else "none"

    def _user(self, request: HttpRequest) -> str:
        return request.user.get_username()

    # --- list actions --------------------------------------------------------------------

    @admin.action(description="Acknowledge selected alerts", permissions=["triage"])
    def acknowledge_action(
        self, request: HttpRequest, queryset: QuerySet[Alert]
    ) -> HttpResponse | None:
        form = AcknowledgeForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            count = lifecycle.acknowledge(
                list(queryset.values_list("pk", flat=True)),
                by=self._user(request),
                note=form.cleaned_data["note"],
                now=timezone.now(),
            )
            self.message_user(request, f"{count} alert(s) acknowledged.", messages.SUCCESS)
            return None
        return self._intermediate(request, queryset, form, "acknowledge_action", "Acknowledge")

    @admin.action(description="Snooze selected alerts", permissions=["triage"])
    def snooze_action(self, request: HttpRequest, queryset: QuerySet[Alert]) -> HttpResponse | None:
        form = SnoozeForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            count = lifecycle.snooze(
                list(queryset.values_list("pk", flat=True)),
                until=form.cleaned_data["until"],
                reason=form.cleaned_data["reason"],
                by=self._user(request),
                now=timezone.now(),
            )
            self.message_user(request, f"{count} alert(s) snoozed.", messages.SUCCESS)
            return None
        return self._intermediate(request, queryset, form, "snooze_action", "Snooze")

    @admin.action(description="Unsnooze selected alerts", permissions=["triage"])
    def unsnooze_action(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        count = lifecycle.unsnooze(
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

    # --- triage on the alert page (the page the e-mails link to) -------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/triage/", wrap(self.triage_view), name="alerts_alert_triage"),
            *super().get_urls(),
        ]

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Alert | None = None,
    ) -> HttpResponse:
        if obj is not None:
            now = timezone.now()
            context.update(
                alert=obj,
                can_triage=self.has_triage_permission(request) and obj.resolved_at is None,
                is_snoozed=obj.is_snoozed(now),
                quick_snoozes=quick_snoozes(now),
                snooze_form=SnoozeForm(),
                acknowledge_form=AcknowledgeForm(),
                triage_url=reverse("admin:alerts_alert_triage", args=[obj.pk]),
                time_zone_name=timezone.get_current_timezone_name(),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    @method_decorator(require_POST)
    def triage_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        alert = get_object_or_404(Alert, pk=object_id)
        if not self.has_triage_permission(request):
            raise PermissionDenied
        page = reverse("admin:alerts_alert_change", args=[alert.pk])
        now = timezone.now()
        action = request.POST.get("triage", "")
        by = self._user(request)
        if action == "acknowledge":
            form = AcknowledgeForm(request.POST)
            note = form.cleaned_data["note"] if form.is_valid() else ""
            done = lifecycle.acknowledge([alert.pk], by=by, note=note, now=now)
            text = "Alert acknowledged: no more reminders." if done else "Already acknowledged."
            self.message_user(request, text, messages.SUCCESS if done else messages.INFO)
        elif action == "snooze":
            until = self._snooze_until(request, now)
            if until is None:
                return HttpResponseRedirect(page)
            lifecycle.snooze(
                [alert.pk],
                until=until,
                reason=request.POST.get("reason", "").strip(),
                by=by,
                now=now,
            )
            local = timezone.localtime(until)
            self.message_user(
                request, f"Snoozed until {local:%Y-%m-%d %H:%M %Z}.", messages.SUCCESS
            )
        elif action == "unsnooze":
            done = lifecycle.unsnooze([alert.pk], by=by, now=now)
            self.message_user(
                request, "Unsnoozed." if done else "It was not snoozed.", messages.SUCCESS
            )
        else:
            self.message_user(request, "Unknown action.", messages.ERROR)
        return HttpResponseRedirect(page)

    def _snooze_until(self, request: HttpRequest, now: datetime) -> datetime | None:
        quick = {value: until for value, _label, until in quick_snoozes(now)}
        choice = request.POST.get("quick", "")
        if choice in quick:
            return quick[choice]
        form = SnoozeForm({"until": request.POST.get("until", ""), "reason": "x"})
        if form.is_valid():
            until: datetime = form.cleaned_data["until"]
            return until
        errors = "; ".join(str(e) for e in form.errors.get("until", []))
        self.message_user(request, f"Snooze until: {errors}", messages.ERROR)
        return None


@admin.register(AlertNotification)
class AlertNotificationAdmin(HistoryAdmin[AlertNotification]):
    """The delivery log: every message, as it was written before sending."""

    list_display = [
        "created_at",
        "recipient",
        "purpose",
        "subject",
        "status",
        "attempts",
        "sent_at",
        "error",
    ]
    list_filter = ["status", "purpose", "channel"]
    search_fields = ["recipient", "subject"]
    fields = [
        "recipient",
        "subject",
        "status",
        "attempts",
        "error",
        "created_at",
        "next_attempt_at",
        "sent_at",
        "failed_at",
        "files",
        "body_text",
    ]

    @admin.display(description="Attached")
    def files(self, notification: AlertNotification) -> str:
        """What was sent with it (a monthly report's PDF), by name and size."""
        names = [
            f"{name} ({size:,} bytes)"
            for name, size in notification.attachments.values_list("filename", "size")
        ]
        return ", ".join(names) or "—"
