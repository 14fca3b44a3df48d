"""Print a new Fernet key for VECTIS_ENCRYPTION_KEYS."""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Print a new Fernet key. To rotate, put it first in VECTIS_ENCRYPTION_KEYS (keep the "
        "old keys after it), restart, then run `manage.py rotate_encryption_keys`."
    )
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(Fernet.generate_key().decode())
