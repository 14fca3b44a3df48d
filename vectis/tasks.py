"""Celery tasks of the project package: history pruning (vectis/retention.py)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone

from . import retention

logger = logging.getLogger(__name__)


@shared_task(name="vectis.tasks.prune_history")
def prune_history() -> dict[str, int]:
    """Beat entry "prune-history": delete history past its retention, in batches."""
    pruned = retention.prune_history(now=timezone.now())
    if any(pruned.values()):
        logger.info("Pruned history: %s", pruned)
    return pruned
