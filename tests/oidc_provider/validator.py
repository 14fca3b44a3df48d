"""Puts the configured profile of the signed-in user into the ID token and userinfo, the
way Entra ID-like providers do (`tid`, `amr`, `email_verified`)."""

from __future__ import annotations

from typing import Any

from oauth2_provider.oauth2_validators import OAuth2Validator

from tests.oidc_provider.config import load_config

PROFILE_CLAIMS = ["email", "email_verified", "tid", "amr", "acct", "name", "preferred_username"]


class ClaimsValidator(OAuth2Validator):
    # DOT silently drops every claim that has no scope here; `tid` and `amr` are not
    # standard, so they ride on `openid` and are always released.
    oidc_claim_scope = {
        **OAuth2Validator.oidc_claim_scope,
        "tid": "openid",
        "amr": "openid",
        "acct": "openid",
    }

    def get_additional_claims(self, request: Any) -> dict[str, Any]:
        """Claims of the user the grant was issued to; `amr` only when there is one,
        as real providers omit it rather than send an empty list."""
        username: str = request.user.get_username()
        profile = load_config().users[username]
        claims: dict[str, Any] = {
            "email": profile.email,
            "email_verified": profile.email_verified,
            "tid": profile.tid,
            "name": profile.name or username,
            "preferred_username": username,
        }
        if profile.amr:
            claims["amr"] = list(profile.amr)
        if profile.acct is not None:
            claims["acct"] = profile.acct
        return claims

    def get_discovery_claims(self, request: Any) -> list[str]:
        """DOT lists only `sub` when the claims depend on the request; list them all."""
        return ["sub", *PROFILE_CLAIMS]
