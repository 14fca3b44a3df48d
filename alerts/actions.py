"""Acting on an alert from the message that tells of it: Acknowledge and Snooze-for-4-
hours links in every e-mail, Teams, Slack and webhook message.

A link carries a signed token (Django's signing, salted for this one use) naming the
alert and the action; it expires after `ACTION_LINK_DAYS` days. Following it never acts:
it leads to a confirmation page behind the sign-in (so a chat client's link preview,
which fetches every URL it sees, changes nothing), and the button there does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.urls import reverse

from .models import Alert

ACTION_LINK_DAYS = 7
SNOOZE = timedelta(hours=4)
_SALT = "vectis.alerts.action-link"
ACTIONS = {
    "acknowledge": "Acknowledge",
    "snooze": "Snooze for 4 hours",
}


class BadActionLink(Exception):
    """The link is not one Vectis made, is for something else, or has expired."""


@dataclass(frozen=True)
class ActionLink:
    alert_id: int
    action: str


def action_token(alert_id: int, action: str) -> str:
    if action not in ACTIONS:
        raise ValueError(f"unknown alert action {action!r}")
    return signing.dumps({"alert": alert_id, "do": action}, salt=_SALT, compress=True)


def action_url(alert: Alert, action: str) -> str:
    base = settings.VECTIS_BASE_URL.rstrip("/")
    return base + reverse("alert_action", args=[action_token(alert.pk, action)])


def read_action_token(token: str) -> ActionLink:
    try:
        data = signing.loads(token, salt=_SALT, max_age=timedelta(days=ACTION_LINK_DAYS))
    except signing.SignatureExpired:
        raise BadActionLink(
            f"This link has expired (links in alert messages work for {ACTION_LINK_DAYS} "
            "days). Open the alert in Vectis to act on it."
        ) from None
    except signing.BadSignature:
        raise BadActionLink("This link is not a valid Vectis alert link.") from None
    if not isinstance(data, dict) or data.get("do") not in ACTIONS:
        raise BadActionLink("This link is not a valid Vectis alert link.")
    return ActionLink(alert_id=int(data["alert"]), action=str(data["do"]))
