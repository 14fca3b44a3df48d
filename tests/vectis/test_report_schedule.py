"""The monthly reports on their own: due on the 1st at the hour chosen in Report settings
(MSP time zone), one Celery task per customer with report recipients, sent once to each
recipient as a PDF attachment through the delivery log (retried and visible like any
alert e-mail), with the MSP's name and logo set in the admin."""

from __future__ import annotations

import io
import random
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image
from pypdf import PdfReader

from alerts.models import AlertNotification, NotificationAttachment
from alerts.services import send_due
from customers.models import Customer
from tests.backups.test_fan_out import wait_for
from tests.conftest import celery_worker
from tests.factories import ConnectorFactory, CustomerFactory, JobDayFactory
from tests.mail import SmtpServer
from vectis.models import MonthlyReport, ReportSettings, ReportSubscription
from vectis.reports.monthly import Month
from vectis.reports.pdf import render_pdf
from vectis.reports.schedule import customers_due, due_month, send_report
from vectis.tasks import plan_monthly_reports

NOVEMBER = Month(date(2026, 11, 1))
FIRST_OF_DECEMBER = datetime(2026, 12, 1, 7, 5, tzinfo=UTC)


def customer_with_november(name: str, recipients: str | None) -> Customer:
    """A customer whose one service was backed up every day of November."""
    customer = CustomerFactory.create(name=name)
    connector = ConnectorFactory.create(
        customer=customer,
        name=f"{name} Mail",
        first_seen_at=datetime(2026, 10, 1, tzinfo=UTC),
        backup_status__last_success_at=datetime(2026, 11, 30, 23, tzinfo=UTC),
    )
    for day in NOVEMBER.days:
        JobDayFactory.create(connector=connector, day=day, successful=1)
    if recipients is not None:
        ReportSubscription.objects.create(customer=customer, recipients=recipients)
    return customer


