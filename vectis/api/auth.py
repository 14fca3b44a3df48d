"""Who may call the API: an API key in `Authorization: Api-Key <key>` (or `Bearer <key>`),
its scope, and a rate limit per key.

No key, or a key that is unknown, revoked or expired: 401 with a sentence. A read-only
key asking to change something: 403. Each key has its own budget of requests
(`VECTIS_API_RATE`, kept in the cache: set CACHE_URL to Redis so every web process
shares it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from ..models import ApiKey
from ..timefmt import iso

SCHEMES = ("api-key", "bearer")
# `last_used_at` is written at most this often per key (not one write per request).
LAST_USED_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class KeyUser:
    """`request.user` for a request made with an API key."""

    key: ApiKey
    is_authenticated: bool = True
    is_anonymous: bool = False

    @property
    def username(self) -> str:
        return self.key.actor


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[KeyUser, ApiKey] | None:
        header = get_authorization_header(request).decode(errors="replace").strip()
        scheme, _, key = header.partition(" ")
        if scheme.lower() not in SCHEMES:
            return None  # no key at all: 401 "not authenticated" (see the permission)
        key = key.strip()
        prefix = key.partition(".")[0]
        api_key = ApiKey.objects.filter(prefix=prefix).first() if prefix else None
        if api_key is None or not api_key.is_valid(key):
            raise AuthenticationFailed("This API key is not valid: check that it was copied whole.")
        if api_key.revoked:
            raise AuthenticationFailed(f"The API key “{api_key.name}” was revoked.")
        if api_key.has_expired:
            raise AuthenticationFailed(
                f"The API key “{api_key.name}” expired at {iso(api_key.expiry_date)}."
            )
        now = timezone.now()
        if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_EVERY:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
            api_key.last_used_at = now
        return KeyUser(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Api-Key realm="Vectis API"'


class KeyScope(BasePermission):
    """Any valid key reads; changing something (acknowledge, snooze, sync) needs the
    technician scope."""

    message = (
        "This API key is read-only: acknowledging, snoozing and syncing need a key with "
        "the technician scope."
    )

    def has_permission(self, request: Request, view: Any) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return False
        return request.method in SAFE_METHODS or key.scope == ApiKey.Scope.TECHNICIAN


class PerKeyThrottle(SimpleRateThrottle):
    """`VECTIS_API_RATE` requests per key (e.g. "600/minute")."""

    scope = "api_key"

    def get_rate(self) -> str:
        return str(settings.VECTIS_API_RATE)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        key = request.auth
        if not isinstance(key, ApiKey):
            return None
        return f"vectis-api-throttle-{key.prefix}"


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """How the schema (and /api/docs/'s Authorize button) describes the key."""

    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                "An API key, sent as `Authorization: Api-Key <key>` (or `Bearer <key>`)."
            ),
        }
