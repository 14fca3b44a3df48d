"""The Keepit connection form, worded like the setup guide.

Secrets are write-only: a stored password is never rendered back; the field says a value
is stored, blank keeps it, and a checkbox clears it. Either Username + Password or both
API token fields must be present; when both token fields are filled they win.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.views.decorators.debug import sensitive_variables

from .client import ACCOUNT_GUID_RE, KNOWN_REGIONS, REGION_RE
from .models import KeepitConnection

KEEPIT_URL_RE = re.compile(r"^/users/(?P<guid>[A-Za-z0-9_-]{1,100})(?:/.*)?$")
SECRET_FIELDS = ("password", "token_password")


def parse_keepit_url(url: str) -> tuple[str, str]:
    """`https://us-dc.keepit.com/users/y17hbi-i620pk-80q5x2` -> ("us-dc", "y17hbi-…")."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    match = KEEPIT_URL_RE.match(parts.path)
    if not host.endswith(".keepit.com") or match is None:
        raise forms.ValidationError(
            "That is not a Keepit account URL. Copy it from your browser while signed in to "
            "Keepit; it looks like https://us-dc.keepit.com/users/y17hbi-i620pk-80q5x2."
        )
    region = host.removesuffix(".keepit.com")
    if not REGION_RE.fullmatch(region):
        raise forms.ValidationError("The region in that URL is not valid.")
    return region, match.group("guid")


def validate_region_value(value: str) -> str:
    value = value.strip().lower()
    if value in KNOWN_REGIONS or REGION_RE.fullmatch(value):
        return value
    raise forms.ValidationError(
        "Enter a Keepit region such as us-dc, dk-co, uk-ld, de-fr, ca-tr, au-sy or ch-zh "
        "(2-32 lower-case letters, digits or dashes)."
    )


class SecretInput(forms.PasswordInput):
    """Never renders a value; shows a placeholder when a secret is stored."""

    def __init__(self, *, stored: bool = False) -> None:
        attrs = {"autocomplete": "new-password"}
        if stored:
            attrs["placeholder"] = "•••••••• stored — leave blank to keep"
        super().__init__(attrs=attrs, render_value=False)


