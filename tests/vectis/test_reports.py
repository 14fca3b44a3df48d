"""The monthly backup report: its figures checked in the PDF itself (read back with
pypdf) against a month built day by day, from the command, the customer page and for
each role."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from pypdf import PdfReader

from alerts.models import Alert
from backups.models import AccountLink, AuditCategory, BackupJobDay, BackupStatus
from customers.models import Customer
from tests.conftest import ARTIFACTS
from tests.factories import (
    AccountLinkFactory,
    AuditEventFactory,
    ConnectorFactory,
    CustomerFactory,
    JobDayFactory,
    StaleRuleFactory,
)
from vectis.reports import monthly
from vectis.reports.monthly import Month
from vectis.reports.pdf import render_pdf

pytestmark = pytest.mark.django_db
NOVEMBER = [date(2026, 11, 1) + timedelta(days=n) for n in range(30)]


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


@pytest.fixture
def november() -> Customer:
    """Contoso's November: Mail backed up every day; Files without a complete backup on
    the 10th and 11th (no job) and a failed job on the 20th; a restore on the 15th; one
    alert opened on the 10th and resolved 36 hours later."""
    contoso = CustomerFactory.create(name="Contoso Ltd")
    mail = ConnectorFactory.create(
        customer=contoso,
        name="Contoso Mail",
        first_seen_at=datetime(2026, 10, 1, tzinfo=UTC),
        backup_status__last_success_at=at(30, 23),
    )
    files = ConnectorFactory.create(
        customer=contoso,
        name="Contoso Files",
        kind="m365",
        first_seen_at=datetime(2026, 10, 1, tzinfo=UTC),
        backup_status__status=BackupStatus.OK,
        backup_status__last_success_at=at(30, 22),
    )
    for day in NOVEMBER:
        JobDayFactory.create(connector=mail, day=day, successful=1)
        if day.day in (10, 11):
            JobDayFactory.create(connector=files, day=day, successful=0)
        elif day.day == 20:
            JobDayFactory.create(connector=files, day=day, successful=0, unsuccessful=1)
        else:
            JobDayFactory.create(connector=files, day=day, successful=2)
    AuditEventFactory.create(
        customer=contoso,
        connector=files,
        category=AuditCategory.RECOVERY,
        area="Restore",
        message="Restored the folder /Finance/2026 to its original place",
        actor="tech@msp.example",
        occurred_at=at(15, 9),
        succeeded=True,
    )
    rule = StaleRuleFactory.create()
    Alert.objects.create(
        rule=rule,
        connector=files,
        kind="backup_stale",
        key=f"stale:{files.pk}",
        summary="Contoso Ltd: Contoso Files — no complete backup",
        opened_at=at(10, 12),
        last_seen_at=at(12),
        resolved_at=at(12, 0),
    )
    return contoso


def text_of(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return " ".join(" ".join((page.extract_text() or "").split()) for page in reader.pages)


def test_the_report_says_what_happened_in_the_month(november: Customer, tmp_path: Path) -> None:
    out = tmp_path / "report.pdf"
    call_command("backup_report", customer=november.pk, month="2026-11", out=str(out))
    pdf = out.read_bytes()
    assert pdf.startswith(b"%PDF-")
    text = text_of(pdf)
    assert "Backup report — Contoso Ltd" in text
    assert "November 2026 (2026-11-01 to 2026-11-30, days in UTC)" in text
    # The summary at the top names the exception and its days.
    assert (
        "1 of 2 backups ran completely every day in November 2026; the exceptions: "
        "Contoso Files (3 days without a complete backup)."
    ) in text
    assert "1 alert opened, 1 resolved in the month." in text
    assert "1 restore or download operation was performed." in text
    # Per connector: complete days, the longest gap, the last complete backup.
    assert re.search(r"Contoso Files .*27 of 30 2 days", text), text
    assert "Days without a complete backup: 10, 11, 20 27 of 30" in text
    assert re.search(r"Contoso Mail .*30 of 30 none", text), text
    # Alerts: time to resolve 36 h; the restore with who did it.
    assert "36.0 h / 36.0 h" in text
    assert "Restored the folder /Finance/2026 to its original place tech@msp.example" in text
    assert "Page 1 of" in text
    # A page of it, as an image, to look at (pdftoppm from Debian's poppler-utils).
    pdftoppm = shutil.which("pdftoppm")
    assert pdftoppm, "pdftoppm is missing: apt-get install -y poppler-utils"
    folder = ARTIFACTS / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "monthly-report-page-1"
    command = [pdftoppm, "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile"]
    subprocess.run([*command, str(out), str(target)], check=True)
    assert (folder / "monthly-report-page-1.png").stat().st_size > 10_000


def test_the_customer_page_downloads_any_month(november: Customer, admin_client: Client) -> None:
    page = admin_client.get(f"/admin/customers/customer/{november.pk}/change/").content.decode()
    assert 'data-testid="monthly-report"' in page
    response = admin_client.get(f"/admin/customers/customer/{november.pk}/report/?month=2026-11")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == (
        'attachment; filename="backup-report-contoso-ltd-2026-11.pdf"'
    )
    assert "Contoso Files" in text_of(response.content)
    wrong = admin_client.get(
        f"/admin/customers/customer/{november.pk}/report/?month=November", follow=True
    )
    assert "“November” is not a month: write it as YYYY-MM, e.g. 2026-11." in wrong.content.decode()


def test_the_command_says_what_is_wrong(november: Customer) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=r"No customer has the id 999999\."):
        call_command("backup_report", customer=999999, month="2026-11")
    with pytest.raises(CommandError, match="is not a month"):
        call_command("backup_report", customer=november.pk, month="11/2026")


def test_a_day_reads_the_same_in_the_report_as_on_the_pages() -> None:
    """A day with a successful and a failed job is failed on the strips: so in the report."""
    from backups.models import BackupJobDay
    from vectis.reports.monthly import day_outcome

    cases = {
        (1, 1, 0): "failed",
        (1, 0, 1): "partial",
        (2, 0, 0): "complete",
        (0, 0, 0): "none",
    }
    for (successful, unsuccessful, incomplete), expected in cases.items():
        day = BackupJobDay(successful=successful, unsuccessful=unsuccessful, incomplete=incomplete)
        assert day_outcome(day) == expected, (successful, unsuccessful, incomplete)
    assert day_outcome(None) == "unread"


def test_coverage_alerts_and_restores_count_the_month_not_today(
    november: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Made in February: a service added and one removed in November, an alert still open
    at its end, a backup in December that is not November's, an excluded account's
    connector left out, and more restores than the PDF lists."""
    mail = november.connectors.get(name="Contoso Mail")
    mail.backup_status.last_success_at = datetime(2027, 2, 3, tzinfo=UTC)
    mail.backup_status.save()
    BackupJobDay.objects.filter(connector=mail, day=NOVEMBER[-1]).update(last_job_end_at=at(30, 21))
    teams = ConnectorFactory.create(
        customer=november,
        name="Contoso Teams",
        kind="m365",
        first_seen_at=at(15),
        backup_status__last_success_at=None,
        backup_status__status=BackupStatus.ONBOARDING,
    )
    ConnectorFactory.create(
        customer=november,
        name="Old Archive",
        first_seen_at=at(1) - timedelta(days=40),
        removed_at=at(20),
    )
    excluded = AccountLinkFactory.create(customer=november, state=AccountLink.State.EXCLUDED)
    ConnectorFactory.create(customer=november, name="Not Monitored", account_link=excluded)
    Alert.objects.create(
        rule=StaleRuleFactory.create(),
        connector=teams,
        kind="backup_stale",
        key=f"stale:{teams.pk}",
        opened_at=at(25),
        last_seen_at=at(25),
    )
    AuditEventFactory.create(
        customer=november,
        connector=mail,
        category=AuditCategory.RECOVERY,
        message="Downloaded a mailbox export",
        occurred_at=at(16),
        succeeded=True,
    )
    monkeypatch.setattr(monthly, "RECOVERIES_LISTED", 1)
    text = text_of(render_pdf(november, Month(NOVEMBER[0])))
    assert "Not Monitored" not in text
    assert "Backed-up services at the end of the month 3" in text  # Mail, Files, Teams
    assert "Protected (at least one complete backup) 2" in text
    assert "Not yet backed up 1" in text
    assert "Added in the month 1" in text
    assert "Removed in the month 1" in text
    assert "Still open at the end of the month 1" in text
    assert "2 alerts opened, 1 resolved in the month, 1 still open at its end." in text
    # Mail's last complete backup is November's last, not February's.
    assert re.search(r"Contoso Mail .*30 of 30 none 2026-11-30 21:00", text), text
    assert "2 restore or download operations were performed." in text
    assert "2 in the month; the first 1 are listed." in text
