"""Vendor-neutral backup inventory: connectors, their latest backup status, audit events.

These tables are a contract (reporting tools query them): `backup_connectors`,
`backup_connector_status`, `backup_audit_events`, and since job data arrived
`backup_job_days` (daily backup-job outcomes per connector) and `backup_account_seats`
(seat usage per vendor account). backups/ingest.py writes them from the
snapshots a provider returns (backups/snapshot.py); nothing here knows about a vendor.
Connectors a vendor stops reporting are marked `removed_at`, never deleted, so history and
alerts keep their subject.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from customers.models import Customer
from integrations.models import Connection


class ConnectorKind(models.TextChoices):
    M365 = "m365", "Microsoft 365"
    ENTRA_ID = "entra_id", "Microsoft Entra ID"
    GOOGLE_WORKSPACE = "google_workspace", "Google Workspace"
    SALESFORCE = "salesforce", "Salesforce"
    DYNAMICS365 = "dynamics365", "Dynamics 365"
    POWER_BI = "power_bi", "Power BI"
    ZENDESK = "zendesk", "Zendesk"
    AZURE_DEVOPS = "azure_devops", "Azure DevOps"
    OKTA = "okta", "Okta"
    JIRA = "jira", "Jira"
    JIRA_SERVICE_MANAGEMENT = "jira_service_management", "Jira Service Management"
    CONFLUENCE = "confluence", "Confluence"
    BAMBOOHR = "bamboohr", "BambooHR"
    DOCUSIGN = "docusign", "Docusign"
    MIRO = "miro", "Miro"
    GITLAB = "gitlab", "GitLab"
    GITHUB = "github", "GitHub"
    MONDAY = "monday", "Monday"
    AUTODESK_FORMA = "autodesk_forma", "Autodesk Forma"
    SHAREPOINT = "sharepoint", "SharePoint"
    ONEDRIVE = "onedrive", "OneDrive"
    TEAMS = "teams", "Teams"
    EXCHANGE = "exchange", "Exchange"
    OTHER = "other", "Other"


class BackupStatus(models.TextChoices):
    """Ordered worst first where it matters: failed > warning > unknown > onboarding > ok."""

    OK = "ok", "OK"
    WARNING = "warning", "Warning"
    FAILED = "failed", "Failed"
    ONBOARDING = "onboarding", "Onboarding"
    UNKNOWN = "unknown", "Unknown"


# Worst first: the order of the dashboard's attention list (a connector without a status
# row counts as unknown).
STATUS_RANK = {
    BackupStatus.FAILED: 0,
    BackupStatus.WARNING: 1,
    BackupStatus.UNKNOWN: 2,
    BackupStatus.ONBOARDING: 3,
    BackupStatus.OK: 4,
}
OTHER_RANK = 9


def status_rank(field: str = "status") -> models.Case:
    """A status row's rank (STATUS_RANK) as SQL. Index connector_status_rank_idx is built
    on this very expression, so a list ordered by `status_rank("backup_status__status")`
    reads its first page from the index instead of sorting every connector."""
    return models.Case(
        *[
            models.When(**{field: status}, then=models.Value(rank))
            for status, rank in STATUS_RANK.items()
        ],
        default=models.Value(OTHER_RANK),
        output_field=models.IntegerField(),
    )


class AuditCategory(models.TextChoices):
    USER = "user", "User"
    ACCOUNT = "account", "Account"
    CONNECTOR = "connector", "Connector"
    CONNECTION = "connection", "Connection"
    RECOVERY = "recovery", "Recovery"
    REPORTING = "reporting", "Reporting"
    SECURITY = "security", "Security"
    COMPLIANCE = "compliance", "Compliance"
    OTHER = "other", "Other"


class AccountLink(models.Model):
    """One vendor account (a customer's account at the backup vendor) and the PSA customer
    it belongs to (backups/accounts.py holds the policy).

    Syncs create and update links but never change a `manual` one; an `excluded` account's
    data is not written to customers, shown or alerted on until it is included again. The
    table keeps the name it had when the model lived in integrations/.
    """

    class Method(models.TextChoices):
        EXACT = "exact", "Exact name"
        NORMALISED = "normalised", "Normalised name"
        CREATED = "created", "Created by sync"
        MANUAL = "manual", "Manual"

    class State(models.TextChoices):
        LINKED = "linked", "Linked"
        UNLINKED = "unlinked", "Unlinked"
        AMBIGUOUS = "ambiguous", "Ambiguous"
        EXCLUDED = "excluded", "Excluded"

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="account_links"
    )
    external_id = models.CharField(max_length=100)
    company_name = models.CharField(max_length=255, blank=True, default="")
    contact_name = models.CharField(max_length=255, blank=True, default="")
    email = models.CharField(max_length=255, blank=True, default="")
    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="account_links"
    )
    method = models.CharField(max_length=16, choices=Method.choices, blank=True, default="")
    state = models.CharField(max_length=16, choices=State.choices, default=State.UNLINKED)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    removed_at = models.DateTimeField(null=True, blank=True)
    # The vendor has scheduled the account (and its backups) for deletion at this time.
    deletion_scheduled_at = models.DateTimeField(null=True, blank=True)
    # When its seat usage was last read (it is read daily, its violations every sync).
    seats_checked_at = models.DateTimeField(null=True, blank=True)
    # When its connector list was last read (hourly; in between only on a change its
    # connectors' health shows: KEEPIT_CONNECTORS_REFRESH_MINUTES).
    connectors_listed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "integration_account_links"
        constraints = [
            # The natural key the sync upserts on.
            models.UniqueConstraint(
                fields=["connection", "external_id"], name="account_link_unique_external_id"
            ),
        ]
        indexes = [
            # The account-link review lists unlinked and ambiguous accounts.
            models.Index(fields=["state"], name="account_link_state_idx"),
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return self.company_name or self.contact_name or self.email or self.external_id


class BackupConnector(models.Model):
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="connectors")
    account_link = models.ForeignKey(
        AccountLink, null=True, blank=True, on_delete=models.SET_NULL, related_name="connectors"
    )
    # NULL while the vendor account is not linked to a customer (see the account-link review).
    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="connectors"
    )
    external_id = models.CharField(max_length=100)
    name = models.CharField(max_length=255)
    kind = models.CharField(
        max_length=32, choices=ConnectorKind.choices, default=ConnectorKind.OTHER
    )
    vendor_type = models.CharField(max_length=64, blank=True, default="")
    accessible = models.BooleanField(default=True)
    deletion_scheduled_at = models.DateTimeField(null=True, blank=True)
    vendor_created_at = models.DateTimeField(null=True, blank=True)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    removed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "backup_connectors"
        ordering = ["name", "id"]
        constraints = [
            # The natural key the sync upserts on.
            models.UniqueConstraint(
                fields=["connection", "external_id"], name="backup_connector_unique_external_id"
            ),
        ]
        indexes = [
            # Customer pages list a customer's live connectors.
            models.Index(
                fields=["customer"], condition=Q(removed_at__isnull=True), name="connector_live_idx"
            ),
            # The stale rule's incremental passes: the connectors whose onboarding grace
            # ran out since the last pass.
            models.Index(fields=["first_seen_at"], name="connector_first_seen_idx"),
        ]

    def __str__(self) -> str:
        return self.name


class BackupConnectorStatus(models.Model):
    """The latest backup status of one connector (one row per connector)."""

    connector = models.OneToOneField(
        BackupConnector, primary_key=True, on_delete=models.CASCADE, related_name="backup_status"
    )
    status = models.CharField(
        max_length=16, choices=BackupStatus.choices, default=BackupStatus.UNKNOWN
    )
    health = models.CharField(max_length=32, blank=True, default="")
    reason = models.CharField(max_length=64, blank=True, default="")
    # The vendor's reason in words, and whether it means a failure someone must fix
    # (lost authentication, revoked token, quota, configuration) — set by the provider.
    reason_text = models.CharField(max_length=255, blank=True, default="")
    reason_is_failure = models.BooleanField(default=False)
    last_backup_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_snapshot_size = models.BigIntegerField(null=True, blank=True)
    # The vendor's error code (e.g. Keepit's device status) and what to do about it.
    error_code = models.CharField(max_length=64, blank=True, default="")
    fix_text = models.CharField(max_length=255, blank=True, default="")
    help_url = models.CharField(max_length=300, blank=True, default="")
    help_label = models.CharField(max_length=64, blank=True, default="")
    # When the vendor was last asked for the error code (it is asked again when the
    # health changes, and at most every few hours while a connector stays unhealthy).
    error_checked_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField()
    # When `status` last changed (not touched when only checked_at moves).
    status_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "backup_connector_status"
        verbose_name = "backup status"
        verbose_name_plural = "backup statuses"
        indexes = [
            # The dashboard counts and lists connectors by status.
            models.Index(fields=["status"], name="connector_status_idx"),
            # The attention list's order, worst first and oldest success first: its first
            # page is the index's first rows (sorting 80,000 connectors took ~200 ms).
            models.Index(
                status_rank(),
                models.F("last_success_at").asc(nulls_first=True),
                name="connector_status_rank_idx",
            ),
            # The stale rule's incremental passes: the last complete backups that grew
            # past the threshold since the last pass (a few minutes of them).
            models.Index(fields=["last_success_at"], name="connector_status_success_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.connector_id}: {self.status}"


class BackupAuditEvent(models.Model):
    """One vendor audit-log record. Vendors give no event id, so `dedup_key` (a hash of
    the record's fields) is unique per connection and overlapping windows insert once."""

    # No single-column indexes on connection and customer: the composite indexes below
    # lead with them (every insert would otherwise update two more indexes for nothing).
    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="audit_events", db_index=False
    )
    customer = models.ForeignKey(
        Customer,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="audit_events",
        db_index=False,
    )
    connector = models.ForeignKey(
        BackupConnector,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="audit_events",
    )
    account_external_id = models.CharField(max_length=100, blank=True, default="")
    connector_external_id = models.CharField(max_length=100, blank=True, default="")
    occurred_at = models.DateTimeField()
    category = models.CharField(
        max_length=16, choices=AuditCategory.choices, default=AuditCategory.OTHER
    )
    area = models.CharField(max_length=120, blank=True, default="")
    message = models.TextField(blank=True, default="")
    actor = models.CharField(max_length=255, blank=True, default="")
    succeeded = models.BooleanField(null=True)
    allowed = models.BooleanField(null=True)
    client_ip = models.CharField(max_length=64, blank=True, default="")
    operation = models.CharField(max_length=120, blank=True, default="")
    method = models.CharField(max_length=16, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    # True when the event records one of Vectis's own API reads; timelines hide these.
    is_own_read = models.BooleanField(default=False)
    dedup_key = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "backup_audit_events"
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "dedup_key"], name="audit_event_unique_dedup_key"
            ),
        ]
        indexes = [
            # The customer timeline: newest first per customer.
            models.Index(fields=["customer", "-occurred_at"], name="audit_customer_time_idx"),
            # Backup-failed alerts: failures inside a lookback window.
            models.Index(
                fields=["occurred_at"], condition=Q(succeeded=False), name="audit_failure_time_idx"
            ),
            # …of the few connectors an incremental evaluation pass looks at.
            models.Index(
                fields=["connector", "occurred_at"],
                condition=Q(succeeded=False),
                name="audit_connector_failure_idx",
            ),
            # The sync's relink pass: events stored before their connector was known.
            models.Index(
                fields=["connection", "connector_external_id"],
                condition=Q(connector__isnull=True) & ~Q(connector_external_id=""),
                name="audit_unlinked_connector_idx",
            ),
            # Moving an account's events to its customer (account links, relinking).
            models.Index(fields=["connection", "account_external_id"], name="audit_account_idx"),
        ]

    def __str__(self) -> str:
        # (no time here: titles and breadcrumbs show it; pages show times one way)
        return f"{self.area}: {self.message[:60]}"


