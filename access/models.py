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
