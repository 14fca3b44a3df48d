"""Keepit's view of the integrations framework's data (no tables of its own).

`KeepitConnection` is a proxy of `integrations.Connection` limited to Keepit, so the
admin can offer "Keepit connections" with Keepit's form and permissions while the
framework stays vendor-neutral.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from integrations.models import Connection

PROVIDER_KIND = "keepit"


class KeepitConnectionManager(models.Manager["KeepitConnection"]):
    def get_queryset(self) -> models.QuerySet[KeepitConnection]:
        return super().get_queryset().filter(provider=PROVIDER_KIND)


class KeepitConnection(Connection):
    objects = KeepitConnectionManager()  # type: ignore[misc]

    class Meta:
        proxy = True
        verbose_name = "Keepit connection"
        verbose_name_plural = "Keepit connections"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.provider = PROVIDER_KIND
        super().save(*args, **kwargs)

    @property
    def region(self) -> str:
        return str(self.config.get("region", ""))

    @property
    def account_guid(self) -> str:
        return str(self.config.get("account_guid", ""))
