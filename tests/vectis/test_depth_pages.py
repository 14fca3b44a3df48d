"""What the screens show of Keepit's job data, seats, deletion dates and tokens: the
customer page's 28-day strip, success rate and seats, the dashboard's success-rate
column and account filters, the "How to fix" link, and the credential on the card and
the connection page."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from backups.models import BackupStatus
from integrations.models import Connection
from keepit.fixes import REAUTHENTICATE_M365
from keepit.models import KeepitConnection
from tests.factories import (
    AccountLinkFactory,
    ConnectorFactory,
    CustomerFactory,
    JobDayFactory,
    SeatFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client: Client, admin_user: User) -> Client:
    client.force_login(admin_user)
    return client


def cells(html: str) -> list[tuple[str, str]]:
    """(day, outcome) of every strip cell, in page order."""
    return re.findall(r'data-day="([0-9-]+)" data-outcome="([a-z_]+)"', html)


def test_the_customer_page_shows_each_connectors_28_day_strip_and_success_rate(
    admin_client: Client,
) -> None:
    today = timezone.now().date()
    customer = CustomerFactory.create(name="Contoso")
    link = AccountLinkFactory.create(customer=customer)
    connector = ConnectorFactory.create(
        customer=customer,
        account_link=link,
        name="Contoso M365",
        vendor_created_at=timezone.now() - timedelta(days=90),
    )
    JobDayFactory.create(connector=connector, day=today, successful=2, closed=False)
    JobDayFactory.create(
        connector=connector, day=today - timedelta(days=1), successful=1, incomplete=1
    )
    JobDayFactory.create(
        connector=connector, day=today - timedelta(days=2), successful=0, unsuccessful=1
    )
    JobDayFactory.create(connector=connector, day=today - timedelta(days=3), successful=0)
    # Outside the 7-day rate, inside the strip.
    JobDayFactory.create(
        connector=connector, day=today - timedelta(days=20), successful=0, unsuccessful=5
    )
    ConnectorFactory.create(
        customer=customer,
        account_link=link,
        name="Contoso Entra ID",
        vendor_created_at=timezone.now() - timedelta(days=2),
    )
    html = admin_client.get(
        reverse("admin:customers_customer_change", args=[customer.pk])
    ).content.decode()
    strip = cells(html)
    assert len(strip) == 56  # 28 days for each of the two connectors
    by_day = (
        dict(strip[:28])
        if "Contoso M365" in html.split("Contoso Entra ID")[0]
        else dict(strip[28:])
    )
    assert by_day[f"{today}"] == "successful"
    assert by_day[f"{today - timedelta(days=1)}"] == "incomplete"
    assert by_day[f"{today - timedelta(days=2)}"] == "failed"
    assert by_day[f"{today - timedelta(days=3)}"] == "no_job"
    assert by_day[f"{today - timedelta(days=4)}"] == "unread"  # never read: not "no job"
    assert by_day[f"{today - timedelta(days=20)}"] == "failed"
    young_cells = [outcome for day, outcome in strip if outcome == "before"]
    assert len(young_cells) >= 25  # days before the young connector existed
    # 7-day rate: 3 successful of 5 finished (the day with 5 failures is older).
    rates = re.findall(r'data-testid="success-rate">([^<]*)<', html)
    assert "60.0 %" in [r.strip() for r in rates]
    assert "—" in html  # the connector without a finished job has no rate, not 100 %


def test_the_customer_page_shows_seats_with_the_grace_countdown_and_a_deletion_date(
    admin_client: Client,
) -> None:
    now = timezone.now()
    customer = CustomerFactory.create(name="Fabrikam")
    link = AccountLinkFactory.create(
        customer=customer, deletion_scheduled_at=now + timedelta(days=20)
    )
    SeatFactory.create(
        account_link=link,
        usage=112,
        limit=100,
        violated=True,
        grace_expires_at=now + timedelta(days=10, hours=2),
    )
    SeatFactory.create(
        account_link=link,
        resource="azuread-seats-total",
        label="Entra ID seats",
        usage=5,
        limit=None,
    )
    html = admin_client.get(
        reverse("admin:customers_customer_change", args=[customer.pk])
    ).content.decode()
    assert "112 / 100" in html
    assert "Over by 12" in html
    assert re.search(
        r'data-testid="grace">grace period ends <time[^>]*>[0-9-]+ [0-9:]+ UTC</time> '
        r"\(<time[^>]*>in 1\xa0week, 3\xa0days</time>\)",
        html,
    )
    assert "5 / unlimited" in html
    assert 'data-testid="account-deletion"' in html
    assert "20" in html


def test_the_how_to_fix_link_is_on_the_customer_page_and_the_dashboard(
    admin_client: Client,
) -> None:
    customer = CustomerFactory.create(name="Northwind")
    ConnectorFactory.create(
        customer=customer,
        backup_status__status=BackupStatus.FAILED,
        backup_status__health="critical",
        backup_status__reason="BADTOKEN",
        backup_status__reason_text="Keepit lost access: the authorization expired or was revoked",
        backup_status__error_code="E_REVOKED",
        backup_status__fix_text="The backup stopped: reauthenticate the connector",
        backup_status__help_url=REAUTHENTICATE_M365,
        backup_status__help_label="How to fix",
    )
    for url in (
        reverse("admin:customers_customer_change", args=[customer.pk]),
        reverse("admin:dashboard"),
    ):
        html = admin_client.get(url).content.decode()
        assert f'href="{REAUTHENTICATE_M365}"' in html
        assert "How to fix" in html


def test_the_dashboard_has_a_success_rate_column_and_account_filters(admin_client: Client) -> None:
    today = timezone.now().date()
    over = AccountLinkFactory.create(customer=CustomerFactory.create(name="Over Seats"))
    leaving = AccountLinkFactory.create(
        customer=CustomerFactory.create(name="Leaving"),
        deletion_scheduled_at=timezone.now() + timedelta(days=5),
    )
    calm = AccountLinkFactory.create(customer=CustomerFactory.create(name="Calm"))
    SeatFactory.create(account_link=over, usage=11, limit=10, violated=True)
    SeatFactory.create(account_link=calm, usage=9, limit=10)
    for link in (over, leaving, calm):
        assert link.customer is not None
        connector = ConnectorFactory.create(
            customer=link.customer, account_link=link, name=f"{link.customer.name} M365"
        )
        JobDayFactory.create(connector=connector, day=today, successful=3, unsuccessful=1)
    dashboard = reverse("admin:dashboard")
    html = admin_client.get(dashboard + "?status=all").content.decode()
    assert "Success rate (7 d)" in html
    assert "75.0 %" in html
    seats = admin_client.get(dashboard + "?status=all&seats=exceeded").content.decode()
    assert "Over Seats M365" in seats
    assert "Calm M365" not in seats
    assert "Leaving M365" not in seats
    assert "matching the filters below" in seats  # the tiles say they follow the filter
    deletion = admin_client.get(dashboard + "?status=all&deletion=scheduled").content.decode()
    assert "Leaving M365" in deletion
    assert "Over Seats M365" not in deletion
    rows = list(
        csv.reader(
            io.StringIO(
                b"".join(
                    admin_client.get(dashboard + "?status=all&format=csv").streaming_content  # type: ignore[attr-defined]
                ).decode()
            )
        )
    )
    assert rows[0][8] == "success_rate_7d_percent"
    assert {row[8] for row in rows[1:]} == {"75.0"}


def test_the_card_and_the_connection_page_show_the_credential(admin_client: Client) -> None:
    now = timezone.now()
    token = Connection.objects.create(
        provider="keepit",
        name="Keepit EU",
        enabled=True,
        credential_kind="api_token",
        credential_expires_at=now + timedelta(days=6, hours=1),
        credential_last_used_at=now - timedelta(minutes=3),
        credential_checked_at=now,
    )
    Connection.objects.create(
        provider="keepit",
        name="Keepit US",
        enabled=True,
        credential_kind="username_password",
        credential_checked_at=now,
    )
    html = admin_client.get(reverse("admin:integrations_overview")).content.decode()
    assert "The API token expires on" in html
    assert "(in 6" in html
    assert "Last used 3" in html
    assert html.count('data-testid="personal-login"') == 1
    assert "personal Keepit login" in html
    page = admin_client.get(
        reverse(
            "admin:keepit_keepitconnection_change",
            args=[KeepitConnection.objects.get(pk=token.pk).pk],
        )
    ).content.decode()
    assert 'id="connection-credential"' in page
    assert "The API token expires on" in page
    assert 'data-testid="personal-login"' not in page
