"""The integrations framework's data: connections and their sync runs.

A `Connection` is one configured account of a provider (e.g. one MSP parent account in
one region). Non-secret settings live in `config` (JSON, provider-defined); secrets live
only in `secrets_ciphertext`, encrypted with MultiFernet (integrations/crypto.py) and
decrypted just before a provider calls its vendor.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.views.decorators.debug import sensitive_variables

from .crypto import decrypt_secrets, encrypt_secrets


class Connection(models.Model):
    provider = models.CharField(max_length=32, db_index=True)
    name = models.CharField(max_length=120)
    enabled = models.BooleanField("Enabled", default=False)
    config = models.JSONField(default=dict, blank=True)
    secrets_ciphertext = models.TextField(blank=True, default="", editable=False)
    # Provider-owned sync state (e.g. an audit-log cursor).
    sync_state = models.JSONField(default=dict, blank=True, editable=False)
    # When the next scheduled sync is due; NULL means "due now".
    next_sync_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_sync_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, default="", editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Runs in a row that ended partial: a connection that never fully succeeds is Degraded.
    partial_runs_in_row = models.PositiveIntegerField(default=0, editable=False)
    # What the vendor says about the credential the connection signs in with (read by
    # every sync): its kind, expiry and last use; `credential_note` when it could not say.
    credential_kind = models.CharField(max_length=32, blank=True, default="", editable=False)
    credential_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    credential_last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    credential_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    credential_note = models.CharField(max_length=255, blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "integration_connections"
        ordering = ["provider", "name", "id"]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        # Never include config or secrets: reprs end up in logs and tracebacks.
        return f"<Connection id={self.pk} provider={self.provider!r} name={self.name!r}>"

    @property
    def secrets(self) -> dict[str, str]:
        return decrypt_secrets(self.secrets_ciphertext)

    @sensitive_variables("values")
    def set_secrets(self, values: dict[str, str]) -> None:
        self.secrets_ciphertext = encrypt_secrets(values)

    def is_failing(self) -> bool:
        """The last attempt failed after (or without) the last success."""
        if self.last_error_at is None:
            return False
        return self.last_success_at is None or self.last_error_at > self.last_success_at

    def is_degraded(self) -> bool:
        """Its last runs (VECTIS_DEGRADED_AFTER_PARTIAL_RUNS of them) all ended partial:
        part of the data has not been read for a while, though each run "succeeded"."""
        return self.partial_runs_in_row >= settings.VECTIS_DEGRADED_AFTER_PARTIAL_RUNS

    @property
    def state(self) -> str:
        """What the Integrations page and the admin home say about it."""
        if not self.enabled:
            return "Disabled"
        if self.is_failing():
            return "Failing"
        if self.is_degraded():
            return "Degraded"
        return "Enabled"


class SyncRun(models.Model):
    """One sync of one connection, with its outcome and counts.

    At most one `running` row per connection (a partial unique index): inserting it is
    the claim that keeps two syncs of the same connection from running at once. A run
    whose heartbeat stops (worker killed) is marked `abandoned` by the next claim.
    """

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        PARTIAL = "partial", "Partial"
        FAILED = "failed", "Failed"
        ABANDONED = "abandoned", "Abandoned"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Sync now"
        COMMAND = "command", "Command line"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="sync_runs")
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.SCHEDULE)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    http_requests = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    failed_accounts = models.JSONField(default=list, blank=True)
    # What the vendor does not offer these credentials (a read it refuses): said, but
    # not a failure of the run.
    notes = models.TextField(blank=True, default="")

    class Meta:
        db_table = "integration_sync_runs"
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection"],
                condition=Q(outcome="running"),
                name="sync_run_one_running_per_connection",
            ),
        ]
        indexes = [
            # Recent runs of a connection (connection page, last-success lookups).
            models.Index(fields=["connection", "-started_at"], name="sync_run_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"Sync of {self.connection.name} at {self.started_at:%Y-%m-%d %H:%M} UTC"

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()
