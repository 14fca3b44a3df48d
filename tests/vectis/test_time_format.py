"""Time, one way: every template shows a moment through the `when` or `stamp` filter
(vectis/timefmt.py), in the viewer's time zone, with the other form on hover."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.utils import timezone

from vectis import timefmt

ROOT = Path(__file__).resolve().parents[2]
# Django's own ways to print a moment; a day alone (a calendar date) may use |date:"Y-m-d".
# (a bare `{{ something_at }}` prints Django's own format)
BARE_MOMENT = re.compile(r"\{\{\s*[\w.]*_at\s*\}\}")
BYPASS = re.compile(
    r"\|\s*(timesince|timeuntil|naturaltime|naturalday|time\b|date(?!:\s*['\"]Y-m-d['\"]))"
)


def templates() -> list[Path]:
    return sorted(
        path
        for folder in ("templates", "keepit/templates", "alerts/templates", "vectis/templates")
        if (ROOT / folder).exists()
        for path in (ROOT / folder).rglob("*.html")
    )


def test_no_template_formats_a_moment_by_itself() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}"
        for path in templates()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if BYPASS.search(line) or BARE_MOMENT.search(line)
    ]
    assert templates()
    assert found == []


def test_a_moment_reads_as_its_age_with_the_absolute_time_in_the_viewers_zone() -> None:
    moment = datetime(2026, 12, 6, 8, 12, tzinfo=UTC)
    now = datetime(2026, 12, 6, 11, 15, tzinfo=UTC)
    with timezone.override("Europe/Copenhagen"):
        html = timefmt.when(moment, now)
        assert html == (
            '<time datetime="2026-12-06T08:12:00+00:00" title="2026-12-06 09:12 CET">'
            "3\xa0hours ago</time>"
        )
        assert timefmt.iso(moment) == "2026-12-06T09:12:00+01:00"
    with timezone.override("America/New_York"):
        assert 'title="2026-12-06 03:12 EST"' in timefmt.when(moment, now)
    assert timefmt.when(None) == "—"
    assert ">in 2\xa0days<" in timefmt.when(datetime(2026, 12, 8, 12, tzinfo=UTC), now)


def test_each_viewer_sees_times_in_their_own_time_zone(admin_client: Any, admin_user: Any) -> None:
    from alerts import services
    from tests.factories import NOW, ConnectorFactory, CustomerFactory, StaleRuleFactory

    StaleRuleFactory.create()
    customer = CustomerFactory.create(name="Contoso Ltd")
    ConnectorFactory.create(customer=customer, backup_status__last_success_at=NOW)
    services.evaluate(now=NOW, send=False)
    page = admin_client.get(f"/admin/customers/customer/{customer.pk}/change/").content.decode()
    assert 'title="2026-11-26 12:00 UTC"' in page
    saved = admin_client.post("/accounts/preferences/", {"time_zone": "Europe/Copenhagen"})
    assert saved.status_code == 302
    page = admin_client.get(f"/admin/customers/customer/{customer.pk}/change/").content.decode()
    assert 'title="2026-11-26 13:00 CET"' in page
    assert 'title="2026-11-26 12:00 UTC"' not in page


def test_the_admins_own_lists_and_fields_show_times_the_same_way(
    admin_client: Any, admin_user: Any
) -> None:
    from alerts import services
    from alerts.models import Alert
    from tests.factories import NOW, ConnectorFactory, StaleRuleFactory

    StaleRuleFactory.create()
    ConnectorFactory.create(backup_status__last_success_at=NOW - timedelta(days=3))
    services.evaluate(now=NOW, send=False)
    alert = Alert.objects.get()
    for url in ("/admin/alerts/alert/", "/admin/backups/backupconnectorstatus/"):
        html = admin_client.get(url).content.decode()
        assert re.search(r'<time datetime="[^"]+" title="2026-11-2\d \d\d:\d\d UTC">', html), url
        assert not re.search(r" [ap]\.m\.", html), url
    # A change in the admin's history: its time the same way.
    rule = StaleRuleFactory._meta.model.objects.get()
    from django.contrib.admin.models import CHANGE, LogEntry

    LogEntry.objects.log_actions(admin_user.pk, [rule], CHANGE, change_message="Renamed.")
    history = admin_client.get(f"/admin/alerts/alertrule/{rule.pk}/history/").content.decode()
    assert "Renamed." in history
    assert not re.search(r" [ap]\.m\.", history)
    assert re.search(
        r'<time datetime="[^"]+" title="[^"]+">\d{4}-\d\d-\d\d \d\d:\d\d UTC</time>', history
    )
    assert alert.pk


def test_a_csv_export_gives_iso_8601_in_the_viewers_time_zone(admin_client: Any) -> None:
    from tests.factories import NOW, ConnectorFactory

    ConnectorFactory.create(backup_status__status="failed", backup_status__last_success_at=NOW)
    admin_client.post("/accounts/preferences/", {"time_zone": "Europe/Copenhagen"})
    response = admin_client.get("/admin/backups/?format=csv")
    body = b"".join(response.streaming_content).decode()
    assert "2026-11-26T13:00:00+01:00" in body
