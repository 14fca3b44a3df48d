"""Password sign-in, refused for users who may sign in through single sign-on only."""

from __future__ import annotations

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AnonymousUser, User

from .models import UserAccess


class PasswordBackend(ModelBackend):
    def user_can_authenticate(self, user: User | AnonymousUser | None) -> bool:
        if not super().user_can_authenticate(user) or user is None or user.pk is None:
            return False
        return not UserAccess.objects.filter(user_id=user.pk, sso_only=True).exists()
