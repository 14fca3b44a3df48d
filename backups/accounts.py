"""Account links: which PSA customer a vendor account belongs to. One policy, used by the
sync (automatic matching) and by the account-link review (manual decisions).

Automatic matching, in order: an account keeps its link; otherwise it links to the one
customer with the same normalised company name (customers/names.py), is flagged
ambiguous when there are several (never guessed), or gets a new customer (one per
normalised name, shared by every account that carries it). Syncs never rename or delete
a customer and never change a manual link or an exclusion.

Manual decisions (the review): link to a customer (a manual link), create a customer for
the account, exclude it (its connectors leave the dashboard and the alert rules, its
open alerts end quietly), include it again (the next sync matches it). Linking moves the
account's connectors and audit events to the customer at once, set-based.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import transaction

from customers.models import Customer
from customers.names import normalize_company_name
from integrations.models import Connection
from integrations.sql import update_rows

from .models import AccountLink, BackupAuditEvent, BackupConnector
from .signals import account_excluded
from .snapshot import AccountSnapshot

BATCH_SIZE = 1000
# last_seen_at is refreshed at most this often when nothing else changes, so a sync
# against unchanged data writes no row.
SEEN_RESOLUTION = timedelta(hours=24)


@dataclass
class LinkResult:
    """What automatic matching did in one sync."""

    links: dict[str, AccountLink]  # external id -> link, every account of the connection
    moved: dict[str, int | None] = field(default_factory=dict)  # accounts whose customer changed
    linked: int = 0
    customers_created: int = 0
    ambiguous: int = 0
    removed: int = 0


def _state(link: AccountLink) -> tuple[Any, ...]:
    return (
        link.company_name,
        link.contact_name,
        link.email,
        link.customer_id,
        link.method,
        link.state,
        link.removed_at,
        link.deletion_scheduled_at,
    )


def match_accounts(
    connection: Connection, accounts: Sequence[AccountSnapshot], *, now: datetime
) -> LinkResult:
    """Create and update the links of the accounts the vendor listed, in bulk; mark the
    ones it no longer lists removed. Only rows that differ are written."""
    links = {link.external_id: link for link in AccountLink.objects.filter(connection=connection)}
    seen = {account.external_id for account in accounts}
    # Accounts that need a customer: new ones, and unlinked/ambiguous ones (a customer may
    # have been added or renamed since). Manual and excluded: never.
    wanted: dict[str, AccountSnapshot] = {}
    for account in accounts:
        link = links.get(account.external_id)
        if link is None or link.state in (AccountLink.State.UNLINKED, AccountLink.State.AMBIGUOUS):
            wanted[account.external_id] = account
    names = {normalize_company_name(a.display_name) for a in wanted.values()}
    candidates: dict[str, list[Customer]] = {}
    for customer in Customer.objects.filter(normalized_name__in=names).order_by("id"):
        candidates.setdefault(customer.normalized_name, []).append(customer)
    to_create: dict[str, Customer] = {}
    for account in wanted.values():
        key = normalize_company_name(account.display_name)
        if key not in candidates and key not in to_create:
            to_create[key] = Customer(name=account.display_name[:255], normalized_name=key)
    result = LinkResult(links={})
    if to_create:
        Customer.objects.bulk_create(list(to_create.values()), batch_size=BATCH_SIZE)
        result.customers_created = len(to_create)

    changed: list[AccountLink] = []
    seen_again: list[AccountLink] = []
    created: list[AccountLink] = []
    for account in accounts:
        link = links.get(account.external_id)
        fresh = link is None
        if link is None:
            link = AccountLink(
                connection=connection,
                external_id=account.external_id,
                first_seen_at=now,
                last_seen_at=now,
            )
        before = _state(link)
        link.company_name = account.company_name[:255]
        link.contact_name = account.contact_name[:255]
        link.email = account.email[:255]
        link.removed_at = None
        link.deletion_scheduled_at = account.deletion_scheduled_at
        if account.external_id in wanted:
            key = normalize_company_name(account.display_name)
            matches = candidates.get(key, [])
            if len(matches) == 1:
                customer = matches[0]
                link.customer = customer
                link.state = AccountLink.State.LINKED
                link.method = (
                    AccountLink.Method.EXACT
                    if customer.name.strip().casefold() == account.display_name.casefold()
                    else AccountLink.Method.NORMALISED
                )
                result.linked += 1
            elif len(matches) > 1:
                link.customer = None
                link.state = AccountLink.State.AMBIGUOUS
                link.method = ""
            else:
                link.customer = to_create[key]
                link.state = AccountLink.State.LINKED
                link.method = AccountLink.Method.CREATED
        if link.state == AccountLink.State.AMBIGUOUS:
            result.ambiguous += 1
        if fresh:
            created.append(link)
            continue
        if link.customer_id != before[3]:
            result.moved[link.external_id] = link.customer_id
        if _state(link) != before:
            # update_rows does not run auto_now; stamp what changed ourselves.
            link.last_seen_at = link.updated_at = now
            changed.append(link)
        elif now - link.last_seen_at >= SEEN_RESOLUTION:
            # Only seen again (the daily refresh): written apart, by these two columns
            # alone, so it marks nothing the dashboard counts (vectis.fleet_tiles).
            link.last_seen_at = link.updated_at = now
            seen_again.append(link)
    for link in links.values():
        if link.external_id not in seen and link.removed_at is None:
            link.removed_at = link.updated_at = now
            changed.append(link)
            result.removed += 1
    AccountLink.objects.bulk_create(created, batch_size=BATCH_SIZE)
    update_rows(
        AccountLink,
        changed,
        [
            "company_name",
            "contact_name",
            "email",
            "customer",
            "method",
            "state",
            "last_seen_at",
            "removed_at",
            "deletion_scheduled_at",
            "updated_at",
        ],
    )
    update_rows(AccountLink, seen_again, ["last_seen_at", "updated_at"])
    result.links = {
        link.external_id: link for link in AccountLink.objects.filter(connection=connection)
    }
    return result


# --- manual decisions (the account-link review) ------------------------------------------------


def _move_account_data(link: AccountLink, customer_id: int | None) -> None:
    """The account's connectors and audit events follow its link (index
    audit_account_idx serves the events)."""
    BackupConnector.objects.filter(account_link=link).update(customer_id=customer_id)
    BackupAuditEvent.objects.filter(
        connection_id=link.connection_id, account_external_id=link.external_id
    ).update(customer_id=customer_id)


@transaction.atomic
def link_account(link: AccountLink, customer: Customer) -> AccountLink:
    """Link (or relink) a vendor account to a customer by hand; no sync changes it."""
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
    it is included again; its open alerts end at once, quietly (`account_excluded`)."""
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


