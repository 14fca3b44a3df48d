"""Recompute every customer's matching key with the transliterating normaliser.

The earlier key dropped letters such as ø, æ, ł and đ ("Møller A/S" -> "m ller"), so
Danish, Norwegian, Polish and Croatian customers failed to match their Keepit accounts
or collided. Names are untouched; only `normalized_name` is rewritten, in batches.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

BATCH = 2000


def renormalize(apps: Any, schema_editor: Any) -> None:
    # The current normaliser on purpose: the key must match what syncs compute from now on.
    from customers.names import normalize_company_name

    Customer = apps.get_model("customers", "Customer")
    changed = []
    for customer in Customer.objects.only("id", "name", "normalized_name").iterator(BATCH):
        key = normalize_company_name(customer.name)
        if key != customer.normalized_name:
            customer.normalized_name = key
            changed.append(customer)
        if len(changed) >= BATCH:
            Customer.objects.bulk_update(changed, ["normalized_name"])
            changed = []
    if changed:
        Customer.objects.bulk_update(changed, ["normalized_name"])


class Migration(migrations.Migration):
    dependencies = [("customers", "0001_initial")]

    operations = [migrations.RunPython(renormalize, migrations.RunPython.noop, elidable=True)]
