"""What the monthly backup report needs to be sent on its own: the MSP's white-label
and schedule (`ReportSettings`, one row), who receives each customer's report
(`ReportSubscription`) and which months went out (`MonthlyReport`, so a report is
generated once however often the schedule runs); and the keys to the public API
(`ApiKey`)."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from rest_framework_api_key.models import AbstractAPIKey

from alerts.models import parse_recipients, validate_recipients
from customers.models import Customer


class ReportSettings(models.Model):
    """The monthly report's white-label and schedule. One row (pk 1), edited in the admin
    under "Report settings"; `load()` gives the defaults before anyone saved it."""

    msp_name = models.CharField(
        "MSP name",
        max_length=120,
        blank=True,
        default="",
        help_text="On every report's first page. Empty: the VECTIS_MSP_NAME setting.",
    )
    # The logo itself, not a path: any worker on any machine renders reports.
    logo = models.BinaryField(blank=True, default=b"", editable=False)
    logo_type = models.CharField(max_length=32, blank=True, default="", editable=False)
    schedule_enabled = models.BooleanField(
        "send the reports every month",
        default=True,
        help_text="On the 1st of each month, last month's report goes by e-mail to every "
        "customer's report recipients.",
    )
    send_hour = models.PositiveSmallIntegerField(
        "send at (hour)",
        default=7,
        validators=[MaxValueValidator(23)],
        help_text="The hour of the 1st, 0 to 23, in the MSP's time zone (TIME_ZONE).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "report_settings"
        verbose_name = "report settings"
        verbose_name_plural = "report settings"

    def __str__(self) -> str:
        return "Monthly report settings"

    @classmethod
    def load(cls) -> ReportSettings:
        return cls.objects.filter(pk=1).first() or cls(pk=1)

    @property
    def display_name(self) -> str:
        return self.msp_name or str(settings.VECTIS_MSP_NAME)


class ReportSubscription(models.Model):
    """Who receives a customer's monthly report."""

    customer = models.OneToOneField(
        Customer, on_delete=models.CASCADE, related_name="report_subscription"
    )
    recipients = models.TextField(
        "monthly report recipients",
        blank=True,
        default="",
        validators=[validate_recipients],
        help_text="E-mail addresses, one per line or separated by commas. Each gets last "
        "month's backup report as a PDF on the 1st.",
    )

    class Meta:
        db_table = "report_subscriptions"
        verbose_name = "monthly report by e-mail"
        verbose_name_plural = "monthly report by e-mail"

    def __str__(self) -> str:
        return f"Monthly report of {self.customer}"

    @property
    def recipient_list(self) -> list[str]:
        return parse_recipients(self.recipients)


class MonthlyReport(models.Model):
    """A customer's report for one month, generated and written to the delivery log (one
    message per recipient, each with the PDF). Unique: the schedule, retried or run twice,
    never sends a month twice."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="monthly_reports")
    month = models.DateField(help_text="The month's first day.")
    recipients = models.TextField()
    filename = models.CharField(max_length=255)
    size = models.PositiveIntegerField()
    created_at = models.DateTimeField()

    class Meta:
        db_table = "monthly_reports"
        ordering = ["-month", "customer_id"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "month"], name="monthly_report_once")
        ]

    def __str__(self) -> str:
        return f"{self.customer} {self.month:%Y-%m}"


class ApiKey(AbstractAPIKey):
    """A key to the public API (/api/v1/), made by djangorestframework-api-key: shown
    once when created, stored as a SHA-512 hash (high-entropy keys need no slow hash),
    looked up by its 8-character prefix. `scope` says what it may do; a revoked or
    expired key is refused."""

    class Scope(models.TextChoices):
        READ = "read", "Read-only: lists and details"
        TECHNICIAN = "technician", "Technician: also acknowledge, snooze and sync"

    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.READ)
    created_by = models.CharField(max_length=150, blank=True, default="", editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta(AbstractAPIKey.Meta):
        db_table = "api_keys"
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    @property
    def actor(self) -> str:
        """How the key's actions are recorded (acknowledged by, snoozed by, …)."""
        return f"API key “{self.name}”"


class FleetWrite(models.Model):
    """A transaction that wrote what the fleet-wide tiles count: connectors, their status
    rows, account links or alerts. Statement triggers (migration 0003, PostgreSQL) add one
    row per writing transaction, in that transaction, so the row becomes visible exactly
    when its writes do. `vectis.fleet_tiles` keeps the tiles between page views until a
    row appears that the snapshot they were counted in did not see."""

    id = models.BigAutoField(primary_key=True)
    # The writer's transaction id (pg_current_xact_id(), 64 bits: never wraps).
    xid = models.BigIntegerField()
    # When the mark was written (the database's clock at the writer's first write), and
    # the oldest transaction still running then (its snapshot's xmin): every snapshot
    # taken later starts at or after it, so a later pruning may drop the marks below it.
    written_at = models.DateTimeField()
    horizon = models.BigIntegerField(default=0)

    class Meta:
        db_table = "fleet_writes"
        indexes = [models.Index(fields=["xid"], name="fleet_write_xid_idx")]

    def __str__(self) -> str:
        return f"transaction {self.xid}"