def text_of(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return " ".join(" ".join((page.extract_text() or "").split()) for page in reader.pages)


@pytest.mark.parametrize(
    ("local", "hour", "enabled", "due"),
    [
        ((2026, 12, 1, 6, 59), 7, True, None),  # the 1st, before the hour
        ((2026, 12, 1, 7, 0), 7, True, "2026-11"),
        ((2026, 12, 3, 23, 59), 7, True, "2026-11"),  # catching up a missed beat
        ((2026, 12, 4, 0, 0), 7, True, None),  # too late: not mid-month
        ((2027, 1, 1, 0, 30), 0, True, None),  # still 31 December in UTC: not over
        ((2027, 1, 1, 3, 30), 0, True, "2026-12"),  # its last UTC day read one last time
        ((2026, 12, 1, 9, 0), 7, False, None),  # the schedule switched off
    ],
)
@pytest.mark.django_db
def test_reports_are_due_from_the_first_at_the_chosen_hour_in_the_msps_zone(
    settings: Any, local: tuple[int, ...], hour: int, enabled: bool, due: str | None
) -> None:
    settings.TIME_ZONE = "Europe/Copenhagen"
    year, month_, day, hour_, minute = local
    zone = ZoneInfo("Europe/Copenhagen")
    now = datetime(year, month_, day, hour_, minute, tzinfo=zone).astimezone(UTC)
    look = ReportSettings(send_hour=hour, schedule_enabled=enabled)
    month = due_month(now, look)
    assert (month.key if month else None) == due


@pytest.mark.django_db
def test_a_report_goes_once_to_each_recipient_as_a_pdf_and_a_failed_send_is_retried(
    smtp: SmtpServer, admin_client: Client
) -> None:
    contoso = customer_with_november("Contoso Ltd", "it@contoso.example, ceo@contoso.example")
    customer_with_november("Fabrikam", None)  # no subscription
    customer_with_november("Tailspin", "")  # recipients left empty
    now = FIRST_OF_DECEMBER
    month = due_month(now)
    assert month == NOVEMBER
    assert customers_due(month) == [contoso.pk]

    smtp.stop()  # the mail server is down when the reports are made
    made = send_report(contoso.pk, month, now=now)
    assert made is not None
    assert send_report(contoso.pk, month, now=now) is None  # a second task sends nothing
    assert customers_due(month) == []
    assert send_due(now=now) == (0, 2)
    log = AlertNotification.objects.filter(purpose=AlertNotification.Purpose.REPORT)
    assert sorted(log.values_list("recipient", "status", "attempts")) == [
        ("ceo@contoso.example", "pending", 1),
        ("it@contoso.example", "pending", 1),
    ]
    # Visible in the delivery log, with the file it carries.
    entry = log.first()
    assert entry is not None
    page = admin_client.get(f"/admin/alerts/alertnotification/{entry.pk}/change/")
    html = page.content.decode()
    assert "Monthly report" in html
    assert f"backup-report-contoso-ltd-2026-11.pdf ({made.size:,} bytes)" in html
    assert "Connection refused" in html or "ConnectionRefusedError" in html

    # An alert written after the reports still goes first.
    alert_message = AlertNotification.objects.create(
        recipient="noc@msp.example",
        subject="[Vectis] Backup failed",
        body_text="…",
        body_html="…",
        created_at=now + timedelta(minutes=1),
        next_attempt_at=now + timedelta(minutes=1),
    )
    smtp.start()
    assert send_due(now=now + timedelta(minutes=2)) == (3, 0)
    assert str(smtp.inbox.messages[0]["To"]) == alert_message.recipient
    inbox = smtp.inbox.messages[1:]
    assert sorted(str(m["To"]) for m in inbox) == ["ceo@contoso.example", "it@contoso.example"]
    for message in inbox:
        assert str(message["Subject"]) == "Backup report — Contoso Ltd, November 2026"
        assert isinstance(message, EmailMessage)
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        assert "All 1 backups ran completely on every day" in body.get_content()
        files = list(message.iter_attachments())
        assert [(f.get_filename(), f.get_content_type()) for f in files] == [
            ("backup-report-contoso-ltd-2026-11.pdf", "application/pdf")
        ]
        pdf = files[0].get_content()
        assert len(pdf) == made.size
        assert "Backup report — Contoso Ltd" in text_of(pdf)
    # Sent is sent: the next passes send nothing more.
    assert send_due(now=now + timedelta(hours=1)) == (0, 0)
    # Sent: the log keeps the file's name and size, not its bytes.
    kept = NotificationAttachment.objects.filter(notification__in=log)
    assert {(bytes(f.content), f.size) for f in kept} == {(b"", made.size)}
    later = admin_client.get(f"/admin/alerts/alertnotification/{entry.pk}/change/")
    assert f"backup-report-contoso-ltd-2026-11.pdf ({made.size:,} bytes)" in later.content.decode()


def png(width: int, height: int, *, noise: bool = False) -> bytes:
    image = Image.new("RGB", (width, height), (11, 61, 145))
    if noise:
        pixels = random.Random(0).randbytes(width * height * 3)  # does not compress
        image = Image.frombytes("RGB", (width, height), pixels)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.mark.django_db
def test_the_msps_name_and_logo_set_in_the_admin_are_on_the_report(admin_client: Client) -> None:
    contoso = customer_with_november("Contoso Ltd", None)
    page = admin_client.get("/admin/vectis/reportsettings/", follow=True)
    assert page.redirect_chain[-1][0] == "/admin/vectis/reportsettings/1/change/"
    url = "/admin/vectis/reportsettings/1/change/"
    fields = {"msp_name": "Northwind IT", "schedule_enabled": "on", "send_hour": "6"}

    # A file that is not an image, and an image too large, are refused with a sentence.
    answer = admin_client.post(
        url, {**fields, "logo_file": SimpleUploadedFile("logo.png", b"not a picture")}
    )
    assert "Upload a valid image" in answer.content.decode()
    big = png(700, 700, noise=True)
    assert len(big) > 512 * 1024
    answer = admin_client.post(url, {**fields, "logo_file": SimpleUploadedFile("big.png", big)})
    assert "the limit is 512 KB" in answer.content.decode()
    assert not ReportSettings.load().logo

    answer = admin_client.post(
        url, {**fields, "logo_file": SimpleUploadedFile("logo.png", png(300, 80))}
    )
    assert answer.status_code == 302
    settings_row = ReportSettings.load()
    assert (settings_row.msp_name, settings_row.logo_type) == ("Northwind IT", "image/png")
    # Kept as a small PNG whatever came in: a wide JPEG is shrunk to 1200 by 400 at most.
    jpeg = io.BytesIO()
    Image.new("RGB", (3000, 600), (200, 30, 30)).save(jpeg, format="JPEG")
    admin_client.post(url, {**fields, "logo_file": SimpleUploadedFile("w.jpg", jpeg.getvalue())})
    with Image.open(io.BytesIO(bytes(ReportSettings.load().logo))) as kept:
        assert (kept.format, kept.size) == ("PNG", (1200, 240))
    admin_client.post(url, {**fields, "logo_file": SimpleUploadedFile("logo.png", png(300, 80))})
    reader = PdfReader(io.BytesIO(render_pdf(contoso, NOVEMBER)))
    first = reader.pages[0]
    assert (first.extract_text() or "").startswith("Northwind IT")
    assert [(image.image.width, image.image.height) for image in first.images if image.image] == [
        (300, 80)
    ]

    admin_client.post(url, {**fields, "remove_logo": "on"})
    reader = PdfReader(io.BytesIO(render_pdf(contoso, NOVEMBER)))
    assert list(reader.pages[0].images) == []


@pytest.fixture
def purged() -> None:
    from vectis.celery import app

    app.control.purge()  # no message of an earlier test reaches this worker


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_monthly_run_fans_out_one_task_per_customer_over_a_celery_worker(
    purged: None,
) -> None:
    waiting = [customer_with_november(f"Customer {n}", f"it@customer{n}.example") for n in range(3)]
    done = customer_with_november("Already sent", "it@sent.example")
    MonthlyReport.objects.create(
        customer=done,
        month=NOVEMBER.first,
        recipients="it@sent.example",
        filename="x.pdf",
        size=1,
        created_at=FIRST_OF_DECEMBER,
    )
    customer_with_november("No recipients", None)
    with time_machine.travel(FIRST_OF_DECEMBER, tick=False):
        planned = plan_monthly_reports.apply().get()
    assert planned == {"month": "2026-11", "queued": 3}
    with celery_worker("reports"):
        wait_for(
            lambda: MonthlyReport.objects.filter(customer__in=waiting).count() == 3,
            seconds=90,
            what="the worker to make the three reports",
        )
    log = AlertNotification.objects.filter(purpose=AlertNotification.Purpose.REPORT)
    assert sorted(log.values_list("recipient", flat=True)) == [
        f"it@customer{n}.example" for n in range(3)
    ]
    assert all(entry.attachments.count() == 1 for entry in log)
    # Planned again within the hour: nothing is left to queue.
    with time_machine.travel(FIRST_OF_DECEMBER + timedelta(hours=1), tick=False):
        assert plan_monthly_reports.apply().get() == {"month": "2026-11", "queued": 0}


@pytest.mark.django_db
def test_report_recipients_are_set_on_the_customer_page_and_checked(admin_client: Client) -> None:
    contoso = customer_with_november("Contoso Ltd", None)
    url = f"/admin/customers/customer/{contoso.pk}/change/"
    assert "Monthly report recipients" in admin_client.get(url).content.decode()
    form = {
        "name": "Contoso Ltd",
        "report_subscription-TOTAL_FORMS": "1",
        "report_subscription-INITIAL_FORMS": "0",
        "report_subscription-0-customer": str(contoso.pk),
    }
    answer = admin_client.post(url, {**form, "report_subscription-0-recipients": "it@, ceo@x.io"})
    assert "Not an e-mail address: it@" in answer.content.decode()
    assert not ReportSubscription.objects.exists()
    answer = admin_client.post(
        url, {**form, "report_subscription-0-recipients": "it@contoso.example\nceo@contoso.example"}
    )
    assert answer.status_code == 302
    assert customers_due(NOVEMBER) == [contoso.pk]
