"""The Celery app: configuration from Django settings (`CELERY_*`), tasks autodiscovered.

Tasks are thin (ids in, one service call, a small summary out); the beat schedule is the
reviewed `CELERY_BEAT_SCHEDULE` dict in settings.
"""

from __future__ import annotations

import os
from logging.config import dictConfig
from typing import Any

from celery import Celery
from celery.signals import setup_logging
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vectis.settings")

app = Celery("vectis")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _use_django_logging(**kwargs: Any) -> None:
    """Let Django's LOGGING configure the worker instead of Celery's own handlers."""
    dictConfig(settings.LOGGING)


@app.task(name="vectis.ping")
def ping() -> str:
    """Round-trip check for the broker and a worker (used by tests and operators)."""
    return "pong"
