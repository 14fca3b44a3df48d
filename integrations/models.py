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
        # A Technician may start a sync without being able to see or change credentials.
        permissions = [("sync_connection", "Can start a sync (Sync now)")]

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
    # The parts the run was split into (SyncChunk) and how many have ended: the run
    # finishes when the last one does. 0 parts: a run that ended while planning.
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_finished = models.PositiveIntegerField(default=0)

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
        # (no time here: titles and breadcrumbs show it; pages show times one way)
        return f"Sync of {self.connection.name} (#{self.pk})"

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class SyncChunk(models.Model):
    """One part of a sync run, done by one Celery task: a slice of the connection's
    accounts, or the audit log. Parts of one run may run on several workers at once.

    The database coordinates them, not the broker: a task claims its part with a
    conditional UPDATE (pending → running), writes its heartbeat while it works, and
    records how it ended; the task that ends the last part finishes the run. A part whose
    worker died (stale heartbeat) goes back to pending and is queued again, at most
    `VECTIS_SYNC_CHUNK_ATTEMPTS` times; then it fails, and the run ends partial naming
    its accounts. A message lost by the broker is queued again the same way.
    """

    class Kind(models.TextChoices):
        PLAN = "plan", "Account list"
        ACCOUNTS = "accounts", "Accounts"
        AUDIT = "audit", "Audit log"

    class State(models.TextChoices):
        PENDING = "pending", "Waiting for a worker"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="chunks")
    number = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    # What the provider needs to read this part (its accounts), as the planner gave it,
    # and the accounts' external ids (to name them when the part fails).
    payload = models.JSONField(default=list, blank=True)
    account_ids = models.JSONField(default=list, blank=True)
    accounts = models.PositiveIntegerField(default=0)
    # Who did it (host:pid of the worker), for an operator following a run.
    worker = models.CharField(max_length=255, blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=0)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    # Accounts of this part that could not be read: external id -> sentence naming it.
    failed_accounts = models.JSONField(default=dict, blank=True)
    problems = models.JSONField(default=list, blank=True)
    notes = models.JSONField(default=list, blank=True)
    http_requests = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    # It stopped at a time limit and the next run continues where it stopped.
    stopped_early = models.BooleanField(default=False)
    # Everything it read is stored (False: it stopped before its accounts were written).
    stored = models.BooleanField(default=False)

    class Meta:
        db_table = "integration_sync_chunks"
        ordering = ["run", "number"]
        constraints = [
            models.UniqueConstraint(fields=["run", "number"], name="sync_chunk_number_per_run"),
        ]
        indexes = [
            # The watchdog: parts waiting or running, by state.
            models.Index(
                fields=["state", "heartbeat_at"],
                condition=Q(state__in=["pending", "running"]),
                name="sync_chunk_unfinished_idx",
            ),
        ]

    def __str__(self) -> str:
        if self.kind == self.Kind.PLAN:
            return f"Part {self.number + 1}: the account list ({self.accounts} account(s))"
        if self.kind == self.Kind.AUDIT:
            return f"Part {self.number + 1}: the audit log"
        return f"Part {self.number + 1}: {self.accounts} account(s)"
