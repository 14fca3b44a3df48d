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
from integrations.crypto import decrypt_secrets, encrypt_secrets
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


class Severity(models.IntegerChoices):
    """How bad an alert is; a channel takes alerts from its minimum up."""

    WARNING = 20, "Warning"
    CRITICAL = 30, "Critical"


class NotificationChannel(models.Model):
    """Where alert messages go besides a rule's plain e-mail recipients: e-mail
    addresses, a Microsoft Teams workflow, a Slack webhook, a generic webhook (a signed,
    versioned JSON body a PSA or automation tool can consume) or any other service
    apprise knows by URL. URLs are secrets (whoever has one can post to the team): they
    are encrypted at rest like the backup vendors' credentials and never shown again."""

    class Kind(models.TextChoices):
        EMAIL = "email", "E-mail"
        TEAMS = "teams", "Microsoft Teams (Workflows webhook)"
        SLACK = "slack", "Slack (incoming webhook)"
        WEBHOOK = "webhook", "Generic webhook (signed JSON)"
        APPRISE = "apprise", "Other service (apprise URL)"

    name = models.CharField(max_length=120, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # E-mail addresses in clear (an address is not a secret); for every other kind the
    # URL, encrypted (integrations/crypto.py), with the webhook's signing secret.
    addresses = models.TextField(blank=True, default="")
    target_ciphertext = models.TextField(blank=True, default="", editable=False)
    min_severity = models.PositiveSmallIntegerField(
        "minimum severity",
        choices=Severity.choices,
        default=Severity.WARNING,
        help_text="Alerts less severe than this do not go to this channel.",
    )
    enabled = models.BooleanField(default=True)
    # A channel that fails this many deliveries in a row disables itself (and says so).
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.TextField(blank=True, default="", editable=False)
    # A daily digest instead of (or besides) the stream: what is open, what changed.
    digest_enabled = models.BooleanField("send a morning digest", default=False)
    digest_time = models.TimeField("digest at (local time)", null=True, blank=True)
    digest_timezone = models.CharField(
        "time zone",
        max_length=64,
        blank=True,
        default="",
        help_text="For the digest time, e.g. Europe/Copenhagen (empty: the server's TIME_ZONE).",
    )
    digest_only = models.BooleanField(
        "only the digest",
        default=False,
        help_text="No message per alert: this channel hears only its daily digest (and "
        "escalations sent to it).",
    )
    last_digest_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "alert_channels"
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def address_list(self) -> list[str]:
        return parse_recipients(self.addresses)

    def secrets(self) -> dict[str, str]:
        return decrypt_secrets(self.target_ciphertext)

    def set_secrets(self, values: dict[str, str]) -> None:
        self.target_ciphertext = encrypt_secrets(values)

    @property
    def has_url(self) -> bool:
        return bool(self.target_ciphertext)


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
        blank=True,
        validators=[validate_recipients],
        help_text="E-mail addresses, separated by commas or new lines (and/or channels below).",
    )
    channels = models.ManyToManyField(
        NotificationChannel,
        blank=True,
        related_name="rules",
        help_text="Teams, Slack, webhooks or e-mail channels this rule also sends to.",
    )
    escalation_channel = models.ForeignKey(
        NotificationChannel,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="escalating_rules",
        help_text="An alert still open and unacknowledged after the delay below is sent here once.",
    )
    escalation_minutes = models.PositiveIntegerField(
        "escalate after (minutes)", null=True, blank=True
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


class RulePass(models.Model):
    """A rule's last evaluation pass: when (the pass's `now`), when it last evaluated every
    connector, and what the rule was then. A pass after it evaluates only the connectors
    whose data changed since (alerts/passes.py) unless the rule changed or a full pass is
    due."""

    rule = models.OneToOneField(
        AlertRule, primary_key=True, on_delete=models.CASCADE, related_name="last_pass"
    )
    evaluated_at = models.DateTimeField()
    full_at = models.DateTimeField()
    # What the rule decided on (fields and scope), hashed: a rule edited since its last
    # pass is evaluated in full.
    fingerprint = models.CharField(max_length=64)

    class Meta:
        db_table = "alert_rule_passes"

    def __str__(self) -> str:
        return f"{self.rule_id} at {self.evaluated_at:%Y-%m-%d %H:%M}"


class ConnectorChange(models.Model):
    """A connector whose data the alert rules read was written since the last pass
    (change capture). PostgreSQL triggers (migrations alerts 0012-0014) add a row in the
    writer's own transaction for each connector a statement touches: its job days,
    status row, own fields, account, customer name, failure events written or deleted,
    or its alerts opened, resolved or deleted. Each pass takes them all (`DELETE … RETURNING` in its
    transaction), so a write not yet committed is neither seen nor lost: it is the next
    pass's. Plain inserts, no unique key: concurrent writers never wait on each other."""

    id = models.BigAutoField(primary_key=True)
    connector_id = models.BigIntegerField()

    class Meta:
        db_table = "alert_connector_changes"

    def __str__(self) -> str:
        return f"connector {self.connector_id}"


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
        ACCOUNT_FAILING = "account_failing", "Every connector of an account failing"

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
    # Sent once to the rule's escalation channel (open and unacknowledged too long).
    escalated_at = models.DateTimeField(null=True, blank=True)
    # The alert that explains this one (a connection that cannot sync, an account whose
    # connectors all fail for one reason): while it is open this one is not notified.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
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
            # Newest first (the alert list, the API): a page is read from the index,
            # not sorted out of every alert.
            models.Index(fields=["-opened_at", "-id"], name="alert_newest_idx"),
            # An alert that opens links to the latest resolved alert of its condition
            # (`previous`): found by key among the resolved ones (without it, a scan of
            # every alert kept in each pass that opens one: 12 ms at 95,000 alerts).
            models.Index(
                fields=["key"],
                condition=Q(resolved_at__isnull=False),
                name="alert_resolved_key_idx",
            ),
            # Each evaluation pass reads the open alerts of each kind (sync, seats,
            # deletion, token...): without it, each read scanned every alert kept (about
            # 15 ms each at 80,000 connectors, even for a kind with no open alert).
            models.Index(
                fields=["kind"], condition=Q(resolved_at__isnull=True), name="alert_open_kind_idx"
            ),
            # The connectors with an open alert (the dashboard's tiles and list, the
            # customer pages): read from this small index alone, not by scanning every
            # alert kept with its words.
            models.Index(
                fields=["connector"],
                condition=Q(resolved_at__isnull=True),
                name="alert_open_connector_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.summary or f"Alert {self.pk}"

    def is_snoozed(self, now: datetime) -> bool:
        return self.snoozed_until is not None and self.snoozed_until > now

    @property
    def severity(self) -> int:
        """Critical: a backup failed, syncing stopped, a token or a seat grace period
        about to run out (a day or less); everything else a warning."""
        if self.kind in (
            self.Kind.BACKUP_FAILED,
            self.Kind.SYNC_STALE,
            self.Kind.ACCOUNT_FAILING,
        ):
            return Severity.CRITICAL
        if self.kind in (self.Kind.TOKEN_EXPIRY, self.Kind.SEAT_EXCEEDED) and self.stage in (
            "1",
            "0",
        ):
            return Severity.CRITICAL
        return Severity.WARNING


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
        ESCALATED = "escalated", "Escalated"

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
        return f"{self.get_kind_display()} (#{self.pk})"


class AlertNotification(models.Model):
    """One message to one recipient or channel, written before sending (the delivery
    log): claimed before each attempt, retried with backoff while the failure is
    temporary, failed at once when it is permanent."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to send"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        # The SMTP server refused it for good (5xx), or it was retried too long.
        FAILED = "failed", "Failed"

    class Purpose(models.TextChoices):
        ALERTS = "alerts", "Alerts"
        TEST = "test", "Test message"
        DIGEST = "digest", "Daily digest"
        MAINTENANCE = "maintenance", "After maintenance"
        ESCALATION = "escalation", "Escalation"
        NOTICE = "notice", "Notice to the admins"
        REPORT = "report", "Monthly report"

    recipient = models.CharField(max_length=254)
    # None: an e-mail to `recipient` (a rule's plain recipients); else this channel.
    # PROTECT: the delivery log is history; a channel that has delivered is disabled,
    # not deleted.
    channel = models.ForeignKey(
        NotificationChannel,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="deliveries",
    )
    purpose = models.CharField(max_length=16, choices=Purpose.choices, default=Purpose.ALERTS)
    subject = models.CharField(max_length=255)
    body_text = models.TextField()
    body_html = models.TextField()
    # The webhook's JSON body (and what chat channels are built from), as sent.
    payload = models.JSONField(default=dict, blank=True)
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


class NotificationAttachment(models.Model):
    """A file sent with one message (a monthly report's PDF), kept with its delivery log
    entry so a retry sends the very same file and the log shows what was sent. Kept in
    the database, not on a disk: any worker on any machine may send it."""

    notification = models.ForeignKey(
        AlertNotification, on_delete=models.CASCADE, related_name="attachments"
    )
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    content = models.BinaryField()
    size = models.PositiveIntegerField()

    class Meta:
        db_table = "alert_notification_attachments"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.filename} ({self.size:,} bytes)"


# A message claimed for sending longer ago than this was lost with its worker; retry it.
SENDING_TIMEOUT = timedelta(minutes=10)


class MaintenanceWindow(models.Model):
    """Planned work on a customer, a connector or a whole connection: while a window is
    on, evaluation goes on (alerts open and resolve) but their messages are held; when it
    ends, one summary per recipient says what is still open and what opened and resolved
    meanwhile. One-off (start and end) or weekly (days, start time, duration, in a time
    zone, daylight-saving changes included)."""

    class Repeat(models.TextChoices):
        ONCE = "once", "Once"
        WEEKLY = "weekly", "Every week"

    reason = models.CharField(max_length=200)
    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.CASCADE, related_name="maintenance"
    )
    connector = models.ForeignKey(
        BackupConnector,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="maintenance",
    )
    connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.CASCADE, related_name="maintenance"
    )
    repeat = models.CharField(max_length=8, choices=Repeat.choices, default=Repeat.ONCE)
    starts_at = models.DateTimeField("starts", null=True, blank=True)
    ends_at = models.DateTimeField("ends", null=True, blank=True)
    # Weekly: ISO weekdays (1 Monday … 7 Sunday), local start time and duration.
    weekdays = models.JSONField(default=list, blank=True)
    start_time = models.TimeField("starts at (local time)", null=True, blank=True)
    duration_minutes = models.PositiveIntegerField(null=True, blank=True)
    timezone = models.CharField(
        max_length=64, blank=True, default="", help_text="e.g. Europe/Copenhagen (empty: UTC)"
    )
    # The end of the latest occurrence whose summary has gone out.
    summarized_until = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "alert_maintenance_windows"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.reason
