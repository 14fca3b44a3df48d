"""What Vectis keeps about a user's sign-in besides Django's user: whether the user may
use a password at all, and from when earlier sessions no longer count."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class UserAccess(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="access"
    )
    sso_only = models.BooleanField(
        "Single sign-on only",
        default=False,
        help_text="Refuse this user's password: sign-in only through single sign-on.",
    )
    time_zone = models.CharField(
        max_length=64,
        blank=True,
        default="",
        help_text="Times on every page are shown in this zone (empty: the MSP's own).",
    )
    sessions_valid_after = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Sessions started before this time are signed out (set when the "
        "user's role or password changes).",
    )

    class Meta:
        db_table = "access_user"
        verbose_name = "sign-in setting"

    def __str__(self) -> str:
        return f"Sign-in of {self.user}"


class KioskLink(models.Model):
    """A read-only link to the wallboard for a screen without a signed-in user (a TV in
    the NOC). The link carries a signed id and a random key; only the key's hash is kept,
    so the link is shown once. Revoking it refuses it at the next refresh."""

    name = models.CharField(max_length=120, help_text="Where the screen is, e.g. “NOC TV”.")
    key_hash = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "access_kiosk_links"
        verbose_name = "wallboard kiosk link"

    def __str__(self) -> str:
        return self.name
