"""Secrets at rest: MultiFernet over the keys in `VECTIS_ENCRYPTION_KEYS`.

The first key encrypts; every key decrypts, so a new key can be put first and old
ciphertexts still read until `manage.py rotate_encryption_keys` re-encrypts them.
"""

from __future__ import annotations

import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.views.decorators.debug import sensitive_variables


class SecretDecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


@lru_cache(maxsize=4)
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("VECTIS_ENCRYPTION_KEYS is empty: set at least one Fernet key.")
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "VECTIS_ENCRYPTION_KEYS holds a value that is not a Fernet key (32 url-safe "
            "base64-encoded bytes); generate one with `python manage.py generate_encryption_key`."
        ) from exc


def fernet() -> MultiFernet:
    return _fernet_for(tuple(settings.VECTIS_ENCRYPTION_KEYS))


@sensitive_variables()
def encrypt_secrets(values: dict[str, str]) -> str:
    """Encrypt a dict of secret strings into one token (empty dict -> empty string)."""
    clean = {key: value for key, value in values.items() if value}
    if not clean:
        return ""
    return fernet().encrypt(json.dumps(clean, sort_keys=True).encode()).decode()


@sensitive_variables()
def decrypt_secrets(token: str) -> dict[str, str]:
    if not token:
        return {}
    try:
        data = fernet().decrypt(token.encode())
    except InvalidToken as exc:
        raise SecretDecryptionError(
            "Stored credentials cannot be decrypted with the configured VECTIS_ENCRYPTION_KEYS."
        ) from exc
    loaded: dict[str, str] = json.loads(data)
    return loaded


def rotate_token(token: str) -> str:
    """Re-encrypt a token with the first key (no-op for empty)."""
    if not token:
        return ""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretDecryptionError(
            "Stored credentials cannot be decrypted with the configured VECTIS_ENCRYPTION_KEYS."
        ) from exc
