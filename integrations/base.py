"""The provider interface every integration (today: Keepit) implements.

A provider *describes* a vendor (name, description, its connection form and admin) and
runs the vendor-specific work for one `Connection`: test it, sync it, and turn its
errors into sentences an MSP admin can act on. Providers are found through the
registry (integrations/registry.py), never through `if provider == ...` branches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .models import Connection, SyncRun


@dataclass
class ConnectionTestResult:
    """What Test connection shows: one sentence, details, warnings."""

    ok: bool
    message: str
    details: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    credential_kind: str = ""
    checked_at: datetime | None = None
    #: The credentials were refused in the configured region: offer the explicit
    #: "Find my region" action (never run on its own: credentials go only where pointed).
    suggest_find_region: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "message": self.message,
            "details": self.details,
            "warnings": self.warnings,
            "credential_kind": self.credential_kind,
            "suggest_find_region": self.suggest_find_region,
        }


class Provider:
    """Base class of integration providers."""

    kind: ClassVar[str]
    name: ClassVar[str]
    description: ClassVar[str]
    #: Short text mark shown on the card when there is no logo.
    mark: ClassVar[str]
    #: Admin URL names of the provider's connection list, add form and connection page.
    admin_changelist: ClassVar[str]
    admin_add: ClassVar[str]
    admin_change: ClassVar[str]

    def test_connection(
        self, *, config: dict[str, Any], secrets: dict[str, str]
    ) -> ConnectionTestResult:
        """Run the same client code a sync uses against unsaved values."""
        raise NotImplementedError

    def sync(self, connection: Connection, *, trigger: str) -> SyncRun:
        """Sync one connection into the vendor-neutral tables and record the run."""
        raise NotImplementedError

    def describe_error(self, exc: Exception) -> str:
        """One sentence an MSP admin can act on."""
        return "The integration failed unexpectedly; see the worker log for details."
