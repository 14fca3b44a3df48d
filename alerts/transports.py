"""Delivering a message from the delivery log. E-mail today; a channel is a `Transport`
that sends one message and says, when it fails, whether trying again can help.

`DeliveryFailed(permanent=True)`: the other side refused this very message for good
(an unknown recipient, refused content) — the delivery fails at once. Anything else
(network errors, busy servers, and refusals about our own configuration, such as a
wrong SMTP password, which would otherwise fail every message for good) is temporary:
the delivery log retries with backoff up to a cap.
"""

from __future__ import annotations

import smtplib
from typing import Any, Protocol

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

from .models import AlertNotification


class DeliveryFailed(Exception):
    def __init__(self, sentence: str, *, permanent: bool) -> None:
        super().__init__(sentence)
        self.sentence = sentence
        self.permanent = permanent


class Transport(Protocol):
    def send(self, notification: AlertNotification) -> None:
        """Deliver one message or raise DeliveryFailed."""
        ...

    def close(self) -> None: ...


def _text(message: Any) -> str:
    return message.decode(errors="replace") if isinstance(message, bytes) else str(message)


def smtp_failure(exc: Exception) -> DeliveryFailed:
    """What an SMTP failure means for this message."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        answers = list(exc.recipients.values())
        text = "; ".join(f"{code} {_text(message)}" for code, message in answers)
        permanent = bool(answers) and all(code >= 500 for code, _message in answers)
        return DeliveryFailed(f"The mail server refused the recipient: {text}", permanent=permanent)
    if isinstance(exc, smtplib.SMTPResponseException):
        permanent = isinstance(exc, smtplib.SMTPDataError) and exc.smtp_code >= 500
        return DeliveryFailed(
            f"The mail server answered {exc.smtp_code} {_text(exc.smtp_error)}",
            permanent=permanent,
        )
    return DeliveryFailed(f"{type(exc).__name__}: {exc}", permanent=False)


class EmailTransport:
    """Alert e-mails through Django's mail framework (`EMAIL_URL`), one SMTP session
    for a run of messages; a failed message starts the next on a fresh session."""

    def __init__(self) -> None:
        self._connection = get_connection()

    def send(self, notification: AlertNotification) -> None:
        self.send_to([notification.recipient], notification)

    def send_to(self, addresses: list[str], notification: AlertNotification) -> None:
        """The message to these addresses (an e-mail channel's)."""
        message = EmailMultiAlternatives(
            subject=notification.subject,
            body=notification.body_text,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=addresses,
            connection=self._connection,
        )
        message.attach_alternative(notification.body_html, "text/html")
        if notification.purpose == AlertNotification.Purpose.REPORT:
            # Only reports carry files: other messages cost no query for them.
            for attachment in notification.attachments.all():
                message.attach(
                    attachment.filename, bytes(attachment.content), attachment.content_type
                )
        try:
            message.send()
        except Exception as exc:  # SMTP and socket errors alike
            self._connection.close()
            raise smtp_failure(exc) from exc

    def close(self) -> None:
        self._connection.close()
