"""What the alerts app does when other apps tell it something (connected in apps.py)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from backups.models import AccountLink

from .lifecycle import resolve_for_excluded_account
from .tasks import evaluate_alerts


def evaluate_after_sync(sender: Any, **kwargs: Any) -> None:
    """A finished sync (sent after commit) queues an evaluation of the rules."""
    evaluate_alerts.delay()


def end_excluded_alerts(sender: Any, *, link: AccountLink, by: str = "", **kwargs: Any) -> None:
    """An excluded account's open alerts end at once, without a "resolved" e-mail."""
    resolve_for_excluded_account(link, now=timezone.now(), by=by)
