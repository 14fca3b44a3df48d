"""Delivering a message of the delivery log to a channel: Microsoft Teams, Slack and the
other services apprise knows by URL, a generic webhook, or e-mail addresses.

Every transport says, when it fails, whether trying again can help (`DeliveryFailed`):

- **generic webhook**: we POST the message's JSON (alerts/payloads.py) ourselves, signed
  with HMAC-SHA256 over "<timestamp>.<body>" with the channel's secret
  (`X-Vectis-Signature: sha256=<hex>`, `X-Vectis-Timestamp`, `X-Vectis-Event`,
  `X-Vectis-Delivery`). 2xx is delivered; 408, 425, 429, 5xx and network errors are
  temporary; any other answer (404 Not Found, 410 Gone: the hook was removed) is
  permanent;
- **Teams, Slack, other**: apprise builds the service's own message (an adaptive card,
  Slack blocks, …) and posts it; its answer's HTTP status, which apprise logs, decides
  the same way (no status: a network error, temporary);
- **e-mail**: Django's mail framework, as the rules' plain recipients (alerts/transports.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from secrets import token_urlsafe

import apprise
import requests
from apprise.plugins.base import NotifyBase
from apprise.plugins.workflows import NotifyWorkflows
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from .models import AlertNotification, NotificationChannel
from .transports import DeliveryFailed, EmailTransport

# Answers that say "not now" rather than "never".
TEMPORARY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
WEBHOOK_TIMEOUT = (5.0, 15.0)
_APPRISE_STATUS = re.compile(r"error=(\d{3})")
# Characters of message text sent to Teams, Slack and the other chat services.
CHAT_BODY_LIMIT = 20_000


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """What a receiver recomputes to trust a webhook: HMAC-SHA256 of
    "<X-Vectis-Timestamp>.<raw body>" with the channel's secret, hex, prefixed."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def _classify(status: int, what: str) -> DeliveryFailed:
    permanent = status not in TEMPORARY_STATUSES and not 200 <= status < 300
    return DeliveryFailed(f"{what} answered HTTP {status}", permanent=permanent)


class ChannelTransport:
    """Sends a delivery to its channel (one per message; chat services are cheap to
    connect, and a channel's failure must not touch the next one's)."""

    def __init__(self) -> None:
        self._email: EmailTransport | None = None

    def send(self, notification: AlertNotification) -> None:
        channel = notification.channel
        assert channel is not None
        if channel.kind == NotificationChannel.Kind.EMAIL:
            self._send_email(channel, notification)
        elif channel.kind == NotificationChannel.Kind.WEBHOOK:
            _send_webhook(channel, notification)
        else:
            _send_apprise(channel, notification)

    def _send_email(self, channel: NotificationChannel, notification: AlertNotification) -> None:
        if self._email is None:
            self._email = EmailTransport()
        self._email.send_to(channel.address_list, notification)

    def close(self) -> None:
        if self._email is not None:
            self._email.close()


@sensitive_variables("secrets", "url", "secret")
def _send_webhook(channel: NotificationChannel, notification: AlertNotification) -> None:
    secrets = channel.secrets()
    url, secret = secrets.get("url", ""), secrets.get("secret", "")
    body = json.dumps(notification.payload, sort_keys=True, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"Vectis/{settings.VECTIS_VERSION}",
        "X-Vectis-Event": notification.purpose,
        "X-Vectis-Delivery": str(notification.pk),
        "X-Vectis-Timestamp": timestamp,
        "X-Vectis-Signature": webhook_signature(secret, timestamp, body),
    }
    try:
        response = requests.post(
            url, data=body, headers=headers, timeout=WEBHOOK_TIMEOUT, allow_redirects=False
        )
    except requests.Timeout:
        raise DeliveryFailed("The webhook did not answer in time", permanent=False) from None
    except requests.RequestException as exc:
        raise DeliveryFailed(
            f"The webhook could not be reached ({type(exc).__name__})", permanent=False
        ) from None
    if not 200 <= response.status_code < 300:
        raise _classify(response.status_code, "The webhook")


@sensitive_variables("url")
def _send_apprise(channel: NotificationChannel, notification: AlertNotification) -> None:
    url = channel.secrets().get("url", "")
    label = channel.get_kind_display()
    plugin = service_for(url)
    if plugin is None:
        raise DeliveryFailed(
            f"The {label} address is not one apprise can use; enter it again", permanent=True
        )
    # Our message, nothing else: no apprise logo fetched from GitHub by every chat client,
    # no "Apprise" footer.
    for option in ("include_image", "include_footer"):
        if hasattr(plugin, option):
            setattr(plugin, option, False)
    service = apprise.Apprise()
    service.add(plugin)
    with apprise.LogCapture(level=apprise.logging.WARNING) as log:  # type: ignore[no-untyped-call]
        delivered = service.notify(
            title=notification.subject, body=chat_body(notification.body_text)
        )
        said = log.getvalue()
    if delivered:
        return
    found = _APPRISE_STATUS.search(said)
    if found:
        raise _classify(int(found.group(1)), label)
    raise DeliveryFailed(f"{label} could not be reached", permanent=False)


def chat_body(text: str, limit: int = CHAT_BODY_LIMIT) -> str:
    """A message short enough for a chat service: cut at a line, with a sentence that
    says so and where the rest is (a Teams workflow refuses about 28 KB; a refusal would
    lose the whole message)."""
    if len(text) <= limit:
        return text
    base = settings.VECTIS_BASE_URL.rstrip("/")
    tail = (
        f"\n… shortened for chat ({len(text) - limit:,} more characters). Every open alert: "
        f"{base}/admin/alerts/alert/"
    )
    cut = text.rfind("\n", 0, limit - len(tail))
    return text[: cut if cut > 0 else limit - len(tail)] + tail


def describe_target(channel: NotificationChannel) -> str:
    """What the admin may see of a channel's target: e-mail addresses in full; of a
    webhook its host; of a Teams workflow its host; of any other service only its name
    (in many apprise URLs the host part is the token)."""
    if channel.kind == NotificationChannel.Kind.EMAIL:
        return ", ".join(channel.address_list)
    if not channel.has_url:
        return ""
    url = channel.secrets().get("url", "")
    if channel.kind == NotificationChannel.Kind.WEBHOOK:
        match = re.match(r"^(https?)://([^/?#@]*@)?([^/?#:]+)", url, re.IGNORECASE)
        return f"{match.group(1)}://{match.group(3)}/… (stored)" if match else "(stored)"
    plugin = service_for(url)
    if plugin is None:
        return "(stored)"
    if isinstance(plugin, NotifyWorkflows):
        return f"{plugin.service_name} at {plugin.host} (stored)"
    return f"{plugin.service_name} (stored)"


def service_for(url: str) -> NotifyBase | None:
    """The apprise service a URL names (None: apprise does not know it)."""
    plugin = apprise.Apprise.instantiate(url)
    return plugin if isinstance(plugin, NotifyBase) else None


def secret_for_new_webhook() -> str:
    """A signing secret for a new webhook channel (shown once, then stored encrypted)."""
    return token_urlsafe(32)