class KeepitConnectionForm(forms.ModelForm[KeepitConnection]):
    keepit_url = forms.CharField(
        label="Keepit URL",
        required=False,
        help_text=(
            "Optional helper: paste the address of your Keepit account from the browser, "
            "e.g. https://us-dc.keepit.com/users/y17hbi-i620pk-80q5x2, to fill Region and "
            "Account GUID."
        ),
        widget=forms.TextInput(attrs={"placeholder": "https://us-dc.keepit.com/users/…"}),
    )
    username = forms.CharField(
        label="Username",
        required=False,
        help_text="The Keepit login (usually an e-mail address; case-sensitive).",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    password = forms.CharField(label="Password", required=False, strip=False)
    clear_password = forms.BooleanField(label="Clear the stored password", required=False)
    region = forms.CharField(
        label="Region",
        required=False,
        help_text=(
            "The first part of your Keepit address: https://[region].keepit.com/… — one of "
            + ", ".join(f"{code} ({name})" for code, name in KNOWN_REGIONS.items())
            + ". An account lives in exactly one region; for parent accounts in two regions "
            "add two connections."
        ),
        widget=forms.TextInput(attrs={"list": "keepit-regions", "autocomplete": "off"}),
    )
    account_guid = forms.CharField(
        label="Account GUID",
        required=False,
        help_text=(
            "What follows /users/ in your Keepit address "
            "(https://us-dc.keepit.com/users/[account-guid]). Use your MSP (parent) account: "
            "every customer account under it is synced."
        ),
    )
    token_login = forms.CharField(
        label="API token login",
        required=False,
        help_text=(
            "Recommended: a dedicated API token with read-only rights. Create it in Keepit "
            "under your account profile (lower left) > User info > Security > Secondary "
            "tokens > + Add API token; Keepit shows its login and password once. When both "
            "API token fields are filled they are used instead of Username and Password."
        ),
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    token_password = forms.CharField(label="API token password", required=False, strip=False)
    clear_token_password = forms.BooleanField(
        label="Clear the stored API token password", required=False
    )

    class Meta:
        model = KeepitConnection
        fields = ["name", "enabled"]
        labels = {"name": "Name", "enabled": "Enabled"}
        help_texts = {
            "name": "A name for this connection, e.g. \u201cKeepit US\u201d.",
            "enabled": "When on, Vectis syncs this connection every few minutes.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        instance = self.instance
        stored = instance.secrets if instance.pk else {}
        self.stored_secrets: dict[str, str] = stored
        config = instance.config if instance.pk else {}
        for name in ("region", "account_guid", "username", "token_login"):
            self.fields[name].initial = config.get(name, "")
        for name in SECRET_FIELDS:
            has = bool(stored.get(name))
            self.fields[name].widget = SecretInput(stored=has)
            if has:
                self.fields[
                    name
                ].help_text = "A value is stored (encrypted). Leave blank to keep it."
            else:
                self.fields[name].help_text = "Stored encrypted; never shown again."
        if not stored.get("password"):
            del self.fields["clear_password"]
        if not stored.get("token_password"):
            del self.fields["clear_token_password"]

    def clean_region(self) -> str:
        value: str = self.cleaned_data.get("region", "")
        return validate_region_value(value) if value.strip() else ""

    def clean_account_guid(self) -> str:
        value: str = self.cleaned_data.get("account_guid", "").strip()
        if value and not ACCOUNT_GUID_RE.fullmatch(value):
            raise forms.ValidationError(
                "An account GUID contains only letters, digits, '-' and '_', as in "
                "y17hbi-i620pk-80q5x2."
            )
        return value

    def _fill_from_url(self, data: dict[str, Any]) -> None:
        url = (data.get("keepit_url") or "").strip()
        if not url:
            return
        try:
            region, guid = parse_keepit_url(url)
        except forms.ValidationError as exc:
            self.add_error("keepit_url", exc)
            return
        # The URL fills what the admin left empty; typed values are not overwritten.
        if not data.get("region") and "region" not in self.errors:
            data["region"] = region
        if not data.get("account_guid") and "account_guid" not in self.errors:
            data["account_guid"] = guid

    @sensitive_variables("data", "secrets")
    def effective_secrets(self) -> dict[str, str]:
        """Stored secrets, replaced by typed ones, minus the ones asked to be cleared."""
        data = self.cleaned_data
        secrets = dict(self.stored_secrets)
        for name in SECRET_FIELDS:
            if data.get(f"clear_{name}"):
                secrets.pop(name, None)
            if data.get(name):
                secrets[name] = data[name]
        return {key: value for key, value in secrets.items() if value}

    @sensitive_variables("data", "secrets")
    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        self._fill_from_url(data)
        if not data.get("region") and "region" not in self.errors:
            self.add_error("region", "Enter the region, e.g. us-dc (or paste the Keepit URL).")
        if not data.get("account_guid") and "account_guid" not in self.errors:
            self.add_error("account_guid", "Enter the account GUID (or paste the Keepit URL).")
        self._refuse_duplicate(data)
        secrets = self.effective_secrets()
        username = data.get("username", "").strip()
        token_login = data.get("token_login", "").strip()
        data["username"], data["token_login"] = username, token_login
        has_token_password = bool(secrets.get("token_password"))
        if bool(token_login) != has_token_password:
            missing = "API token password" if token_login else "API token login"
            raise forms.ValidationError(
                f"Fill both API token fields or neither: {missing} is missing."
            )
        has_token = bool(token_login and has_token_password)
        if not has_token and not (username and secrets.get("password")):
            raise forms.ValidationError(
                "Fill Username and Password, or both API token fields (recommended)."
            )
        return data

    def _refuse_duplicate(self, data: dict[str, Any]) -> None:
        """One Keepit account, one connection: a second one would double every connector,
        alert and e-mail."""
        region, guid = data.get("region"), data.get("account_guid")
        if not region or not guid:
            return
        # Keepit ids are compared case-insensitively (its own module lower-cases them).
        same = KeepitConnection.objects.filter(
            config__region__iexact=region, config__account_guid__iexact=guid
        ).exclude(pk=self.instance.pk)
        existing = same.order_by("id").first()
        if existing is not None:
            raise forms.ValidationError(
                f"Keepit account {guid} in region {region} is already connected as "
                f"“{existing.name}” (ID {existing.pk}). Edit that connection instead "
                "of adding a second one: two would sync every connector twice."
            )

    def config_values(self) -> dict[str, str]:
        data = self.cleaned_data
        return {
            "region": data["region"],
            "account_guid": data["account_guid"],
            "username": data.get("username", ""),
            "token_login": data.get("token_login", ""),
        }

    def save(self, commit: bool = True) -> KeepitConnection:
        connection = super().save(commit=False)
        previous = dict(connection.config) if connection.pk else {}
        connection.config = self.config_values()
        connection.set_secrets(self.effective_secrets())
        if connection.enabled and ("enabled" in self.changed_data or previous != connection.config):
            connection.next_sync_at = None  # due at the next beat tick
        if commit:
            connection.save()
        return connection

    def changed_fields(self) -> list[str]:
        """Labels of what changed, for the admin history; never values."""
        labels = []
        for name in self.changed_data:
            if name in SECRET_FIELDS and not self.cleaned_data.get(name):
                continue
            if name.startswith("clear_") and not self.cleaned_data.get(name):
                continue
            if name == "keepit_url":
                continue
            labels.append(str(self.fields[name].label))
        return labels
