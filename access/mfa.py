"""Second factors: who must have one, and when single sign-on counts as one.

With `VECTIS_REQUIRE_MFA` on, a signed-in staff user without a TOTP app or a passkey is
sent to enrolment before any page (`RequireSecondFactorMiddleware`). A user whose
single sign-on provider asserted multi-factor authentication (the ID token's `amr`
claim) is neither asked for a code at sign-in nor sent to enrolment for that session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from allauth.mfa.models import Authenticator
from allauth.mfa.stages import AuthenticateStage
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

# The session key set when the SSO provider asserted MFA for this sign-in.
MFA_BY_PROVIDER = "vectis_mfa_by_provider"
# Set once the user is known to have a second factor (spares a query per request).
HAS_SECOND_FACTOR = "vectis_has_second_factor"
# Where to go once enrolment (and the recovery codes) are done.
AFTER_ENROLMENT = "vectis_after_enrolment"
# `amr` values (RFC 8176; Entra ID) that mean more than one factor was used.
MFA_AMR_VALUES = frozenset({"mfa", "ngcmfa"})
SECOND_FACTORS = (Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN)
# Reachable without a second factor: enrolment itself, signing out, static files.
OPEN_PATHS = ("/accounts/2fa/", "/accounts/logout/", "/accounts/reauthenticate/", "/static/")


def provider_asserted_mfa(claims: dict[str, Any]) -> bool:
    amr = claims.get("amr") or []
    values: Iterable[Any] = [amr] if isinstance(amr, str) else amr
    return any(str(value).lower() in MFA_AMR_VALUES for value in values)


def sso_claims(sociallogin: Any) -> dict[str, Any]:
    """The ID token's claims of an allauth social login (empty for any other login)."""
    if sociallogin is None:
        return {}
    data = sociallogin.account.extra_data or {}
    claims = data.get("id_token", data)
    return claims if isinstance(claims, dict) else {}


def has_second_factor(user: AbstractBaseUser | AnonymousUser) -> bool:
    return bool(Authenticator.objects.filter(user_id=user.pk, type__in=SECOND_FACTORS).exists())


class SsoAwareAuthenticateStage(AuthenticateStage):
    """allauth's "enter your code" step, skipped when the SSO provider already asked."""

    def _should_handle(self, request: HttpRequest) -> bool:
        sociallogin = (self.login.signal_kwargs or {}).get("sociallogin")
        if provider_asserted_mfa(sso_claims(sociallogin)):
            return False
        return bool(super()._should_handle(request))


class RequireSecondFactorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if (
            settings.VECTIS_REQUIRE_MFA
            and user.is_authenticated
            and user.is_staff
            and not request.path.startswith(OPEN_PATHS)
            and not request.session.get(MFA_BY_PROVIDER)
            and not request.session.get(HAS_SECOND_FACTOR)
        ):
            if has_second_factor(user):
                request.session[HAS_SECOND_FACTOR] = True
            else:
                here = request.get_full_path()
                if url_has_allowed_host_and_scheme(here, allowed_hosts=None):
                    request.session[AFTER_ENROLMENT] = here
                return HttpResponseRedirect(reverse("mfa_activate_totp"))
        return self.get_response(request)
