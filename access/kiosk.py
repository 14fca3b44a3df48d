"""Wallboard kiosk links: signed, revocable, read-only.

The link is `/wallboard/k/<token>/`, the token a `django.core.signing` signature over
"<link id>.<random key>" (salted for this purpose). Only SHA-256 of the key is stored, so
a database dump does not give the link away; revoking the row refuses it.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core import signing

from .models import KioskLink

SALT = "vectis.kiosk"
# A screen refreshes every minute: record its use at most this often.
LAST_USED_EVERY_SECONDS = 300


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def issue(link: KioskLink) -> str:
    """A new key for the link (saved); returns the token for its URL."""
    key = secrets.token_urlsafe(24)
    link.key_hash = _hash(key)
    link.save()
    return signing.Signer(salt=SALT).sign(f"{link.pk}.{key}")


def create(name: str, *, by: AbstractBaseUser | AnonymousUser | None) -> tuple[KioskLink, str]:
    creator = by if by is not None and by.is_authenticated else None
    link = KioskLink(name=name, created_by=creator)  # type: ignore[misc]
    return link, issue(link)


def read(token: str, *, now: datetime) -> KioskLink | None:
    """The link a token names, if the signature holds, the key matches and the link is
    not revoked."""
    try:
        value = signing.Signer(salt=SALT).unsign(token)
    except signing.BadSignature:
        return None
    pk, _, key = value.partition(".")
    if not pk.isdigit():
        return None
    link = KioskLink.objects.filter(pk=int(pk), revoked_at__isnull=True).first()
    if link is None or not secrets.compare_digest(link.key_hash, _hash(key)):
        return None
    if (
        link.last_used_at is None
        or (now - link.last_used_at).total_seconds() > LAST_USED_EVERY_SECONDS
    ):
        KioskLink.objects.filter(pk=link.pk).update(last_used_at=now)
    return link
