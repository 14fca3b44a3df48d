"""The provider's configuration: one JSON file written by `tests.sso_provider`, shared by
the settings module, the claims validator and the provisioning in `serve`."""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_ENV = "OIDC_PROVIDER_CONFIG"
"""Names the config file; settings are imported by Django, so they cannot take arguments."""

ISSUER_ENV = "OIDC_PROVIDER_ISSUER"
"""The issuer, known only once `serve` has bound its port."""


@dataclass(frozen=True)
class UserProfile:
    """A user and the claims the provider asserts about them."""

    username: str
    password: str
    email: str
    email_verified: bool = True
    tid: str = "tenant-msp"
    amr: list[str] = field(default_factory=list)
    name: str = ""
    acct: int | None = None


@dataclass(frozen=True)
class Client:
    client_id: str
    client_secret: str
    redirect_uris: list[str]


@dataclass(frozen=True)
class ProviderConfig:
    database: str
    private_key_pem: str
    client: Client
    users: dict[str, UserProfile]
    port: int = 0


@functools.cache
def load_config() -> ProviderConfig:
    raw: dict[str, Any] = json.loads(Path(os.environ[CONFIG_ENV]).read_text())
    users = [UserProfile(**user) for user in raw["users"]]
    return ProviderConfig(
        database=raw["database"],
        private_key_pem=raw["private_key_pem"],
        client=Client(**raw["client"]),
        users={user.username: user for user in users},
        port=int(raw.get("port", 0)),
    )
