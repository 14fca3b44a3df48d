"""The PSA's customers (table `customers`)."""

from __future__ import annotations

from django.db import models

from .names import normalize_company_name


class Customer(models.Model):
    """A customer of the MSP. Syncs link to customers and create them; they never rename
    or delete one."""

    name = models.CharField(max_length=255)
    # Matching key for vendors' company names (see customers/names.py); kept in step by save().
    normalized_name = models.CharField(max_length=255, editable=False, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "customers"
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: object, **kwargs: object) -> None:
        self.normalized_name = normalize_company_name(self.name)
        super().save(*args, **kwargs)  # type: ignore[arg-type]
