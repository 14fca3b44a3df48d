"""The public REST API: its OpenAPI schema validates and every documented endpoint
answers as documented for each scope; keys are hashed at rest, scoped, expire, are
revoked and rate-limited; lists cost the same number of queries whatever their page size;
and a PSA's round trip (failing connectors, acknowledge, who did it in the admin)."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db import connection as db
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from openapi_spec_validator import validate

from alerts.models import Alert
from backups.models import BackupConnector, BackupStatus
from customers.models import Customer
from integrations.models import SyncRun
from tests.conftest import database_url
from tests.factories import (
    AccountLinkFactory,
    AuditEventFactory,
    ConnectionFactory,
    ConnectorFactory,
    CustomerFactory,
    FailedRuleFactory,
)
from vectis.models import ApiKey

pytestmark = pytest.mark.django_db


@dataclass
class World:
    customer: int
    connector: int
    alert: int
    run: int
    connection: int


@pytest.fixture(autouse=True)
def fresh_rate_limits() -> None:
    cache.clear()


@pytest.fixture
def world() -> World:
    """Contoso: Mail failing with an open alert, Files fine; audit events; a sync run."""
    connection = ConnectionFactory.create(enabled=True)
    contoso = CustomerFactory.create(name="Contoso Ltd")
    mail = ConnectorFactory.create(
        customer=contoso,
        name="Contoso Mail",
        connection=connection,
        backup_status__status=BackupStatus.FAILED,
        backup_status__reason_text="The mailbox is over its size limit",
    )
    ConnectorFactory.create(customer=contoso, name="Contoso Files", connection=connection)
    AuditEventFactory.create(connector=mail)
    now = timezone.now()
    alert = Alert.objects.create(
        rule=FailedRuleFactory.create(name="Failures"),
        connector=mail,
        kind=Alert.Kind.BACKUP_FAILED,
        key=f"failed:{mail.pk}",
        summary="Contoso Ltd: Contoso Mail — backup failed",
        opened_at=now - timedelta(hours=2),
        last_seen_at=now - timedelta(hours=2),
    )
    run = SyncRun.objects.create(
        connection=connection,
        outcome=SyncRun.Outcome.SUCCEEDED,
        started_at=now - timedelta(minutes=10),
        heartbeat_at=now - timedelta(minutes=9),
        finished_at=now - timedelta(minutes=9),
    )
    return World(contoso.pk, mail.pk, alert.pk, run.pk, connection.pk)


def key(scope: str, name: str = "PSA", **fields: Any) -> str:
    _api_key, secret = ApiKey.objects.create_key(name=name, scope=scope, **fields)
    return str(secret)


def call(client: Client, method: str, path: str, secret: str | None, body: Any = None) -> Any:
    headers = {"HTTP_AUTHORIZATION": f"Api-Key {secret}"} if secret else {}
    if method == "get":
        return client.get(path, **headers)  # type: ignore[arg-type]
    return client.post(
        path,
        json.dumps(body or {}),
        content_type="application/json",
        **headers,  # type: ignore[arg-type]
    )


def schema(client: Client) -> dict[str, Any]:
    answer = client.get("/api/schema/?format=json")
    assert answer.status_code == 200
    return dict(json.loads(answer.content))


def test_the_openapi_schema_validates_and_documents_filters_ordering_and_the_key(
    client: Client, tmp_path: Path
) -> None:
    spec = schema(client)
    validate(spec)
    # drf-spectacular understood every view and filter (no guessed types).
    call_command("spectacular", "--fail-on-warn", "--validate", file=str(tmp_path / "api.yml"))
    assert spec["components"]["securitySchemes"]["ApiKey"]["in"] == "header"
    assert all(path.startswith("/api/v1/") for path in spec["paths"])
    params = {p["name"] for p in spec["paths"]["/api/v1/alerts/"]["get"]["parameters"]}
    assert {"state", "rule", "customer", "ordering", "page", "page_size"} <= params
    events = spec["paths"]["/api/v1/customers/{id}/audit-events/"]["get"]["parameters"]
    assert {"category", "since", "until", "cursor"} <= {p["name"] for p in events}
    # The docs page is served from this machine, not a CDN.
    docs = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in docs
    assert "cdn." not in docs
    assert "unpkg" not in docs


# --- every documented endpoint, for each scope ------------------------------------------

TOMORROW = (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
BODIES = {
    "snooze": {"until": TOMORROW, "reason": "waiting for the customer"},
    "acknowledge": {"note": "on it"},
}


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    ]


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = spec["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def documented_keys(spec: dict[str, Any], operation: dict[str, Any], code: int) -> set[str]:
    content = operation["responses"][str(code)]["content"]["application/json"]["schema"]
    body = resolve(spec, content)
    if "results" in body.get("properties", {}):
        body = resolve(spec, body["properties"]["results"]["items"])
    return set(body["properties"])


@pytest.mark.parametrize("scope", ["none", "read", "technician"])
def test_every_documented_endpoint_answers_as_documented_for_each_scope(
    client: Client, world: World, scope: str
) -> None:
    spec = schema(client)
    ids = {
        "/customers/": world.customer,
        "/connectors/": world.connector,
        "/alerts/": world.alert,
        "/sync-runs/": world.run,
        "/connections/": world.connection,
    }
    secret = None if scope == "none" else key(scope)
    checked = 0
    for path, method, operation in operations(spec):
        url = path
        for prefix, pk in ids.items():
            if prefix in path:
                url = path.replace("{id}", str(pk))
        action = path.rstrip("/").rsplit("/", 1)[-1]
        answer = call(client, method, url, secret, BODIES.get(action))
        body = json.loads(answer.content)
        where = f"{method.upper()} {url} as {scope}"
        assert str(answer.status_code) in operation["responses"], (where, body)
        if scope == "none":
            assert answer.status_code == 401, where
            assert answer["WWW-Authenticate"].startswith("Api-Key")
            assert "Send an API key" in body["error"]["message"], where
        elif method == "post" and scope == "read":
            assert answer.status_code == 403, where
            assert "read-only" in body["error"]["message"], where
        else:
            assert answer.status_code < 400, (where, body)
            keys = documented_keys(spec, operation, answer.status_code)
            item = body["results"][0] if "results" in body else body
            assert set(item) == keys, where
        checked += 1
    assert checked == 15


def test_times_are_iso_8601_in_utc_whatever_the_msps_zone(
    client: Client, world: World, settings: Any
) -> None:
    settings.TIME_ZONE = "Europe/Copenhagen"
    secret = key("read")
    alert = call(client, "get", f"/api/v1/alerts/{world.alert}/", secret).json()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", alert["opened_at"])
    opened = Alert.objects.get(pk=world.alert).opened_at
    assert alert["opened_at"].startswith(opened.astimezone(UTC).strftime("%Y-%m-%dT%H:%M"))


# --- keys -------------------------------------------------------------------------------


def pg_dump() -> str:
    """The whole test database as pg_dump writes it (data only)."""
    return subprocess.run(
        ["pg_dump", "--data-only", f"--dbname={database_url()}"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout


@pytest.mark.django_db(transaction=True)
def test_a_key_is_printed_once_and_a_dump_of_the_database_never_contains_it() -> None:
    out, err = StringIO(), StringIO()
    call_command("create_api_key", "PSA sync", scope="technician", stdout=out, stderr=err)
    secret = out.getvalue().strip()
    assert re.fullmatch(r"[A-Za-z0-9]{8}\.[A-Za-z0-9]{32}", secret)
    assert "shown once" in err.getvalue()
    stored = ApiKey.objects.get()
    assert (stored.name, stored.scope, stored.created_by) == ("PSA sync", "technician", "manage.py")
    dump = pg_dump()
    assert stored.hashed_key in dump  # the dump holds the table…
    assert secret not in dump
    assert secret.split(".")[1] not in dump


@pytest.mark.django_db(transaction=True)
def test_an_administrator_creates_a_key_in_the_admin_and_sees_it_once(
    admin_user: Any, client: Client
) -> None:
    admin = Client()
    admin.force_login(admin_user)
    answer = admin.post(
        "/admin/vectis/apikey/add/",
        {"name": "Rewst", "scope": "technician", "expiry_date_0": "", "expiry_date_1": ""},
    )
    assert answer.status_code == 200
    assert "no-store" in answer["Cache-Control"]
    page = answer.content.decode()
    shown = re.search(r'data-testid="api-key"[^>]*>([A-Za-z0-9]{8}\.[A-Za-z0-9]{32})<', page)
    assert shown, page
    secret = shown.group(1)
    assert "it is shown only this once" in page
    stored = ApiKey.objects.get(name="Rewst")
    assert (stored.scope, stored.created_by) == ("technician", "admin")
    assert call(client, "get", "/api/v1/alerts/", secret).status_code == 200
    # Never again: not on the list, not on its page, not in the database (sessions
    # included: the key is not a message).
    change = reverse("admin:vectis_apikey_change", args=[quote(stored.pk)])
    for url in ("/admin/vectis/apikey/", change):
        seen = admin.get(url)
        assert seen.status_code == 200
        assert secret.split(".")[1] not in seen.content.decode()
    assert secret.split(".")[1] not in pg_dump()


def test_bad_expired_and_revoked_keys_are_refused_with_a_sentence(
    client: Client, world: World
) -> None:
    good = key("read")
    assert call(client, "get", "/api/v1/customers/", good).status_code == 200
    assert ApiKey.objects.get(name="PSA").last_used_at is not None
    cases = {
        good[:-1] + ("A" if good[-1] != "A" else "B"): "not valid",
        key("read", "Old", expiry_date=timezone.now() - timedelta(minutes=1)): "“Old” expired",
        "nonsense": "not valid",
    }
    gone = key("read", "Gone")
    ApiKey.objects.filter(name="Gone").update(revoked=True)
    cases[gone] = "“Gone” was revoked"
    for secret, sentence in cases.items():
        answer = call(client, "get", "/api/v1/customers/", secret)
        assert answer.status_code == 401, secret
        assert sentence in answer.json()["error"]["message"]


def test_each_key_has_its_own_rate_limit(client: Client, world: World, settings: Any) -> None:
    settings.VECTIS_API_RATE = "3/minute"
    busy, other = key("read", "Busy"), key("read", "Other")
    codes = [call(client, "get", "/api/v1/customers/", busy).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    refused = call(client, "get", "/api/v1/customers/", busy)
    assert "Too many requests with this API key. Try again in" in refused.json()["error"]["message"]
    assert call(client, "get", "/api/v1/customers/", other).status_code == 200


def test_errors_are_json_with_a_sentence(client: Client, world: World) -> None:
    secret = key("technician")
    missing = call(client, "get", "/api/v1/nothing-here/", secret)
    assert missing.status_code == 404
    assert "There is no API endpoint at /api/v1/nothing-here/" in missing.json()["error"]["message"]
    past = call(
        client,
        "post",
        f"/api/v1/alerts/{world.alert}/snooze/",
        secret,
        {"until": "2020-01-01T00:00:00Z", "reason": "x"},
    )
    assert past.status_code == 400
    error = past.json()["error"]
    assert error["message"] == "Some values are not valid — until: Choose a time in the future."
    assert "until" in error["field_errors"]
    unknown = call(client, "get", "/api/v1/alerts/999999/", secret)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "There is no alert with the id 999999."
    disabled = ConnectionFactory.create(name="Old tenant", enabled=False)
    refused = call(client, "post", f"/api/v1/connections/{disabled.pk}/sync/", secret)
    assert refused.status_code == 409
    assert "“Old tenant” is disabled" in refused.json()["error"]["message"]


def test_connections_never_show_a_secret(client: Client, world: World) -> None:
    connection = ConnectionFactory.create(name="With secrets", config={"username": "u@msp.example"})
    connection.set_secrets({"password": "hunter2-very-secret"})
    connection.save()
    text = call(client, "get", "/api/v1/connections/", key("read")).content.decode()
    assert "With secrets" in text
    for secret in ("hunter2-very-secret", connection.secrets_ciphertext, "u@msp.example"):
        assert secret not in text


# --- queries ----------------------------------------------------------------------------

LISTS = ["customers", "connectors", "alerts", "sync-runs", "connections", "audit-events"]


@pytest.mark.parametrize("resource", LISTS)
def test_a_list_costs_the_same_queries_whatever_its_page_size(
    client: Client, world: World, resource: str
) -> None:
    connection = ConnectionFactory.create(enabled=True, name="Second")
    rule = FailedRuleFactory.create()
    contoso = world.customer
    customer = Customer.objects.get(pk=contoso)
    now = timezone.now()
    for n in range(30):
        connector = ConnectorFactory.create(connection=connection)  # and its own customer
        AuditEventFactory.create(connector=connector, customer=customer)
        Alert.objects.create(
            rule=rule,
            connector=connector,
            kind=Alert.Kind.BACKUP_FAILED,
            key=f"k{n}",
            opened_at=now,
            last_seen_at=now,
        )
        SyncRun.objects.create(
            connection=connection, outcome="succeeded", started_at=now, heartbeat_at=now
        )
        ConnectionFactory.create(name=f"Tenant {n}")
    secret = key("read")
    path = (
        f"/api/v1/customers/{contoso}/audit-events/"
        if resource == "audit-events"
        else f"/api/v1/{resource}/"
    )
    counts = []
    for size in (2, 25):
        call(client, "get", f"{path}?page_size={size}", secret)  # warm (the key's last use)
        with CaptureQueriesContext(db) as queries:
            answer = call(client, "get", f"{path}?page_size={size}", secret)
        assert answer.status_code == 200
        assert len(answer.json()["results"]) == size
        counts.append(len(queries))
    assert counts == [3, 3]  # the key, then the count and the page (audit: customer, page)


# --- a PSA's round trip -----------------------------------------------------------------


def test_a_key_lists_failing_connectors_acknowledges_one_and_the_admin_says_who(
    client: Client, world: World, admin_client: Client
) -> None:
    psa = key("technician", "Autotask PSA")
    failing = call(client, "get", "/api/v1/connectors/?status=failed", psa).json()
    assert [(c["name"], c["customer_name"], c["status"]) for c in failing["results"]] == [
        ("Contoso Mail", "Contoso Ltd", "failed")
    ]
    assert failing["results"][0]["status_reason"] == "The mailbox is over its size limit"
    connector = failing["results"][0]["id"]
    open_alerts = call(
        client, "get", f"/api/v1/alerts/?connector={connector}&state=open", psa
    ).json()
    assert [a["id"] for a in open_alerts["results"]] == [world.alert]
    done = call(
        client, "post", f"/api/v1/alerts/{world.alert}/acknowledge/", psa, {"note": "Ticket 4711"}
    )
    assert done.status_code == 200
    assert done.json()["alert"]["state"] == "acknowledged"
    # A PSA that retries gets the same answer, and nothing changes.
    again = call(client, "post", f"/api/v1/alerts/{world.alert}/acknowledge/", psa)
    assert again.status_code == 200
    assert again.json()["message"] == "Already acknowledged by API key “Autotask PSA”."
    assert Alert.objects.get(pk=world.alert).events.filter(kind="acknowledged").count() == 1
    page = admin_client.get(f"/admin/alerts/alert/{world.alert}/change/").content.decode()
    assert "API key “Autotask PSA”" in page
    assert "Ticket 4711" in page


def test_snooze_unsnooze_and_sync_from_the_api(
    client: Client, world: World, django_capture_on_commit_callbacks: Any
) -> None:
    psa = key("technician")
    snoozed = call(
        client, "post", f"/api/v1/alerts/{world.alert}/snooze/", psa, BODIES["snooze"]
    ).json()
    assert snoozed["alert"]["snoozed"] is True
    assert snoozed["alert"]["snooze_reason"] == "waiting for the customer"
    assert snoozed["alert"]["snoozed_by"] == "API key “PSA”"
    back = call(client, "post", f"/api/v1/alerts/{world.alert}/unsnooze/", psa).json()
    assert back["alert"]["snoozed"] is False
    with django_capture_on_commit_callbacks(execute=False) as queued_tasks:
        queued = call(client, "post", f"/api/v1/connections/{world.connection}/sync/", psa)
    assert queued.status_code == 202
    assert len(queued_tasks) == 1  # sync_connection.delay, once the request commits
    assert "queued" in queued.json()["message"]


def test_filters_ordering_and_cursor_answer_what_they_say(
    client: Client, world: World, settings: Any
) -> None:
    settings.TIME_ZONE = "Europe/Copenhagen"  # a time without an offset is still UTC
    secret = key("technician")
    contoso = Customer.objects.get(pk=world.customer)
    fabrikam = CustomerFactory.create(name="Fabrikam")
    ConnectorFactory.create(customer=fabrikam, name="Fabrikam Mail")
    # An alert about Contoso's vendor account (no connector): it counts for Contoso.
    link = AccountLinkFactory.create(customer=contoso)
    now = timezone.now()
    seats = Alert.objects.create(
        account_link=link,
        kind=Alert.Kind.SEAT_EXCEEDED,
        key=f"seats:{link.pk}",
        opened_at=now - timedelta(hours=1),
        last_seen_at=now - timedelta(hours=1),
    )

    def get(url: str) -> Any:
        answer = call(client, "get", url, secret)
        assert answer.status_code == 200, (url, answer.content)
        return answer.json()

    def names(url: str) -> list[Any]:
        return [row.get("name", row.get("id")) for row in get(url)["results"]]

    # Customers: worst status, open alerts (connectors' and accounts'), ordering.
    failing = get("/api/v1/customers/?worst_status=failed")["results"]
    assert [(c["name"], c["worst_status"], c["open_alert_count"]) for c in failing] == [
        ("Contoso Ltd", "failed", 2)
    ]
    assert names("/api/v1/customers/?ordering=worst_status") == ["Contoso Ltd", "Fabrikam"]
    assert names("/api/v1/customers/?ordering=-worst_status") == ["Fabrikam", "Contoso Ltd"]
    assert names("/api/v1/customers/?name=fabri") == ["Fabrikam"]
    # Worst means worst: Contoso has an OK connector too, but it is not "ok".
    assert names("/api/v1/customers/?worst_status=ok") == ["Fabrikam"]
    assert names("/api/v1/customers/?worst_status=warning") == []
    # Alerts: by customer (both routes), rule, state, changed since.
    by_customer = names(f"/api/v1/alerts/?customer={contoso.pk}&ordering=opened_at")
    assert by_customer == [world.alert, seats.pk]
    rule = Alert.objects.get(pk=world.alert).rule_id
    assert names(f"/api/v1/alerts/?rule={rule}") == [world.alert]
    since = (now - timedelta(minutes=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert names(f"/api/v1/alerts/?changed_since={since}") == [seats.pk]
    assert names("/api/v1/alerts/?state=resolved") == []
    # Connectors: live ones by status; a removed one still answers on its own page.
    assert names(f"/api/v1/connectors/?customer={fabrikam.pk}") == ["Fabrikam Mail"]
    gone = ConnectorFactory.create(customer=fabrikam, name="Old", removed_at=now)
    assert "Old" not in names("/api/v1/connectors/?page_size=100")
    assert get(f"/api/v1/connectors/{gone.pk}/")["removed_at"] is not None
    # Audit events: category, time range, and the cursor's next page.
    mail = BackupConnector.objects.get(pk=world.connector)
    for hours in range(5):
        AuditEventFactory.create(connector=mail, occurred_at=now - timedelta(hours=10 + hours))
    AuditEventFactory.create(connector=mail, category="user", occurred_at=now)
    url = f"/api/v1/customers/{contoso.pk}/audit-events/?category=recovery&page_size=4"
    first = get(url)
    assert len(first["results"]) == 4
    second = get(first["next"].replace("http://testserver", ""))
    assert len(first["results"]) + len(second["results"]) == 6  # the world's one + 5
    assert second["next"] is None
    window = (
        f"/api/v1/customers/{contoso.pk}/audit-events/?since="
        f"{(now - timedelta(hours=12, minutes=30)).strftime('%Y-%m-%dT%H:%M:%S')}"
        f"&until={(now - timedelta(hours=10, minutes=30)).strftime('%Y-%m-%dT%H:%M:%SZ')}"
    )
    assert len(get(window)["results"]) == 2  # 11 and 12 hours ago (no offset: UTC)
    # Sync runs since a time.
    assert names(f"/api/v1/sync-runs/?since={since}") == [world.run]
    assert names("/api/v1/sync-runs/?since=2999-01-01T00:00:00Z") == []
    # Wrong values are refused with a sentence, never ignored.
    for wrong in ("/api/v1/customers/?ordering=password", "/api/v1/alerts/?customer=4.5"):
        refused = call(client, "get", wrong, secret)
        assert refused.status_code == 400, wrong
        assert refused.json()["error"]["message"].startswith("Some values are not valid — ")


def test_state_conflicts_and_a_missing_slash_are_explained(client: Client, world: World) -> None:
    secret = key("technician")
    Alert.objects.filter(pk=world.alert).update(
        state=Alert.State.RESOLVED, resolved_at=timezone.now()
    )
    refused = call(client, "post", f"/api/v1/alerts/{world.alert}/acknowledge/", secret)
    assert refused.status_code == 409
    assert refused.json()["error"]["message"] == (
        f"Alert {world.alert} is resolved: there is nothing to acknowledge."
    )
    running = SyncRun.objects.create(
        connection_id=world.connection, started_at=timezone.now(), heartbeat_at=timezone.now()
    )
    busy = call(client, "post", f"/api/v1/connections/{world.connection}/sync/", secret)
    assert busy.status_code == 409
    assert f"is running (run {running.pk}" in busy.json()["error"]["message"]
    # Without the trailing slash: a 308 to the endpoint (method and body kept).
    moved = call(client, "get", "/api/v1/customers?name=Contoso", secret)
    assert moved.status_code == 308
    assert moved["Location"] == "/api/v1/customers/?name=Contoso"
    assert call(client, "get", moved["Location"], secret).json()["count"] == 1


def test_the_command_sets_an_expiry_and_refuses_a_bad_name(client: Client, world: World) -> None:
    out = StringIO()
    call_command("create_api_key", "Yearly", expires_days=365, stdout=out, stderr=StringIO())
    stored = ApiKey.objects.get(name="Yearly")
    assert stored.scope == "read"
    assert stored.expiry_date is not None
    assert timedelta(days=364) < stored.expiry_date - timezone.now() <= timedelta(days=365)
    assert call(client, "get", "/api/v1/customers/", out.getvalue().strip()).status_code == 200
    with pytest.raises(CommandError, match="a name of 1 to 50 characters"):
        call_command("create_api_key", "x" * 51)
