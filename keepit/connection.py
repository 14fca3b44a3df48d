"""One Keepit connection's settings, and the client made from them and from Django's
settings (timeouts, retries, concurrency, the answer size cap) — the same client for
Test connection, Find my region and the sync."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from integrations.models import Connection

from .client import KeepitClient, KeepitCredentials


def client_for(
    *, region: str, credentials: KeepitCredentials, **overrides: float | int
) -> KeepitClient:
    """A client configured from Django settings; `overrides` for Test connection (one
    attempt: the admin is waiting) and Find my region (a short connect timeout)."""
    options: dict[str, float | int] = {
        "connect_timeout": settings.KEEPIT_CONNECT_TIMEOUT,
        "read_timeout": settings.KEEPIT_READ_TIMEOUT,
        "max_attempts": settings.KEEPIT_MAX_ATTEMPTS,
        "retry_budget_seconds": settings.KEEPIT_RETRY_BUDGET_SECONDS,
        "pool_size": settings.KEEPIT_HTTP_CONCURRENCY,
        "max_response_bytes": int(settings.KEEPIT_MAX_RESPONSE_MB * 1024 * 1024),
    }
    options.update(overrides)
    return KeepitClient(
        region=region,
        credentials=credentials,
        base_url_template=settings.KEEPIT_BASE_URL_TEMPLATE,
        connect_timeout=float(options["connect_timeout"]),
        read_timeout=float(options["read_timeout"]),
        max_attempts=int(options["max_attempts"]),
        retry_budget_seconds=float(options["retry_budget_seconds"]),
        pool_size=int(options["pool_size"]),
        max_response_bytes=int(options["max_response_bytes"]),
        user_agent=f"Vectis/{settings.VECTIS_VERSION}",
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
        return client_for(region=self.region, credentials=self.credentials, **overrides)
