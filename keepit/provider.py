"""The Keepit provider: connection settings, Test connection, error sentences, sync.

Test connection runs the very client the sync uses (`KeepitClient.from_settings`), with
the values of the form, saved or not: who am I -> the configured account -> its child
accounts. Every failure becomes one specific sentence (`describe_error`).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from integrations.base import ConnectionTestResult, Provider

from .client import KNOWN_REGIONS, KeepitClient, KeepitCredentials
from .exceptions import (
    KeepitAuthError,
    KeepitError,
    KeepitNotFound,
    KeepitProtocolError,
    KeepitUnavailable,
)

if TYPE_CHECKING:
    from integrations.models import Connection, SyncRun

logger = logging.getLogger(__name__)

PERSONAL_LOGIN_WARNING = (
    "You are signed in with a personal username and password. Keepit recommends a "
    "dedicated API token with read-only rights: in Keepit open your account profile "
    "(lower left) > User info > Security > Secondary tokens > + Add API token, then fill "
    "API token login and API token password here."
)


@dataclass(frozen=True)
class KeepitConnectionSettings:
    """The settings of one Keepit connection, read from a `Connection` or a form."""

    region: str
    account_guid: str
    username: str
    password: str
    token_login: str
    token_password: str

    @classmethod
    @sensitive_variables("secrets")
    def from_values(
        cls, config: dict[str, Any], secrets: dict[str, str]
    ) -> KeepitConnectionSettings:
        return cls(
            region=str(config.get("region", "")),
            account_guid=str(config.get("account_guid", "")),
            username=str(config.get("username", "")),
            password=secrets.get("password", ""),
            token_login=str(config.get("token_login", "")),
            token_password=secrets.get("token_password", ""),
        )

    @classmethod
    def from_connection(cls, connection: Connection) -> KeepitConnectionSettings:
        return cls.from_values(connection.config, connection.secrets)

    def __repr__(self) -> str:
        return f"<KeepitConnectionSettings region={self.region!r} account={self.account_guid!r}>"

    @property
    def credentials(self) -> KeepitCredentials:
        return KeepitCredentials.choose(
            username=self.username,
            password=self.password,
            token_login=self.token_login,
            token_password=self.token_password,
        )

    def client(self, **overrides: float | int) -> KeepitClient:
        return KeepitClient.from_settings(
            region=self.region, credentials=self.credentials, **overrides
        )


@dataclass(frozen=True)
class FindRegionResult:
    region: str  # "" when no region accepted the credentials
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"ok": bool(self.region), "region": self.region, "message": self.message}


def unexpected_error_sentence(what: str, exc: BaseException) -> str:
    """A sentence for an error nobody foresaw; the traceback goes to the log."""
    return (
        f"{what} stopped on an unexpected error ({type(exc).__name__}). Nothing was "
        "changed. Try again; if it happens again, send the worker or web log of this "
        "time to support."
    )


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
            probe = KeepitClient.from_settings(
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
        where = f" (region {region})" if region else ""
        if isinstance(exc, KeepitAuthError):
            return (
                f"Keepit refused the credentials{where}: the password or API token may have "
                "changed or expired. Update them on the Keepit connection and test again."
            )
        if isinstance(exc, KeepitUnavailable):
            if "did not answer in time" in str(exc):
                return (
                    f"Keepit did not answer in time{where}. Try again in a few minutes; if it "
                    "persists, check that this server can reach Keepit."
                )
            return (
                f"Keepit could not be reached{where} ({exc}). Try again in a few minutes; if "
                "it persists, check this server's network access to Keepit."
            )
        if isinstance(exc, KeepitNotFound):
            return f"Keepit does not know {exc.path}{where}: the account or connector is gone."
        if isinstance(exc, KeepitProtocolError):
            return (
                f"Unexpected answer from Keepit{where}: {exc}. This is usually temporary; if "
                "it persists, contact support with the time of the failure."
            )
        if isinstance(exc, KeepitError):
            return f"Keepit request failed{where}: {exc}."
        return super().describe_error(exc)

    # --- sync ------------------------------------------------------------------------------

    def sync(self, connection: Connection, *, trigger: str) -> SyncRun:
        from .sync import sync_connection

        return sync_connection(connection, trigger=trigger)
