"""The loopback OpenID Connect provider behaves like a real one, checked with nothing but
`requests` and PyJWT, so SSO tests that use it test Vectis and not the fixture."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests

from tests.sso_provider import ProviderError, ProviderUser, RunningProvider, start_provider

CLIENT_ID = "vectis-test"
CLIENT_SECRET = "client-secret-for-tests"
REDIRECT_URI = "http://127.0.0.1:9/accounts/oidc/test/login/callback/"
ALICE = ProviderUser(
    "alice",
    "alice-password",
    "alice@msp.example",
    tid="tenant-a",
    amr=["pwd", "mfa"],
    name="Alice A",
)
BOB = ProviderUser("bob", "bob-password", "bob@msp.example", email_verified=False)


@pytest.fixture(scope="module")
def provider() -> Iterator[RunningProvider]:
    running = start_provider(
        [ALICE, BOB], client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uris=[REDIRECT_URI]
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def discovery(provider: RunningProvider) -> dict[str, Any]:
    response = requests.get(f"{provider.issuer}/.well-known/openid-configuration", timeout=10)
    response.raise_for_status()
    metadata: dict[str, Any] = response.json()
    return metadata


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorization_code(
    provider: RunningProvider, discovery: dict[str, Any], user: ProviderUser, challenge: str
) -> tuple[str, str]:
    """Signs `user` in through the browser flow; returns the code and the nonce sent."""
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid profile email",
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    callback = provider.sign_in(
        requests.Session(),
        f"{discovery['authorization_endpoint']}?{query}",
        user.username,
        user.password,
    )
    assert callback.startswith(f"{REDIRECT_URI}?")
    params = parse_qs(urlsplit(callback).query)
    assert params["state"] == [state]
    return params["code"][0], nonce


def exchange(discovery: dict[str, Any], code: str, **extra: str) -> requests.Response:
    """The token request as allauth sends it: client_secret_post."""
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        **extra,
    }
    return requests.post(discovery["token_endpoint"], data=data, timeout=10)


def verified_id_token(provider: RunningProvider, id_token: str) -> dict[str, Any]:
    key = jwt.PyJWKClient(provider.jwks_url).get_signing_key_from_jwt(id_token)
    claims: dict[str, Any] = jwt.decode(
        id_token, key, algorithms=["RS256"], audience=CLIENT_ID, issuer=provider.issuer
    )
    return claims


def test_discovery_describes_the_provider(
    provider: RunningProvider, discovery: dict[str, Any]
) -> None:
    assert discovery["issuer"] == provider.issuer == f"{provider.base}/o"
    assert discovery["jwks_uri"] == provider.jwks_url
    for endpoint in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint"):
        assert discovery[endpoint].startswith(f"{provider.base}/")
    assert "client_secret_post" in discovery["token_endpoint_auth_methods_supported"]
    assert "S256" in discovery["code_challenge_methods_supported"]
    assert "RS256" in discovery["id_token_signing_alg_values_supported"]


def test_code_flow_with_pkce_issues_a_signed_id_token_with_the_user_claims(
    provider: RunningProvider, discovery: dict[str, Any]
) -> None:
    verifier, challenge = pkce_pair()
    code, nonce = authorization_code(provider, discovery, ALICE, challenge)

    response = exchange(discovery, code, code_verifier=verifier)

    assert response.status_code == 200, response.text
    tokens = response.json()
    claims = verified_id_token(provider, tokens["id_token"])
    assert claims["nonce"] == nonce
    expected = {
        "email": "alice@msp.example",
        "email_verified": True,
        "tid": "tenant-a",
        "amr": ["pwd", "mfa"],
        "name": "Alice A",
        "preferred_username": "alice",
    }
    assert {name: claims.get(name) for name in expected} == expected
    userinfo = requests.get(
        discovery["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    assert userinfo.status_code == 200, userinfo.text
    assert {name: userinfo.json().get(name) for name in expected} == expected
    assert userinfo.json()["sub"] == claims["sub"]


def test_unverified_email_and_no_amr_are_reported_as_such(
    provider: RunningProvider, discovery: dict[str, Any]
) -> None:
    verifier, challenge = pkce_pair()
    code, _ = authorization_code(provider, discovery, BOB, challenge)

    response = exchange(discovery, code, code_verifier=verifier)

    assert response.status_code == 200, response.text
    claims = verified_id_token(provider, response.json()["id_token"])
    assert claims["email"] == "bob@msp.example"
    assert claims["email_verified"] is False
    assert claims["tid"] == "tenant-msp"
    assert claims["name"] == "bob"
    assert "amr" not in claims


def test_token_request_without_code_verifier_is_refused(
    provider: RunningProvider, discovery: dict[str, Any]
) -> None:
    _, challenge = pkce_pair()
    code, _ = authorization_code(provider, discovery, ALICE, challenge)

    response = exchange(discovery, code)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "id_token" not in response.json()


def test_authorization_without_code_challenge_is_refused(
    provider: RunningProvider, discovery: dict[str, Any]
) -> None:
    query = urlencode(
        {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid",
            "state": "s",
        }
    )
    callback = provider.sign_in(
        requests.Session(),
        f"{discovery['authorization_endpoint']}?{query}",
        "alice",
        "alice-password",
    )
    params = parse_qs(urlsplit(callback).query)
    assert params["error"] == ["invalid_request"]
    assert "code" not in params


def test_wrong_password_does_not_reach_the_client(
    provider: RunningProvider, discovery: dict[str, Any]
) -> None:
    query = urlencode({"response_type": "code", "client_id": CLIENT_ID, "scope": "openid"})
    with pytest.raises(ProviderError, match="signing in as 'alice' failed"):
        provider.sign_in(
            requests.Session(), f"{discovery['authorization_endpoint']}?{query}", "alice", "nope"
        )
