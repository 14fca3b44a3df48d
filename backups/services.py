"""Changes the account-link review makes: manual links, new customers, exclusions.

A manual link is never changed by a sync (keepit/sync.py skips it). Linking moves the
account's connectors and audit events to the customer at once, set-based, so pages do
not wait for the next sync. Excluding an account takes its connectors out of the
dashboard and the alert rules; its open alerts end quietly (see `account_excluded`).
"""

from __future__ import annotations

from functools import partial

from django.db import transaction

from customers.models import Customer
from integrations.models import AccountLink

from .models import BackupAuditEvent, BackupConnector
from .signals import account_excluded


def _move_account_data(link: AccountLink, customer_id: int | None) -> None:
    BackupConnector.objects.filter(account_link=link).update(customer_id=customer_id)
    BackupAuditEvent.objects.filter(
        connection_id=link.connection_id, account_external_id=link.external_id
    ).update(customer_id=customer_id)


@transaction.atomic
def link_account(link: AccountLink, customer: Customer) -> AccountLink:
    """Link (or relink) a vendor account to a customer by hand."""
    link.customer = customer
    link.method = AccountLink.Method.MANUAL
    link.state = AccountLink.State.LINKED
    link.save(update_fields=["customer", "method", "state", "updated_at"])
    _move_account_data(link, customer.pk)
    return link


@transaction.atomic
def create_customer_for_account(link: AccountLink) -> Customer:
    """A new customer named after the account, manually linked to it."""
    customer = Customer.objects.create(name=link.display_name[:255])
    link_account(link, customer)
    return customer


@transaction.atomic
def exclude_account(link: AccountLink, *, by: str = "") -> AccountLink:
    """Keep the account's data out of customers, the dashboard and the alert rules until
    it is included again."""
    link.customer = None
    link.method = ""
    link.state = AccountLink.State.EXCLUDED
    link.save(update_fields=["customer", "method", "state", "updated_at"])
    _move_account_data(link, None)
    transaction.on_commit(partial(account_excluded.send, sender=AccountLink, link=link, by=by))
    return link


@transaction.atomic
def include_account(link: AccountLink) -> AccountLink:
    """Back to unlinked: the next sync matches it again."""
    link.state = AccountLink.State.UNLINKED
    link.method = ""
    link.save(update_fields=["state", "method", "updated_at"])
    return link
