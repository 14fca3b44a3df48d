"""Who did what: the team's decisions carry the user and the time, on the object's history
and on the customer's timeline."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from access.roles import ADMINISTRATOR, TECHNICIAN
from alerts import services
from alerts.models import Alert
from backups.models import AccountLink
from keepit.models import KeepitConnection
from tests.factories import (
    NOW,
    AccountLinkFactory,
    ConnectorFactory,
    CustomerFactory,
    StaleRuleFactory,
)

pytestmark = pytest.mark.django_db


def member(username: str, role: str) -> Client:
    user = User.objects.create_user(username, f"{username}@msp.example", "pw", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


def timeline_rows(client: Client, customer_id: int) -> list[str]:
    page = client.get(f"/admin/customers/customer/{customer_id}/change/").content.decode()
    table = page.split('id="timeline"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", row).split()) for row in rows[1:]]


def test_link_decisions_and_triage_show_who_on_the_history_and_the_timeline() -> None:
    tech = member("tina", TECHNICIAN)
    contoso = CustomerFactory.create(name="Contoso Ltd")
    StaleRuleFactory.create()
    ConnectorFactory.create(
        customer=contoso, backup_status__last_success_at=NOW - timedelta(days=3)
    )
    services.evaluate(now=NOW, send=False)
    alert = Alert.objects.get()
    link = AccountLinkFactory.create(
        customer=None, state=AccountLink.State.UNLINKED, company_name="Contoso (Keepit)"
    )
    linked = tech.post(f"/admin/backups/accountlink/{link.pk}/link/", {"customer": contoso.pk})
    assert linked.status_code == 302
    tech.post(
        f"/admin/alerts/alert/{alert.pk}/triage/",
        {"triage": "acknowledge", "note": "Called the customer"},
    )
    history = tech.get(f"/admin/backups/accountlink/{link.pk}/history/").content.decode()
    assert "tina" in history
    assert "Linked to customer “Contoso Ltd”." in history
    rows = timeline_rows(tech, contoso.pk)
    assert any(
        "Team action" in row and "Linked to customer “Contoso Ltd”." in row and "tina" in row
        for row in rows
    ), rows
    assert any(
        "Acknowledged" in row and "Called the customer" in row and "tina" in row for row in rows
    ), rows


def test_connection_and_rule_changes_are_on_their_history() -> None:
    admin = member("ada", ADMINISTRATOR)
    tech = member("tina", TECHNICIAN)
    connection = KeepitConnection.objects.create(provider="keepit", name="Keepit US", config={})
    rule = StaleRuleFactory.create(name="Stale backups")
    assert tech.post(f"/admin/keepit/keepitconnection/{connection.pk}/sync/").status_code == 302
    history = admin.get(f"/admin/keepit/keepitconnection/{connection.pk}/history/").content.decode()
    assert "tina" in history
    assert "Started a sync (Sync now)." in history
    page = admin.get(f"/admin/alerts/alertrule/{rule.pk}/change/")
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v not in (None, False)}
    data.update({"name": "Stale backups (48 h)", "channels": []})
    for key, value in list(data.items()):
        if isinstance(value, list):
            data[key] = [getattr(v, "pk", v) for v in value]
    saved = admin.post(f"/admin/alerts/alertrule/{rule.pk}/change/", data)
    assert saved.status_code == 302, saved.content.decode()[:2000]
    history = admin.get(f"/admin/alerts/alertrule/{rule.pk}/history/").content.decode()
    assert "ada" in history
    assert "Changed Name" in history
