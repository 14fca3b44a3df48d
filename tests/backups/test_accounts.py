"""Account links: one policy (backups/accounts.py) and the review that applies it (the
account-link admin)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from pytest_django.fixtures import Settings

from backups.accounts import suggest_customers
from backups.models import AccountLink, BackupConnector
from customers.models import Customer
from integrations.models import Connection
from keepit_sandbox import KeepitSandbox
from tests.conftest import connect, sync
from tests.factories import AccountLinkFactory, CustomerFactory

pytestmark = pytest.mark.django_db

REVIEW = "/admin/backups/accountlink/"


@pytest.fixture
def admin_client(client: Client, admin_user: User) -> Client:
    client.force_login(admin_user)
    return client


@pytest.fixture
def twins(sandbox: KeepitSandbox, settings: Settings) -> AccountLink:
    """Two customers with the same normalised name: their account is ambiguous."""
    CustomerFactory.create(name="Northwind Traders Inc")
    CustomerFactory.create(name="Northwind Traders Ltd")
    assert sync(connect(sandbox, settings), sandbox).outcome == "succeeded"
    link = AccountLink.objects.filter(state=AccountLink.State.AMBIGUOUS).first()
    assert link is not None
    return link


def rows(html: str) -> str:
    return html.split('id="result_list"')[1].split("</table>")[0]


def test_the_review_opens_on_the_accounts_to_review_with_suggestions(
    admin_client: Client, twins: AccountLink
) -> None:
    html = admin_client.get(REVIEW).content.decode()
    listed = rows(html)
    assert f'data-account="{twins.external_id}"' in listed
    assert "(100%, same normalised name)" in listed
    linked = AccountLink.objects.filter(state=AccountLink.State.LINKED).first()
    assert linked is not None
    assert f'data-account="{linked.external_id}"' not in listed
    assert "To review (" in html
    on_linked = rows(admin_client.get(REVIEW + "?review=linked").content.decode())
    assert f'data-account="{linked.external_id}"' in on_linked
    assert f'data-account="{twins.external_id}"' not in on_linked


def test_one_click_links_to_a_suggestion_and_the_next_sync_keeps_it(
    admin_client: Client, twins: AccountLink, sandbox: KeepitSandbox
) -> None:
    chosen = Customer.objects.get(name="Northwind Traders Ltd")
    response = admin_client.post(f"{REVIEW}{twins.pk}/link/", {"customer": chosen.pk})
    assert response.status_code == 302
    assert response["Location"] == REVIEW
    twins.refresh_from_db()
    assert (twins.customer_id, twins.method) == (chosen.pk, AccountLink.Method.MANUAL)
    connectors = BackupConnector.objects.filter(account_link=twins)
    assert connectors.exists()
    assert set(connectors.values_list("customer_id", flat=True)) == {chosen.pk}
    sandbox.advance(timedelta(minutes=15))
    sync(Connection.objects.get(), sandbox)
    twins.refresh_from_db()
    assert (twins.customer_id, twins.method) == (chosen.pk, AccountLink.Method.MANUAL)


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/phish", "//evil.example/x", "javascript:alert(1)"],
)
def test_one_click_links_never_redirect_off_the_site(
    admin_client: Client, twins: AccountLink, target: str
) -> None:
    chosen = Customer.objects.get(name="Northwind Traders Ltd")
    response = admin_client.post(f"{REVIEW}{twins.pk}/link/?next={target}", {"customer": chosen.pk})
    assert response["Location"] == REVIEW
    ok = admin_client.post(
        f"{REVIEW}{twins.pk}/link/?next={REVIEW}%3Freview%3Dlinked", {"customer": chosen.pk}
    )
    assert ok["Location"] == REVIEW + "?review=linked"


def test_the_link_action_links_many_accounts_to_a_customer_chosen_by_autocomplete(
    admin_client: Client, twins: AccountLink
) -> None:
    chosen = Customer.objects.get(name="Northwind Traders Inc")
    others = list(AccountLink.objects.filter(state=AccountLink.State.LINKED)[:2])
    selected = [twins.pk, *(link.pk for link in others)]
    everything = REVIEW + "?review=all"  # actions apply to the rows the filter shows
    form = admin_client.post(everything, {"action": "link_action", "_selected_action": selected})
    page = form.content.decode()
    assert "admin-autocomplete" in page  # the customer is searched, not scrolled for
    admin_client.post(
        everything,
        {
            "action": "link_action",
            "_selected_action": selected,
            "apply": "1",
            "customer": chosen.pk,
        },
    )
    for link in AccountLink.objects.filter(pk__in=selected):
        assert (link.customer_id, link.method) == (chosen.pk, AccountLink.Method.MANUAL)
    found = admin_client.get(
        "/admin/autocomplete/",
        {
            "app_label": "backups",
            "model_name": "accountlink",
            "field_name": "customer",
            "term": "north",
        },
    ).json()
    assert {r["text"] for r in found["results"]} >= {
        "Northwind Traders Inc",
        "Northwind Traders Ltd",
    }


def test_exclude_and_include_again(
    admin_client: Client, twins: AccountLink, sandbox: KeepitSandbox
) -> None:
    link = AccountLink.objects.filter(state=AccountLink.State.LINKED).first()
    assert link is not None
    admin_client.post(
        REVIEW + "?review=linked", {"action": "exclude_action", "_selected_action": [link.pk]}
    )
    link.refresh_from_db()
    assert link.state == AccountLink.State.EXCLUDED
    assert not BackupConnector.objects.filter(account_link=link).exclude(customer=None).exists()
    sandbox.advance(timedelta(minutes=15))
    sync(Connection.objects.get(), sandbox)
    link.refresh_from_db()
    assert link.state == AccountLink.State.EXCLUDED  # a sync never changes an exclusion
    admin_client.post(
        REVIEW + "?review=excluded", {"action": "include_action", "_selected_action": [link.pk]}
    )
    sync(Connection.objects.get(), sandbox)
    link.refresh_from_db()
    assert link.state == AccountLink.State.LINKED


def test_create_a_customer_for_an_account(admin_client: Client, twins: AccountLink) -> None:
    admin_client.post(REVIEW, {"action": "create_customer_action", "_selected_action": [twins.pk]})
    twins.refresh_from_db()
    assert twins.method == AccountLink.Method.MANUAL
    assert twins.customer is not None
    assert twins.customer.name == twins.display_name


def test_the_old_review_address_leads_to_the_review(admin_client: Client) -> None:
    response = admin_client.get("/admin/account-links/review/?tab=excluded")
    assert response["Location"] == REVIEW + "?review=excluded"


def test_suggestions_are_the_same_name_then_similar_ones_with_a_score() -> None:
    exact = CustomerFactory.create(name="Contoso, Inc.")
    typo = CustomerFactory.create(name="Contosso Ltd")
    CustomerFactory.create(name="Fabrikam")
    CustomerFactory.create_batch(300)
    link = AccountLinkFactory.create(company_name="CONTOSO LLC", customer=None)
    found = suggest_customers([link])[link.pk]
    assert (found[0].customer_id, found[0].name, found[0].score, found[0].why) == (
        exact.pk,
        "Contoso, Inc.",
        100,
        "same normalised name",
    )
    assert (found[1].customer_id, found[1].why) == (typo.pk, "similar name")
    assert 80 <= found[1].score < 100
    assert all(s.name != "Fabrikam" for s in found)


def test_linking_an_account_moves_its_audit_events_through_their_index() -> None:
    """Linking an account to another customer moves its audit events with it. At 7 M
    events a scan for them took 1.5 s; index audit_account_idx (connection, account)
    finds them (10-22 ms at 7 M events in `make bench-pages`). The move's UPDATE must be
    planned on that index, and the events must follow."""
    from django.db import connection as database
    from django.test.utils import CaptureQueriesContext

    from backups.accounts import link_account
    from backups.models import BackupAuditEvent
    from tests.conftest import query_plan
    from tests.factories import AuditEventFactory

    link = AccountLinkFactory.create()
    other = AccountLinkFactory.create(connection=link.connection)
    for n in range(30):
        AuditEventFactory.create(
            connection=link.connection,
            account_external_id=(link if n % 3 else other).external_id,
        )
    new_customer = CustomerFactory.create(name="Northwind")
    with CaptureQueriesContext(database) as captured:
        link_account(link, new_customer)
    [move] = [
        q["sql"]
        for q in captured.captured_queries
        if q["sql"].startswith('UPDATE "backup_audit_events"')
    ]
    plan = query_plan(move, table="backup_audit_events", expensive="enable_seqscan")
    # Both of the index's columns bound (a read on the account alone walks the whole index).
    conditions = [line for line in plan.splitlines() if "Index Cond" in line]
    assert "audit_account_idx" in plan, plan
    assert any("connection_id =" in c and "account_external_id" in c for c in conditions), plan
    moved = BackupAuditEvent.objects.filter(customer=new_customer)
    assert moved.count() == 20
    assert set(moved.values_list("account_external_id", flat=True)) == {link.external_id}
