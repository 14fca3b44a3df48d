"""Single sign-on through django-allauth's OpenID Connect provider, with the ID token's
signature checked.

allauth skips the signature when the token came straight from the token endpoint over
TLS (OpenID Connect Core 3.1.3.7 allows it). Vectis checks it anyway, against the keys the
provider publishes: it costs one cached request, and it still holds when TLS is
intercepted by a proxy or the token endpoint is misconfigured.
"""

from __future__ import annotations

from typing import Any

from allauth.account.internal.decorators import login_not_required
from allauth.socialaccount.internal import jwtkit
from allauth.socialaccount.models import SocialApp
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView, OAuth2LoginView
from allauth.socialaccount.providers.openid_connect.views import OpenIDConnectOAuth2Adapter
from django.http import Http404, HttpRequest, HttpResponse


class VerifyingAdapter(OpenIDConnectOAuth2Adapter):
    def _decode_id_token(self, app: SocialApp, id_token: str) -> dict[str, Any]:
        claims: dict[str, Any] = jwtkit.verify_and_decode(
            credential=id_token,
            keys_url=self.openid_config["jwks_uri"],
            issuer=self.openid_config["issuer"],
            audience=app.client_id,
            lookup_kid=jwtkit.lookup_kid_jwk,
            verify_signature=True,
        )
        return claims


# allauth's own views build the base adapter; these two, mounted at the same paths ahead
# of allauth's URLs (vectis/urls.py), build the verifying one.


def _run(view_class: Any, request: HttpRequest, provider_id: str) -> HttpResponse:
    try:
        view = view_class.adapter_view(VerifyingAdapter(request, provider_id))
        response: HttpResponse = view(request)
    except SocialApp.DoesNotExist:
        raise Http404("Single sign-on is not set up.") from None
    return response


@login_not_required  # type: ignore[untyped-decorator]
def login(request: HttpRequest, provider_id: str) -> HttpResponse:
    return _run(OAuth2LoginView, request, provider_id)


@login_not_required  # type: ignore[untyped-decorator]
def callback(request: HttpRequest, provider_id: str) -> HttpResponse:
    return _run(OAuth2CallbackView, request, provider_id)
