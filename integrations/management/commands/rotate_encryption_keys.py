"""Re-encrypt every stored credential with the first key of VECTIS_ENCRYPTION_KEYS."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from integrations.crypto import SecretDecryptionError, rotate_token
from integrations.models import Connection


class Command(BaseCommand):
    help = (
        "Re-encrypt all stored credentials with the first key in VECTIS_ENCRYPTION_KEYS. "
        "Rotation: generate a key (manage.py generate_encryption_key), put it first in "
        "VECTIS_ENCRYPTION_KEYS keeping the old keys after it, restart Vectis, run this "
        "command, then remove the old keys."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            connections = list(
                Connection.objects.select_for_update().exclude(secrets_ciphertext="")
            )
            try:
                for connection in connections:
                    connection.secrets_ciphertext = rotate_token(connection.secrets_ciphertext)
            except SecretDecryptionError as exc:
                raise CommandError(
                    f"{exc} Nothing was changed: add the key these were encrypted with to "
                    "VECTIS_ENCRYPTION_KEYS (after the new one) and run again."
                ) from None
            Connection.objects.bulk_update(connections, ["secrets_ciphertext"], batch_size=500)
        self.stdout.write(
            self.style.SUCCESS(f"Re-encrypted the credentials of {len(connections)} connection(s).")
        )
