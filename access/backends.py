"""Password sign-in, refused for users who may sign in through single sign-on only.

The refusal is in `authenticate`, not in `user_can_authenticate`: Django also asks the
latter on every request of a signed-in session (`get_user`), and an SSO-only user signed
in through SSO must stay signed in.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User
from django.http import HttpRequest

from .models import UserAccess


class PasswordBackend(ModelBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None and UserAccess.objects.filter(user_id=user.pk, sso_only=True).exists():
            return None
        return user
