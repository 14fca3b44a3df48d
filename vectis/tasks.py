"""Celery tasks of the project package: history pruning (vectis/retention.py), the
fleet-wide tiles counted ahead of the views (vectis/fleet_tiles.py) and the monthly
reports (vectis/reports/schedule.py)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from . import retention
from .fleet_tiles import fleet_tiles
from .reports import schedule
from .reports.monthly import Month

logger = logging.getLogger(__name__)


@shared_task(name="vectis.tasks.prune_history")
def prune_history() -> dict[str, int]:
    """Beat entry "prune-history": delete history past its retention, in batches."""
    pruned = retention.prune_history(now=timezone.now())
    if any(pruned.values()):
        logger.info("Pruned history: %s", pruned)
    return pruned


@shared_task(name="vectis.tasks.keep_fleet_tiles")
def keep_fleet_tiles() -> int:
    """Beat entry "keep-fleet-tiles" (every minute): count the fleet-wide tiles again
    when what they count has changed (one query when it has not), so the next view of
    the dashboard, the admin home or the wallboard finds them kept instead of counting
    them itself. Useful with a cache the web processes share (CACHE_URL: Redis)."""
    return fleet_tiles(now=timezone.now()).health.total


@shared_task(name="vectis.tasks.plan_monthly_reports")
def plan_monthly_reports() -> dict[str, object]:
    """Beat entry "monthly-reports" (hourly): when last month's reports are due, one
    `send_monthly_report` task per customer still waiting for it."""
    month = schedule.due_month(timezone.now())
    if month is None:
        return {"month": None, "queued": 0}
    customers = schedule.customers_due(month)
    for customer_id in customers:
        # Planned again an hour later while some still wait, a customer may be queued
        # twice: the second task finds the month sent before making anything.
        send_monthly_report.delay(customer_id, month.key)
    if customers:
        logger.info("Queued the %s report of %d customers.", month.label, len(customers))
    return {"month": month.key, "queued": len(customers)}


@shared_task(
    name="vectis.tasks.send_monthly_report",
    # The database or the broker gone for a moment; a broken template or a missing
    # Pango is logged (ERROR) instead, and asked again by the next hour's plan.
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=60,
    max_retries=5,
)
def send_monthly_report(customer_id: int, month: str) -> str | None:
    """One customer's report into the delivery log (idempotent: see reports/schedule.py);
    a failure to make it is retried with backoff, then left to the next hour's plan."""
    made = schedule.send_report(customer_id, Month.parse(month), now=timezone.now())
    return made.filename if made else None
