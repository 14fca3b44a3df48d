"""The three roles, page by page and button by button: what an Administrator, a
Technician and a Read-only user get (200, 403, a redirect after acting, or a button that
is not there)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django.test import Client

from access.roles import ADMINISTRATOR, READ_ONLY, TECHNICIAN
from alerts import services
from alerts.models import Alert, AlertNotification, MaintenanceWindow, NotificationChannel
from backups.models import AccountLink
from customers.models import Customer
from keepit.models import KeepitConnection
from tests.factories import (
    NOW,
    AccountLinkFactory,
    ConnectorFactory,
    CustomerFactory,
    StaleRuleFactory,
)

pytestmark = pytest.mark.django_db
ROLES = (ADMINISTRATOR, TECHNICIAN, READ_ONLY)


@dataclass
class World:
    connection: int
    customer: int
    alert: int
    rule: int
    channel: int
    window: int
    link: int


@pytest.fixture
def world() -> World:
    connection = KeepitConnection.objects.create(
        provider="keepit", name="Keepit US", config={"region": "us-dc", "username": "u"}
    )
    customer = CustomerFactory.create(name="Contoso Ltd")
    ConnectorFactory.create(
        customer=customer,
        connection=connection,
        backup_status__last_success_at=NOW - timedelta(days=3),
    )
    rule = StaleRuleFactory.create(recipients="noc@msp.example")
    channel = NotificationChannel.objects.create(
        name="NOC mail", kind=NotificationChannel.Kind.EMAIL, addresses="noc@msp.example"
    )
    services.evaluate(now=NOW, send=False)
    link = AccountLinkFactory.create(
        connection=connection,
        customer=None,
        state=AccountLink.State.UNLINKED,
        company_name="Fabrikam",
    )
    window = MaintenanceWindow.objects.create(
        reason="Patch", customer=customer, starts_at=NOW, ends_at=NOW + timedelta(hours=1)
    )
    return World(
        connection=connection.pk,
        customer=customer.pk,
        alert=Alert.objects.get().pk,
        rule=rule.pk,
        channel=channel.pk,
        window=window.pk,
        link=link.pk,
    )


def signed_in(role: str) -> Client:
    user = User.objects.create_user(
        role.lower(), f"{role.lower()}@msp.example", "pw", is_staff=True
    )
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


# (what, method, path, what each role gets: Administrator, Technician, Read-only)
PAGES = [
    ("home", "get", "/admin/", (200, 200, 200)),
    ("backup dashboard", "get", "/admin/backups/", (200, 200, 200)),
    ("integrations", "get", "/admin/integrations/", (200, 200, 200)),
    ("connections", "get", "/admin/keepit/keepitconnection/", (200, 200, 200)),
    (
        "connection page",
        "get",
        "/admin/keepit/keepitconnection/{connection}/change/",
        (200, 200, 200),
    ),
    ("add a connection", "get", "/admin/keepit/keepitconnection/add/", (200, 403, 403)),
    (
        "Test connection",
        "post",
        "/admin/keepit/keepitconnection/{connection}/test/",
        (200, 403, 403),
    ),
    (
        "Find my region",
        "post",
        "/admin/keepit/keepitconnection/{connection}/find-region/",
        (200, 403, 403),
    ),
    ("Sync now", "post", "/admin/keepit/keepitconnection/{connection}/sync/", (302, 302, 403)),
    ("sync runs", "get", "/admin/integrations/syncrun/", (200, 200, 200)),
    ("customers", "get", "/admin/customers/customer/", (200, 200, 200)),
    ("customer page", "get", "/admin/customers/customer/{customer}/change/", (200, 200, 200)),
    (
        "monthly report",
        "get",
        "/admin/customers/customer/{customer}/report/?month=2026-11",
        (200, 200, 200),
    ),
    (
        "timeline CSV",
        "get",
        "/admin/customers/customer/{customer}/change/?format=csv",
        (200, 200, 200),
    ),
    ("connectors", "get", "/admin/backups/backupconnector/", (200, 200, 200)),
    ("audit events", "get", "/admin/backups/backupauditevent/", (200, 200, 200)),
    ("account links", "get", "/admin/backups/accountlink/", (200, 200, 200)),
    ("link an account", "post", "/admin/backups/accountlink/{link}/link/", (302, 302, 403)),
    ("alerts", "get", "/admin/alerts/alert/", (200, 200, 200)),
    ("alert page", "get", "/admin/alerts/alert/{alert}/change/", (200, 200, 200)),
    ("acknowledge", "post", "/admin/alerts/alert/{alert}/triage/", (302, 302, 403)),
    ("alert rules", "get", "/admin/alerts/alertrule/", (200, 200, 403)),
    ("a rule", "get", "/admin/alerts/alertrule/{rule}/change/", (200, 200, 403)),
    ("add a rule", "get", "/admin/alerts/alertrule/add/", (200, 403, 403)),
    ("channels", "get", "/admin/alerts/notificationchannel/", (200, 200, 403)),
    ("add a channel", "get", "/admin/alerts/notificationchannel/add/", (200, 403, 403)),
    (
        "Send test",
        "post",
        "/admin/alerts/notificationchannel/{channel}/send-test/",
        (200, 403, 403),
    ),
    ("delivery log", "get", "/admin/alerts/alertnotification/", (200, 200, 403)),
    ("maintenance windows", "get", "/admin/alerts/maintenancewindow/", (200, 200, 200)),
    ("add a window", "get", "/admin/alerts/maintenancewindow/add/", (200, 403, 403)),
    ("users", "get", "/admin/auth/user/", (200, 403, 403)),
    ("add a user", "get", "/admin/auth/user/add/", (200, 403, 403)),
    ("roles", "get", "/admin/auth/group/", (200, 403, 403)),
]


@pytest.mark.parametrize(("what", "method", "path", "expected"), PAGES, ids=[p[0] for p in PAGES])
def test_each_role_gets_what_it_may(
    world: World, what: str, method: str, path: str, expected: tuple[int, int, int]
) -> None:
    url = path.format(**vars(world))
    data = {
        "acknowledge": {"triage": "acknowledge"},
        "link an account": {"customer": world.customer},
    }
    posted = data.get(what, {})
    got = tuple(getattr(signed_in(role), method)(url, posted).status_code for role in ROLES)
    assert got == expected, f"{what}: {dict(zip(ROLES, got, strict=True))}"


# (what, page, text of the button or link, who sees it: Administrator, Technician,
# Read-only; None: the page itself is refused)
BUTTONS = [
    ("Configure", "/admin/integrations/", ">Configure<", (True, False, False)),
    ("View connections", "/admin/integrations/", ">View connections<", (False, True, True)),
    (
        "Test connection",
        "/admin/keepit/keepitconnection/{connection}/change/",
        ">Test connection<",
        (True, False, False),
    ),
    (
        "Find my region",
        "/admin/keepit/keepitconnection/{connection}/change/",
        ">Find my region<",
        (True, False, False),
    ),
    (
        "Sync now",
        "/admin/keepit/keepitconnection/{connection}/change/",
        ">Sync now<",
        (True, True, False),
    ),
    (
        "Save connection",
        "/admin/keepit/keepitconnection/{connection}/change/",
        'name="_save"',
        (True, False, False),
    ),
    (
        "Acknowledge",
        "/admin/alerts/alert/{alert}/change/",
        'value="acknowledge"',
        (True, True, False),
    ),
    ("Link", "/admin/backups/accountlink/", "Link to a customer", (True, True, False)),
    ("Alert rules menu", "/admin/", "/admin/alerts/alertrule/", (True, True, False)),
    ("Channels menu", "/admin/", "/admin/alerts/notificationchannel/", (True, True, False)),
    (
        "Add a rule",
        "/admin/alerts/alertrule/",
        "/admin/alerts/alertrule/add/",
        (True, False, None),
    ),
    ("Users menu", "/admin/", "/admin/auth/user/", (True, False, False)),
]


@pytest.mark.parametrize(("what", "path", "marker", "shown"), BUTTONS, ids=[b[0] for b in BUTTONS])
def test_menus_and_buttons_follow_the_role(
    world: World, what: str, path: str, marker: str, shown: tuple[bool | None, ...]
) -> None:
    url = path.format(**vars(world))
    seen: list[bool | None] = []
    for role in ROLES:
        response = signed_in(role).get(url)
        assert response.status_code in (200, 403), f"{what} as {role}"
        seen.append(marker in response.content.decode() if response.status_code == 200 else None)
    assert tuple(seen) == shown, f"{what}: {dict(zip(ROLES, seen, strict=True))}"


def test_before_any_connection_only_an_administrator_is_offered_configure() -> None:
    for role, offered in zip(ROLES, (True, False, False), strict=True):
        client = signed_in(role)
        for page in ("/admin/", "/admin/backups/"):
            html = client.get(page).content.decode()
            assert (">Configure<" in html) is offered, (role, page)
            assert "No backup data yet" in html


def _alert(world: World) -> Alert:
    return Alert.objects.get(pk=world.alert)


def _link(world: World) -> AccountLink:
    return AccountLink.objects.get(pk=world.link)


# (what, path, posted data, whether it happened) — run once per role on a fresh world.
# The customer form's inline (monthly report recipients), left empty.
NO_REPORT_RECIPIENTS = {
    "report_subscription-TOTAL_FORMS": "0",
    "report_subscription-INITIAL_FORMS": "0",
}
ACTIONS: list[tuple[str, str, dict[str, Any], Any]] = [
    (
        "acknowledge",
        "/admin/alerts/alert/{alert}/triage/",
        {"triage": "acknowledge", "note": "on it"},
        lambda w: _alert(w).state == Alert.State.ACKNOWLEDGED,
    ),
    (
        "snooze 4 h",
        "/admin/alerts/alert/{alert}/triage/",
        {"triage": "snooze", "quick": "4h"},
        lambda w: _alert(w).snoozed_until is not None,
    ),
    (
        "bulk acknowledge",
        "/admin/alerts/alert/",
        {"action": "acknowledge_action", "_selected_action": "{alert}", "apply": "1", "note": "x"},
        lambda w: _alert(w).state == Alert.State.ACKNOWLEDGED,
    ),
    (
        "link to a customer",
        "/admin/backups/accountlink/{link}/link/",
        {"customer": "{customer}"},
        lambda w: _link(w).customer_id == w.customer,
    ),
    (
        "exclude from monitoring",
        "/admin/backups/accountlink/",
        {"action": "exclude_action", "_selected_action": "{link}"},
        lambda w: _link(w).state == AccountLink.State.EXCLUDED,
    ),
    (
        "create a customer for each",
        "/admin/backups/accountlink/",
        {"action": "create_customer_action", "_selected_action": "{link}"},
        lambda w: _link(w).customer_id is not None,
    ),
    (
        "rename a customer",
        "/admin/customers/customer/{customer}/change/",
        {"name": "Contoso Limited", **NO_REPORT_RECIPIENTS},
        lambda w: Customer.objects.get(pk=w.customer).name == "Contoso Limited",
    ),
    (
        "add a customer",
        "/admin/customers/customer/add/",
        {"name": "Northwind", **NO_REPORT_RECIPIENTS},
        lambda w: Customer.objects.filter(name="Northwind").exists(),
    ),
    (
        "Sync now",
        "/admin/keepit/keepitconnection/{connection}/sync/",
        {},
        lambda w: LogEntry.objects.filter(change_message__contains="Sync now").exists(),
    ),
    (
        "Send test",
        "/admin/alerts/notificationchannel/{channel}/send-test/",
        {},
        lambda w: AlertNotification.objects.filter(purpose="test").exists(),
    ),
]
# Who may (Administrator, Technician, Read-only).
MAY = {
    "acknowledge": (True, True, False),
    "snooze 4 h": (True, True, False),
    "bulk acknowledge": (True, True, False),
    "link to a customer": (True, True, False),
    "exclude from monitoring": (True, True, False),
    "create a customer for each": (True, True, False),
    "rename a customer": (True, True, False),
    "add a customer": (True, True, False),
    "Sync now": (True, True, False),
    "Send test": (True, False, False),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("what", "path", "data", "happened"), ACTIONS, ids=[a[0] for a in ACTIONS])
def test_an_action_takes_effect_only_for_the_roles_that_may(
    world: World, role: str, what: str, path: str, data: dict[str, Any], happened: Any
) -> None:
    values = vars(world)
    posted = {key: str(value).format(**values) for key, value in data.items()}
    response = signed_in(role).post(path.format(**values), posted)
    assert response.status_code in (200, 302, 403), (what, role, response.status_code)
    may = MAY[what][ROLES.index(role)]
    assert bool(happened(world)) is may, f"{what} as {role}: {response.status_code}"


def test_migrate_keeps_the_roles_as_defined() -> None:
    """A permission taken from a role by hand comes back with the next migrate."""
    technician = Group.objects.get(name=TECHNICIAN)
    technician.permissions.remove(*technician.permissions.filter(codename="change_alert"))
    call_command("migrate", verbosity=0)
    assert technician.permissions.filter(codename="change_alert").exists()
    assert not technician.permissions.filter(codename="change_alertrule").exists()
    assert not technician.permissions.filter(codename="change_keepitconnection").exists()


# Every list in the admin: (Administrator, Technician, Read-only).
EVERY_LIST = {
    "access.kiosklink": (200, 403, 403),
    "alerts.alert": (200, 200, 200),
    "alerts.alertnotification": (200, 200, 403),
    "alerts.alertrule": (200, 200, 403),
    "alerts.maintenancewindow": (200, 200, 200),
    "alerts.notificationchannel": (200, 200, 403),
    "auth.group": (200, 403, 403),
    "auth.user": (200, 403, 403),
    "axes.accessattempt": (200, 403, 403),
    "axes.accessfailurelog": (200, 403, 403),
    "axes.accesslog": (200, 403, 403),
    "backups.accountlink": (200, 200, 200),
    "backups.backupauditevent": (200, 200, 200),
    "backups.backupconnector": (200, 200, 200),
    "backups.backupconnectorstatus": (200, 200, 200),
    "customers.customer": (200, 200, 200),
    "integrations.syncrun": (200, 200, 200),
    "keepit.keepitconnection": (200, 200, 200),
    "mfa.authenticator": (200, 403, 403),
    "socialaccount.socialaccount": (200, 403, 403),
    "vectis.apikey": (200, 403, 403),
    "vectis.monthlyreport": (200, 200, 200),
    # One row: its list is its page (a redirect).
    "vectis.reportsettings": (302, 302, 403),
}


def test_every_admin_list_is_in_the_table() -> None:
    from django.contrib import admin

    assert sorted(model._meta.label_lower for model in admin.site._registry) == sorted(EVERY_LIST)


@pytest.mark.parametrize(("model", "expected"), EVERY_LIST.items(), ids=list(EVERY_LIST))
def test_every_admin_list_answers_each_role(model: str, expected: tuple[int, int, int]) -> None:
    app_label, model_name = model.split(".")
    url = f"/admin/{app_label}/{model_name}/"
    got = tuple(signed_in(role).get(url).status_code for role in ROLES)
    assert got == expected, f"{model}: {dict(zip(ROLES, got, strict=True))}"


@pytest.mark.django_db(transaction=True)
def test_the_roles_migration_keeps_an_msps_own_group_of_the_same_name() -> None:
    """On a database holding real data: an existing group called "Technician" keeps its
    members and permissions under another name; the role is created as defined."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    MigrationExecutor(connection).migrate([("access", "0001_initial")])
    assert not Group.objects.filter(name=TECHNICIAN).exists()
    own = Group.objects.create(name=TECHNICIAN)
    own.permissions.add(*Permission.objects.filter(codename="add_alertrule"))
    member = User.objects.create_user("tess", password="pw", is_staff=True)
    # (through the table, as the data was: no signal of today's code)
    User.groups.through.objects.create(user=member, group=own)
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([("access", "0002_roles")])
    kept = Group.objects.get(name="Technician (before Vectis roles)")
    assert list(kept.user_set.values_list("username", flat=True)) == ["tess"]
    assert list(kept.permissions.values_list("codename", flat=True)) == ["add_alertrule"]
    role = Group.objects.get(name=TECHNICIAN)
    assert role.pk != own.pk
    assert role.permissions.filter(codename="change_alert").exists()
    assert not role.permissions.filter(codename="add_alertrule").exists()
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_the_three_roles_are_read_only_in_the_admin_and_a_copy_is_editable() -> None:
    admin = signed_in(ADMINISTRATOR)
    role = Group.objects.get(name=TECHNICIAN)
    page = admin.get(f"/admin/auth/group/{role.pk}/change/").content.decode()
    assert 'name="_save"' not in page
    assert admin.post(f"/admin/auth/group/{role.pk}/delete/", {"post": "yes"}).status_code == 403
    copy = Group.objects.create(name="Night shift")
    assert 'name="_save"' in admin.get(f"/admin/auth/group/{copy.pk}/change/").content.decode()