# --- suggestions for the review --------------------------------------------------------------


@dataclass(frozen=True)
class Suggestion:
    customer_id: int
    name: str
    score: int  # 0-100
    why: str


def _trigrams(text: str) -> set[str]:
    padded = f"  {text} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


def suggest_customers(links: Sequence[AccountLink]) -> dict[int, list[Suggestion]]:
    """Customers each account may belong to: the same normalised name (100), then close
    names scored with difflib — but only for the few names that share the most
    distinctive trigrams with the account's (scoring every customer for every account
    costs seconds with thousands of customers). One query of customers in all."""
    by_normalized: dict[str, list[tuple[int, str]]] = {}
    for pk, name, normalized in Customer.objects.values_list("pk", "name", "normalized_name"):
        by_normalized.setdefault(normalized, []).append((pk, name))
    names = list(by_normalized)
    postings: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        for trigram in _trigrams(name):
            postings.setdefault(trigram, []).append(index)
    too_common = max(50, len(names) // 5)
    result: dict[int, list[Suggestion]] = {}
    for link in links:
        key = normalize_company_name(link.display_name)
        found = [
            Suggestion(pk, name, 100, "same normalised name")
            for pk, name in by_normalized.get(key, [])
        ]
        shared: Counter[int] = Counter()
        for trigram in _trigrams(key):
            posting = postings.get(trigram, [])
            if len(posting) <= too_common:
                shared.update(posting)
        scored = []
        for index, _count in shared.most_common(20):
            close = names[index]
            if close == key:
                continue
            ratio = difflib.SequenceMatcher(None, key, close).ratio()
            if ratio >= 0.6:
                scored.append((ratio, close))
        for ratio, close in sorted(scored, reverse=True)[:5]:
            found += [
                Suggestion(pk, name, round(100 * ratio), "similar name")
                for pk, name in by_normalized[close]
            ]
        result[link.pk] = found[:8]
    return result
