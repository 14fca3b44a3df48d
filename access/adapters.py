"""How django-allauth fits Vectis: nobody signs up on their own; a single sign-on user is
matched by verified e-mail to an existing user (or created with the default role when
`VECTIS_SSO_AUTO_CREATE` is on); only the configured tenant gets in."""

from __future__ import annotations

import logging
import time
from typing import Any

from allauth.account import app_settings as account_settings
from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.internal.flows.login import get_authentication_records
from allauth.core import context
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialLogin
from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group, User
from django.http import HttpRequest
from django.shortcuts import render

from integrations.crypto import fernet

from .mfa import MFA_BY_PROVIDER, has_second_factor, provider_asserted_mfa, sso_claims
from .models import UserAccess

MFA_STAGE = "allauth.mfa.stages.AuthenticateStage"
logger = logging.getLogger(__name__)


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return False  # an administrator adds users (or single sign-on, when allowed)

    def get_login_stages(self) -> list[str]:
        return [
            "access.mfa.SsoAwareAuthenticateStage" if stage == MFA_STAGE else stage
            for stage in super().get_login_stages()
        ]

    def is_reauthentication_required(self, *, app: str, **kwargs: Any) -> bool:
        """Second-factor pages need no second proof of who you are while the user has no
        second factor yet (an SSO-only user has no password to give, so enrolment forced
        on them would be a dead end), or within a few minutes of signing in (enrolment
        forced right after the password, then the recovery codes, would ask for it twice
        in a minute). Later — another factor, removing one, new codes — it asks, by
        password or by the factor already there."""
        request = context.request
        if app == "allauth.mfa" and request is not None and request.user.is_authenticated:
            if not has_second_factor(request.user):
                return False
            records = get_authentication_records(request, request.user)
            newest = max((record.get("at", 0) for record in records), default=0)
            if time.time() - newest < account_settings.REAUTHENTICATION_TIMEOUT:
                return False
        return bool(super().is_reauthentication_required(app=app, **kwargs))

    def authentication_failed(self, request: HttpRequest, **credentials: Any) -> None:
        """The right password of a user who may sign in through SSO only gets a sentence
        saying so (a wrong one gets the usual answer: nothing is given away)."""
        username, password = credentials.get("username"), credentials.get("password")
        user = get_user_model().objects.filter(username=username).first()
        if (
            user is not None
            and password
            and UserAccess.objects.filter(user=user, sso_only=True).exists()
            and user.check_password(password)
        ):
            raise forms.ValidationError(
                f"Your account signs in with {settings.VECTIS_SSO_NAME} only: use the "
                f"“Sign in with {settings.VECTIS_SSO_NAME}” button."
            )

    def post_login(self, request: HttpRequest, user: AbstractBaseUser, **kwargs: Any) -> Any:
        claims = sso_claims((kwargs.get("signal_kwargs") or {}).get("sociallogin"))
        request.session[MFA_BY_PROVIDER] = provider_asserted_mfa(claims)
        return super().post_login(request, user, **kwargs)


class MFAAdapter(DefaultMFAAdapter):
    """TOTP secrets and recovery-code seeds are encrypted at rest with the same keys as
    the vendor credentials (`VECTIS_ENCRYPTION_KEYS`)."""

    def encrypt(self, text: str) -> str:
        return fernet().encrypt(text.encode()).decode()

    def decrypt(self, encrypted_text: str) -> str:
        return fernet().decrypt(encrypted_text.encode()).decode()


def refuse(request: HttpRequest, sentence: str) -> ImmediateHttpResponse:
    context = {"title": "Single sign-on refused", "sentence": sentence}
    response = render(request, "access/sso_refused.html", context, status=403)
    return ImmediateHttpResponse(response)


def no_access_sentence(user: Any) -> str:
    return (
        f"The Vectis user {user.get_username()} has no access to Vectis (no role, or not "
        "marked as staff). Ask an administrator to give you a role."
    )


def email_is_verified(claims: dict[str, Any]) -> bool:
    """`email_verified` (OpenID Connect), or Entra ID's `xms_edov` (the e-mail's domain
    is verified in the tenant; an optional claim, see the README)."""
    return any(
        claims.get(name) in (True, "true", "True", 1) for name in ("email_verified", "xms_edov")
    )


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def pre_social_login(self, request: HttpRequest, sociallogin: SocialLogin) -> None:
        claims = sso_claims(sociallogin)
        tenant = settings.VECTIS_SSO_TENANT_ID
        if tenant and str(claims.get("tid", "")) != tenant:
            raise refuse(
                request,
                f"This {settings.VECTIS_SSO_NAME} account belongs to another organisation "
                f"(tenant “{claims.get('tid') or 'unknown'}”). Vectis accepts accounts of "
                f"tenant {tenant} only.",
            )
        if str(claims.get("acct", "")) == "1":
            raise refuse(
                request,
                f"Guest accounts of your {settings.VECTIS_SSO_NAME} tenant cannot sign in to "
                "Vectis; sign in with your own account of the tenant.",
            )
        email = str(claims.get("email") or "").strip()
        if not email or not email_is_verified(claims):
            raise refuse(
                request,
                f"{settings.VECTIS_SSO_NAME} did not vouch for this account's e-mail address"
                f"{f' ({email})' if email else ''}, and Vectis matches users by verified "
                "e-mail. Ask your administrator to check the app registration (see the README).",
            )
        if sociallogin.is_existing:
            user = sociallogin.user
            if user is not None and not (user.is_active and user.is_staff):
                raise refuse(request, no_access_sentence(user))
            return
        users = list(get_user_model().objects.filter(email__iexact=email, is_active=True)[:2])
        if len(users) == 1:
            if not users[0].is_staff:
                raise refuse(request, no_access_sentence(users[0]))
            sociallogin.connect(request, users[0])
        elif len(users) > 1:
            raise refuse(
                request,
                f"More than one Vectis user has the e-mail {email}; an administrator must "
                "give each user their own address before single sign-on can tell them apart.",
            )
        elif not settings.VECTIS_SSO_AUTO_CREATE:
            raise refuse(
                request,
                f"No Vectis user has the e-mail {email}. Ask an administrator to add you "
                "(with this address) and sign in again.",
            )

    def is_open_for_signup(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        return bool(settings.VECTIS_SSO_AUTO_CREATE)

    def on_authentication_error(
        self,
        request: HttpRequest,
        provider: Any,
        error: Any = None,
        exception: Any = None,
        extra_context: Any = None,
    ) -> None:
        # The page says only that it failed; the reason is for the administrator.
        logger.warning(
            "Single sign-on with %s failed: %s (%s)",
            getattr(provider, "name", provider),
            error,
            f"{type(exception).__name__}: {exception}" if exception else "no exception",
        )

    def save_user(self, request: HttpRequest, sociallogin: SocialLogin, form: Any = None) -> User:
        """A first SSO sign-in with `VECTIS_SSO_AUTO_CREATE`: a staff user with the
        default role, who signs in through SSO only."""
        user = sociallogin.user
        assert user is not None
        user.is_staff = True
        saved: User = super().save_user(request, sociallogin, form)
        role = Group.objects.filter(name=settings.VECTIS_SSO_DEFAULT_ROLE).first()
        if role is not None:
            saved.groups.add(role)
        UserAccess.objects.update_or_create(user=saved, defaults={"sso_only": True})
        return saved
