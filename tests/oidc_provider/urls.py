"""The OAuth endpoints under /o/ (so the issuer is http://127.0.0.1:<port>/o) and the
login page the authorize endpoint sends anonymous browsers to."""

from django.contrib.auth.views import LoginView
from django.urls import include, path

urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("accounts/login/", LoginView.as_view(), name="login"),
]
