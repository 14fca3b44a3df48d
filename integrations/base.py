"""The provider interface every integration implements.

A provider *describes* a vendor (its label, description, connection form and admin) and
does the vendor-specific work for one `Connection`: test it, and — for backup vendors —
collect what the vendor says (backups.snapshot.SyncProvider: `collect()` returns
vendor-neutral snapshots; backups/ writes them). Providers are found through the
registry (integrations/registry.py), never through `if provider == ...` branches; pages,
alerts and e-mails name a vendor by its provider's `name`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar


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
    #: The vendor's name as every page, alert and e-mail shows it.
    name: ClassVar[str]
    description: ClassVar[str]
    #: Short text mark shown on the card when there is no logo.
    mark: ClassVar[str]
    #: Admin URL names of the provider's connection list, add form and connection page.
    admin_changelist: ClassVar[str]
    admin_add: ClassVar[str]
    admin_change: ClassVar[str]
    #: Shown on the card and the connection page of a connection that signs in with a
    #: person's login instead of an API token ("" when the vendor has no such advice).
    personal_login_warning: ClassVar[str] = ""
    #: The prefix of the provider's own settings (e.g. "ACME_"): a part of a sync done in
    #: another process gets them as this process has them.
    settings_prefix: ClassVar[str] = ""

    def test_connection(
        self, *, config: dict[str, Any], secrets: dict[str, str]
    ) -> ConnectionTestResult:
        """Run the same client code a sync uses against unsaved values."""
        raise NotImplementedError

    def describe_error(self, exc: Exception) -> str:
        """One sentence an MSP admin can act on."""
        return "The integration failed unexpectedly; see the worker log for details."
