"""Alert rules, alerts, their history and the e-mails sent for them.

The lifecycle follows healthchecks and Alertmanager:

- One alert per condition, keyed on ids (`key` = "<rule id>:<connector id>", or
  "sync:<connection id>" for the built-in sync-is-stale check), never on message text.
  A partial unique index allows one unresolved alert per key; a condition that returns
  after resolution opens a new alert linked to the previous one.
- Every state change is claimed with a conditional write (INSERT … ON CONFLICT DO
  NOTHING / UPDATE … WHERE state = old … RETURNING): only the evaluation that changed
  the row records an `AlertEvent`, so two evaluations at once never notify twice.
- E-mails go out by claiming unnotified events; each message is an `AlertNotification`
  row written *before* sending, retried with backoff until the SMTP server takes it,
  and claimed again before every attempt, so it is sent once and never lost.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, validate_email
from django.db import models
from django.db.models import Q

from backups.models import AccountLink, BackupConnector, ConnectorKind
from customers.models import Customer
from integrations.models import Connection


def parse_recipients(value: str) -> list[str]:
    """E-mail addresses separated by commas, semicolons, spaces or new lines."""
    parts = [p.strip() for p in value.replace(";", ",").replace("\n", ",").split(",")]
    return [p for p in (part for chunk in parts for part in chunk.split()) if p]


def validate_recipients(value: str) -> None:
    addresses = parse_recipients(value)
    if not addresses:
        raise ValidationError("Enter at least one e-mail address.")
    bad = []
    for address in addresses:
        try:
            validate_email(address)
        except ValidationError:
            bad.append(address)
    if bad:
        raise ValidationError(f"Not an e-mail address: {', '.join(bad)}")


class AlertRule(models.Model):
    class Kind(models.TextChoices):
        BACKUP_STALE = "backup_stale", "Backup Stale"
        BACKUP_FAILED = "backup_failed", "Backup Failed"
        SUCCESS_RATE = "success_rate", "Backup Success Rate"

    name = models.CharField(max_length=120)
    kind = models.CharField("Type", max_length=16, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    threshold_hours = models.PositiveIntegerField(
        "Stale after (hours)",
        default=48,
        help_text="Backup Stale: alert when a connector has had no complete backup for this long.",
    )
    onboarding_grace_hours = models.PositiveIntegerField(
        "Onboarding grace (hours)",
        default=72,
        help_text="Backup Stale: a new connector without any complete backup alerts only this "
        "long after it was first seen.",
    )
    lookback_hours = models.PositiveIntegerField(
        "Lookback (hours)",
        default=24,
        help_text="Backup Failed: failure events in the audit log this recent.",
    )
    include_failed_status = models.BooleanField(
        "Also when the vendor reports a failure",
        default=True,
        help_text="Backup Failed: also alert when a connector is failed for a reason that needs "
        "fixing (lost authentication, revoked token, quota, configuration): backup vendors "
        "do not always write scheduled backups to their audit log.",
    )
    include_failed_jobs = models.BooleanField(
        "Also failed or incomplete backup jobs",
        default=True,
        help_text="Backup Failed: also alert when a backup job ended unsuccessful or incomplete "
        "within the lookback (the vendor's job data, with the job's error); a complete backup "
        "after it ends the alert.",
    )
    success_rate_days = models.PositiveIntegerField(
        "Success rate over (days)",
        default=7,
        validators=[MinValueValidator(1), MaxValueValidator(28)],
        help_text="Backup Success Rate: the days of backup jobs counted (1-28, today included).",
    )
    success_rate_percent = models.PositiveIntegerField(
        "Alert below (%)",
        default=90,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Backup Success Rate: alert when fewer of the finished backup jobs than this "
        "succeeded (incomplete and unsuccessful jobs count against it; cancelled and running "
        "ones are left out).",
    )
    customers = models.ManyToManyField(
        Customer,
        blank=True,
        related_name="alert_rules",
        help_text="Leave empty for all customers.",
    )
    connector_kinds = models.JSONField(
        default=list,
        blank=True,
        help_text="Connector kinds this rule covers; empty for all.",
    )
    recipients = models.TextField(
        validators=[validate_recipients],
        help_text="One or more e-mail addresses, separated by commas or new lines.",
    )
    send_resolved = models.BooleanField("Send resolved notices", default=True)
    reminder_hours = models.PositiveIntegerField(
        "Remind every (hours)",
        null=True,
        blank=True,
        help_text="While an alert stays open and unacknowledged; empty for no reminders.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "alert_rules"
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def recipient_list(self) -> list[str]:
        return parse_recipients(self.recipients)

    def kind_labels(self) -> list[str]:
        labels = dict(ConnectorKind.choices)
        return [str(labels.get(kind, kind)) for kind in self.connector_kinds]


class Alert(models.Model):
    class Kind(models.TextChoices):
        BACKUP_STALE = "backup_stale", "Backup stale"
        BACKUP_FAILED = "backup_failed", "Backup failed"
        SUCCESS_RATE = "success_rate", "Backup success rate low"
        SYNC_STALE = "sync_stale", "Sync stale"
        SYNC_DEGRADED = "sync_degraded", "Sync degraded"
        SEAT_EXCEEDED = "seat_exceeded", "Seat limit exceeded"
        ACCOUNT_DELETION = "account_deletion", "Account scheduled for deletion"
        TOKEN_EXPIRY = "token_expiry", "API token expires soon"

    class State(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    key = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    rule = models.ForeignKey(
        AlertRule, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    connector = models.ForeignKey(
        BackupConnector, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    # The vendor account a seat or deletion alert is about.
    account_link = models.ForeignKey(
        AccountLink, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    summary = models.CharField(max_length=255, blank=True, default="")
    reason = models.CharField(max_length=64, blank=True, default="")
    # A countdown alert's step (token expiry, seat grace: "30", "7", "1" or "0" days
    # left); moving to a nearer step tells the recipients again.
    stage = models.CharField(max_length=16, blank=True, default="")
    # Why it is open, in words: the vendor's reason, the failed audit event, the age of
    # the last complete backup, or the accounts a degraded sync cannot read.
    detail = models.TextField(blank=True, default="")
    opened_at = models.DateTimeField()
    # When it opened or its words last changed ("last changed"; an open alert still holds
    # at every evaluation, so that is not written again and again).
    last_seen_at = models.DateTimeField("last changed")
    last_notified_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True, default="")
    acknowledge_note = models.TextField(blank=True, default="")
    snoozed_until = models.DateTimeField(null=True, blank=True)
    snoozed_at = models.DateTimeField(null=True, blank=True)
    snoozed_by = models.CharField(max_length=150, blank=True, default="")
    snooze_reason = models.TextField(blank=True, default="")
    previous = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="next"
    )

    class Meta:
        db_table = "alerts"
        ordering = ["-opened_at", "-id"]
        constraints = [
            # One unresolved alert per condition; the opening INSERT conflicts on it.
            models.UniqueConstraint(
                fields=["key"], condition=Q(resolved_at__isnull=True), name="alert_one_open_per_key"
            ),
        ]
        indexes = [
            # The dashboard and alert lists: unresolved alerts.
            models.Index(fields=["state"], name="alert_state_idx"),
        ]

    def __str__(self) -> str:
        return self.summary or f"Alert {self.pk}"

    def is_snoozed(self, now: datetime) -> bool:
        return self.snoozed_until is not None and self.snoozed_until > now


class AlertEvent(models.Model):
    """One entry of an alert's history. Opened, resolved and reminder entries are
    e-mailed; `notified_at` is their claim."""

    class Kind(models.TextChoices):
        OPENED = "opened", "Opened"
        REMINDER = "reminder", "Still open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        SNOOZED = "snoozed", "Snoozed"
        UNSNOOZED = "unsnoozed", "Unsnoozed"
        RESOLVED = "resolved", "Resolved"

    NOTIFIED_KINDS = (Kind.OPENED, Kind.REMINDER, Kind.RESOLVED)

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    at = models.DateTimeField()
    by = models.CharField(max_length=150, blank=True, default="")
    note = models.TextField(blank=True, default="")
    notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "alert_events"
        ordering = ["at", "id"]
        indexes = [
            # The notifier claims events not yet notified.
            models.Index(
                fields=["at"], condition=Q(notified_at__isnull=True), name="alert_event_pending_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} at {self.at:%Y-%m-%d %H:%M}"


class AlertNotification(models.Model):
    """One e-mail to one recipient, written before sending (the delivery log)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to send"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        # The SMTP server refused it for good (5xx), or it was retried too long.
        FAILED = "failed", "Failed"

    recipient = models.CharField(max_length=254)
    subject = models.CharField(max_length=255)
    body_text = models.TextField()
    body_html = models.TextField()
    events = models.ManyToManyField(AlertEvent, related_name="notifications")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "alert_notifications"
        ordering = ["-created_at", "-id"]
        indexes = [
            # The sender picks due, unsent messages.
            models.Index(fields=["status", "next_attempt_at"], name="alert_notification_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.subject} → {self.recipient}"

    @staticmethod
    def backoff(attempts: int) -> timedelta:
        """1, 2, 4 … minutes between attempts, at most 30."""
        return timedelta(minutes=min(30, 2 ** max(0, attempts - 1)))


# A message claimed for sending longer ago than this was lost with its worker; retry it.
SENDING_TIMEOUT = timedelta(minutes=10)
