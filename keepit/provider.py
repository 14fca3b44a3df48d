"""The Keepit provider: Test connection, Find my region, error sentences, and `collect`
(read Keepit into snapshots; keepit/collect.py does the reading, backups/ the writing).

Test connection runs the very client the sync uses (keepit/connection.py), with the
values of the form, saved or not: who am I -> the configured account -> its child
accounts, in the configured region only. Every failure becomes one specific sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from backups.snapshot import AccountPlan, AuditBatch, CollectError, Collection, SyncProgress
from integrations.base import ConnectionTestResult, Provider
from integrations.crypto import SecretDecryptionError
from integrations.models import Connection

from .client import KNOWN_REGIONS, KeepitCredentials
from .collect import KeepitCollector
from .connection import KeepitConnectionSettings, client_for
from .errors import KeepitAuthError, KeepitError, describe_error, unexpected_error_sentence

logger = logging.getLogger(__name__)

PERSONAL_LOGIN_WARNING = (
    "You are signed in with a personal username and password. Keepit recommends a "
    "dedicated API token with read-only rights: in Keepit open your account profile "
    "(lower left) > User info > Security > Secondary tokens > + Add API token, then fill "
    "API token login and API token password here."
)


@dataclass(frozen=True)
class FindRegionResult:
    region: str  # "" when no region accepted the credentials
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"ok": bool(self.region), "region": self.region, "message": self.message}


def _credential_sentence(credentials: KeepitCredentials) -> str:
    if credentials.kind == "api_token":
        return f"Signed in with the API token {credentials.login}."
    return f"Signed in with the username {credentials.login}."


class KeepitProvider(Provider):
    kind = "keepit"
    name = "Keepit"
    description = (
        "SaaS backup for Microsoft 365, Entra ID, Google Workspace, Salesforce and more: "
        "connectors, backup status and audit log per customer."
    )
    mark = "K"
    admin_changelist = "admin:keepit_keepitconnection_changelist"
    admin_add = "admin:keepit_keepitconnection_add"
    admin_change = "admin:keepit_keepitconnection_change"
    personal_login_warning = (
        "This connection signs in with a personal Keepit login (a Master Admin's username "
        "and password): it can change everything in your Keepit account, and it stops "
        "working when that person changes their password or leaves. Create a dedicated API "
        "token with read-only rights (in Keepit: account profile > User info > Security > "
        "Secondary tokens > + Add API token) and paste it into API token login and API token "
        "password."
    )
    settings_prefix = "KEEPIT_"

    # --- Test connection -------------------------------------------------------------------

    @sensitive_variables("secrets")
    def test_connection(
        self, *, config: dict[str, Any], secrets: dict[str, str]
    ) -> ConnectionTestResult:
        """Who am I -> the configured account -> its child accounts, in the configured
        region only: credentials never go anywhere the admin did not point them."""
        settings = KeepitConnectionSettings.from_values(config, secrets)
        try:
            credentials = settings.credentials
        except ValueError:
            return ConnectionTestResult(
                ok=False,
                message="Fill Username and Password, or both API token fields, then test again.",
            )
        try:
            return self._test(settings, credentials)
        except Exception as exc:  # the admin gets a sentence, the log the traceback
            logger.exception("Test connection failed unexpectedly")
            return ConnectionTestResult(
                ok=False,
                message=unexpected_error_sentence("The test", exc),
                credential_kind=credentials.kind,
            )

    def _test(
        self, settings: KeepitConnectionSettings, credentials: KeepitCredentials
    ) -> ConnectionTestResult:
        # One attempt: the admin is waiting, and a time-out must come back within the
        # configured timeout.
        client = settings.client(max_attempts=1)
        try:
            caller = client.who_am_i()
            parent = client.parent_account(settings.account_guid)
            children = client.child_accounts(parent.id)
        except KeepitAuthError as exc:
            return ConnectionTestResult(
                ok=False,
                message=self._auth_failure(exc, settings, credentials),
                credential_kind=credentials.kind,
                suggest_find_region=exc.path == "/users/",
            )
        except KeepitError as exc:
            return ConnectionTestResult(
                ok=False,
                message=self.describe_error(exc, region=settings.region),
                credential_kind=credentials.kind,
            )
        finally:
            client.close()
        details = [_credential_sentence(credentials)]
        if caller != parent.id:
            details.append(f"These credentials belong to account {caller}.")
        warnings = [] if credentials.kind == "api_token" else [PERSONAL_LOGIN_WARNING]
        count = len(children)
        noun = "customer account" if count == 1 else "customer accounts"
        return ConnectionTestResult(
            ok=True,
            message=(
                f"Connected to Keepit ({settings.region}). {count} {noun} visible under "
                f"{parent.id}."
            ),
            details=details,
            warnings=warnings,
            credential_kind=credentials.kind,
            checked_at=timezone.now(),
        )

    def _auth_failure(
        self,
        exc: KeepitAuthError,
        settings: KeepitConnectionSettings,
        credentials: KeepitCredentials,
    ) -> str:
        if exc.path != "/users/":
            # The credentials work (who-am-I answered) but not for this GUID.
            return (
                f"The account GUID {settings.account_guid} is not visible to these "
                "credentials. Check the GUID in your Keepit URL "
                "(https://REGION.keepit.com/users/GUID), or use credentials of that account "
                "or of its parent."
            )
        what = (
            "API token login or API token password"
            if credentials.kind == "api_token"
            else ("username or password")
        )
        return (
            f"Keepit refused the {what} in region {settings.region}. Check them (the "
            "username is case-sensitive) and that the account lives in this region; if it "
            "may live in another one, press Find my region."
        )

    # --- Find my region ----------------------------------------------------------------------

    @sensitive_variables("secrets")
    def find_region(self, *, config: dict[str, Any], secrets: dict[str, str]) -> FindRegionResult:
        """The explicit "Find my region" action: ask each known Keepit region once who the
        credentials belong to (as Keepit's own tools find an account's region). Only ever
        run when the admin presses the button."""
        settings = KeepitConnectionSettings.from_values(config, secrets)
        try:
            credentials = settings.credentials
        except ValueError:
            return FindRegionResult(
                region="",
                message="Fill Username and Password, or both API token fields, then try again.",
            )

        def accepts(region: str) -> bool:
            probe = client_for(
                region=region, credentials=credentials, max_attempts=1, connect_timeout=3.0
            )
            try:
                probe.who_am_i()
            except KeepitError:
                return False
            finally:
                probe.close()
            return True

        regions = list(KNOWN_REGIONS)
        try:
            with ThreadPoolExecutor(max_workers=len(regions)) as pool:
                accepted = [
                    region
                    for region, ok in zip(regions, pool.map(accepts, regions), strict=True)
                    if ok
                ]
        except Exception as exc:
            logger.exception("Find my region failed unexpectedly")
            return FindRegionResult(region="", message=unexpected_error_sentence("The search", exc))
        if not accepted:
            return FindRegionResult(
                region="",
                message=(
                    "No Keepit region accepts these credentials ("
                    + ", ".join(regions)
                    + " were asked once each). Check the username and password or the API "
                    "token pair."
                ),
            )
        region = accepted[0]
        return FindRegionResult(
            region=region,
            message=(
                f"These credentials work in region {region} ({KNOWN_REGIONS[region]}). Region "
                f"is now set to {region}: press Test connection, then Save."
            ),
        )

    # --- errors ----------------------------------------------------------------------------

    def describe_error(self, exc: Exception, *, region: str = "") -> str:
        return describe_error(exc, region=region)

    # --- sync ------------------------------------------------------------------------------

    def collect(
        self,
        connection: Connection,
        *,
        now: datetime,
        progress: SyncProgress,
        fresh: bool = False,
    ) -> Collection:
        """Open the reading of the connection's Keepit account: the inventory, then the
        audit log, each when the runner asks for it. Writes no table."""
        region = str(connection.config.get("region", ""))
        try:
            client = KeepitConnectionSettings.from_connection(connection).client()
        except (SecretDecryptionError, ValueError) as exc:
            raise CollectError(f"The stored Keepit settings cannot be used: {exc}") from exc
        collector = KeepitCollector(
            client,
            connection=connection,
            parent_guid=str(connection.config.get("account_guid", "")),
            sync_state=connection.sync_state,
            now=now,
            progress=progress,
            fresh=fresh,
        )
        audits: list[Iterator[AuditBatch]] = []

        def plan() -> list[AccountPlan]:
            try:
                return collector.plan()
            except KeepitError as exc:
                raise CollectError(describe_error(exc, region=region)) from exc

        def audit() -> Iterator[AuditBatch]:
            audits.append(collector.audit())
            return audits[-1]

        def close() -> None:
            for stream in audits:
                if isinstance(stream, Generator):
                    stream.close()  # stops the audit readers if left half-read
            client.close()

        return Collection(
            plan=plan,
            read_accounts=collector.read_accounts,
            audit=audit,
            audit_ready=collector.audit_ready,
            budget=client.set_budget,
            request_budget=settings.KEEPIT_HTTP_CONCURRENCY,
            requests=lambda: client.request_count,
            counts=collector.counts,
            audit_counts=collector.audit_counts,
            close=close,
            credential=lambda: collector.inventory.credential,
            problems=collector.inventory.problems,
            notes=lambda: collector.inventory.notes,
        )
