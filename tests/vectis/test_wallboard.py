"""The wallboard: for a signed-in user, or a TV through a signed, revocable, read-only
kiosk link."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from access.models import KioskLink
from alerts import services
from backups.models import BackupStatus
from tests.factories import ConnectorFactory, CustomerFactory, StaleRuleFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet() -> None:
    now = timezone.now()
    StaleRuleFactory.create()
    contoso = CustomerFactory.create(name="Contoso Ltd")
    fabrikam = CustomerFactory.create(name="Fabrikam")
    ConnectorFactory.create(
        customer=contoso,
        name="Contoso Mail",
        backup_status__status=BackupStatus.FAILED,
        backup_status__reason_text="Backup job failed",
        backup_status__last_success_at=now - timedelta(days=3),
    )
    ConnectorFactory.create(
        customer=fabrikam,
        name="Fabrikam Files",
        backup_status__status=BackupStatus.WARNING,
        backup_status__last_success_at=now - timedelta(hours=30),
    )
    ConnectorFactory.create(
        customer=fabrikam,
        name="Fabrikam Mail",
        backup_status__last_success_at=now - timedelta(hours=1),
    )
    services.evaluate(now=now, send=False)


def kiosk_url(admin_client: Client, name: str = "NOC TV") -> str:
    added = admin_client.post("/admin/access/kiosklink/add/", {"name": name}, follow=True)
    found = re.search(
        r"data-testid='kiosk-url'>https?://[^/]+(/wallboard/k/[^<]+)</code>", added.content.decode()
    )
    assert found, added.content.decode()[:3000]
    return found.group(1)


def test_the_wallboard_shows_tiles_worst_first_alerts_and_data_as_of(
    admin_client: Client, fleet: None
) -> None:
    page = admin_client.get("/wallboard/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<title>Wallboard · Vectis</title>" in html
    assert re.search(r'data-testid="wall-failed">1<', html)
    assert re.search(r'data-testid="wall-warning">1<', html)
    assert re.search(r'data-testid="wall-ok">1<', html)
    rows = re.findall(r'data-testid="wall-row">(.*?)</tr>', html, re.S)
    assert ["Contoso Mail" in rows[0], "Fabrikam Files" in rows[1]] == [True, True]  # worst first
    assert "Fabrikam Mail" not in html  # OK and no alert: not in the list
    assert "Backup job failed" in html
    assert 'data-testid="wall-connection"' in html
    assert "<time datetime=" in html  # ages, the absolute time on hover
    fragment = admin_client.get("/wallboard/?fragment=1").content.decode()
    assert "<html" not in fragment
    assert "Contoso Mail" in fragment


def test_without_a_user_or_a_link_there_is_no_wallboard(fleet: None) -> None:
    response = Client().get("/wallboard/")
    assert response.status_code == 302
    assert "login" in response["Location"]
    assert Client().get("/wallboard/k/not-a-token/").status_code == 403


def test_a_kiosk_link_works_without_sign_in_and_is_refused_once_revoked(
    admin_client: Client, fleet: None
) -> None:
    url = kiosk_url(admin_client)
    tv = Client()
    page = tv.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "NOC TV" in html
    assert "Contoso Mail" in html
    assert "/admin/" not in html  # read-only: no way into the admin from here
    assert "<form" not in html
    assert "_auth_user_id" not in tv.session
    assert tv.get(f"{url}?fragment=1").status_code == 200
    # The link shows the fleet: a query string added to it selects nothing.
    narrowed = tv.get(f"{url}?q=Fabrikam&status=ok").content.decode()
    assert "Contoso Mail" in narrowed
    # A dump of the database does not give the link away.
    token = url.rstrip("/").rsplit("/", 1)[1]
    key = token.split(":")[0].split(".", 1)[1]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM access_kiosk_links")
        assert key not in repr(cursor.fetchall())
    # A forged or altered link is refused.
    assert tv.get(url.replace(key, key[::-1])).status_code == 403
    # Revoked: the next refresh is refused with a sentence.
    link = KioskLink.objects.get()
    admin_client.post(
        "/admin/access/kiosklink/", {"action": "revoke", "_selected_action": [link.pk]}
    )
    refused = tv.get(f"{url}?fragment=1")
    assert refused.status_code == 403
    assert "not valid any more" in tv.get(url).content.decode()


def test_only_an_administrator_creates_kiosk_links() -> None:
    from django.contrib.auth.models import Group, User

    from access.roles import TECHNICIAN

    tech = User.objects.create_user("tech", password="pw", is_staff=True)
    tech.groups.add(Group.objects.get(name=TECHNICIAN))
    client = Client()
    client.force_login(tech)
    assert client.get("/admin/access/kiosklink/add/").status_code == 403
    assert client.get("/wallboard/").status_code == 200