class JobOutcome(models.TextChoices):
    """A day's backup jobs at a glance, worst first: any unsuccessful job makes the day
    failed, any incomplete one incomplete; a day with no finished job is "running" or
    "cancelled" when it had such jobs, else "no job"."""

    FAILED = "failed", "Failed"
    INCOMPLETE = "incomplete", "Some incomplete"
    SUCCESSFUL = "successful", "All successful"
    CANCELLED = "cancelled", "Cancelled only"
    RUNNING = "running", "Running"
    NO_JOB = "no_job", "No job"


class BackupJobDay(models.Model):
    """One connector's backup jobs of one UTC day, by outcome (one row per connector per
    day). Rows are written for every connector whose account's job counts were read, so
    a missing day means "not read", a row of zeros "no job". `closed`: read after the day
    ended, so its counts are final."""

    connector = models.ForeignKey(
        BackupConnector, on_delete=models.CASCADE, related_name="job_days"
    )
    day = models.DateField()
    successful = models.PositiveIntegerField(default=0)
    incomplete = models.PositiveIntegerField(default=0)
    unsuccessful = models.PositiveIntegerField(default=0)
    cancelled = models.PositiveIntegerField(default=0)
    in_progress = models.PositiveIntegerField(default=0)
    closed = models.BooleanField(default=False)
    last_job_end_at = models.DateTimeField(null=True, blank=True)
    # The latest unsuccessful or incomplete job: when it ended (or, when the vendor's job
    # history could not say, when a sync first saw it), which, and the vendor's error.
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_failure_outcome = models.CharField(max_length=16, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    # False: the time is when a sync saw the failure; the job history is asked again.
    last_failure_exact = models.BooleanField(default=False)
    checked_at = models.DateTimeField()

    class Meta:
        db_table = "backup_job_days"
        ordering = ["connector", "-day"]
        verbose_name = "backup job day"
        constraints = [
            # The natural key the sync upserts on; also the success-rate window's index.
            models.UniqueConstraint(fields=["connector", "day"], name="job_day_unique_connector"),
        ]
        indexes = [
            # Backup-failed alerts: a connector's latest failed job inside a lookback.
            models.Index(
                fields=["connector", "-last_failure_at"],
                condition=Q(last_failure_at__isnull=False),
                name="job_day_failure_time_idx",
            ),
            # Backup-failed alerts: every failed job inside a lookback (the day), fleet-wide.
            models.Index(
                fields=["last_failure_at"],
                condition=Q(last_failure_at__isnull=False),
                name="job_day_failure_recent_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.connector_id} {self.day}: {self.outcome}"

    @property
    def finished(self) -> int:
        return self.successful + self.incomplete + self.unsuccessful

    @property
    def outcome(self) -> str:
        if self.unsuccessful:
            return JobOutcome.FAILED
        if self.incomplete:
            return JobOutcome.INCOMPLETE
        if self.successful:
            return JobOutcome.SUCCESSFUL
        if self.in_progress:
            return JobOutcome.RUNNING
        if self.cancelled:
            return JobOutcome.CANCELLED
        return JobOutcome.NO_JOB


class AccountSeat(models.Model):
    """One licensed resource of a vendor account (e.g. Microsoft 365 seats): usage
    against the limit, and, when over it, when the vendor's grace period ends."""

    account_link = models.ForeignKey(AccountLink, on_delete=models.CASCADE, related_name="seats")
    resource = models.CharField(max_length=100)
    label = models.CharField(max_length=255)
    usage = models.PositiveIntegerField(default=0)
    limit = models.PositiveIntegerField(null=True, blank=True)
    violated = models.BooleanField(default=False)
    grace_expires_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField()

    class Meta:
        db_table = "backup_account_seats"
        ordering = ["account_link", "label", "resource"]
        constraints = [
            models.UniqueConstraint(
                fields=["account_link", "resource"], name="account_seat_unique_resource"
            ),
        ]
        indexes = [
            # The dashboard's "seat exceeded" filter and the seat alert.
            models.Index(
                fields=["account_link"], condition=Q(violated=True), name="seat_violated_idx"
            ),
        ]

    def __str__(self) -> str:
        limit = "unlimited" if self.limit is None else str(self.limit)
        return f"{self.label}: {self.usage} / {limit}"

    @property
    def overage(self) -> int:
        return max(0, self.usage - self.limit) if self.limit is not None else 0
