"""The monthly reports on their own: on the 1st of each month at the hour chosen in Report
settings (MSP time zone), last month's report goes to every customer with report
recipients, through the delivery log (one message per recipient, the PDF attached), so
a failed send is retried and visible like any alert e-mail.

The hourly beat task plans (`due_month`, `customers_due`) and queues one Celery task per
customer (`send_report`), so 2,000 customers spread over every worker. `send_report` is
idempotent: a `MonthlyReport` row (unique per customer and month), written with the
messages while the subscription row is locked, says the month went out — a task retried,
run twice or planned again an hour later sends nothing more. A beat missed on the 1st
(Vectis down) catches up during the first `CATCH_UP_DAYS` days of the month."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.html import format_html

from alerts.compose import clean_header
from alerts.models import AlertNotification, NotificationAttachment
from customers.models import Customer

from ..models import MonthlyReport, ReportSettings, ReportSubscription
from .monthly import Month
from .pdf import build_report, report_filename

CATCH_UP_DAYS = 3
# The month's last UTC day is read one last time an hour after midnight (the sync).
SETTLED_AFTER = timedelta(hours=2)


def due_month(now: datetime, look: ReportSettings | None = None) -> Month | None:
    """The month whose reports are due at `now` (last month, from the 1st at the chosen
    hour until the catch-up days are over), or None. Never before the month's last UTC
    day has been read one last time (`SETTLED_AFTER` past its end): east of UTC the 1st
    at 07:00 can still be the month's last day in UTC."""
    look = look or ReportSettings.load()
    if not look.schedule_enabled:
        return None
    local = now.astimezone(ZoneInfo(settings.TIME_ZONE))
    if local.day > CATCH_UP_DAYS or (local.day == 1 and local.hour < look.send_hour):
        return None
    this_month = local.date().replace(day=1)
    month = Month((this_month - timedelta(days=1)).replace(day=1))
    if now < month.end + SETTLED_AFTER:
        return None
    return month


def customers_due(month: Month) -> list[int]:
    """Customers with report recipients whose report for `month` has not gone out."""
    return list(
        ReportSubscription.objects.exclude(recipients="")
        .exclude(customer__monthly_reports__month=month.first)
        .order_by("customer_id")
        .values_list("customer_id", flat=True)
    )


def send_report(customer_id: int, month: Month, *, now: datetime) -> MonthlyReport | None:
    """Make one customer's report and write it to the delivery log, once. None when it
    went out already, the customer has no recipients (any more) or the schedule was
    switched off since the plan. The PDF is made outside any transaction (a second or
    two); then, with the subscription row locked, the month is checked again and the
    messages written, so two tasks at once send one report."""
    if not ReportSettings.load().schedule_enabled:
        return None
    subscription = (
        ReportSubscription.objects.select_related("customer")
        .filter(customer_id=customer_id)
        .first()
    )
    if subscription is None or not subscription.recipient_list:
        return None
    customer: Customer = subscription.customer
    if MonthlyReport.objects.filter(customer=customer, month=month.first).exists():
        return None
    report, pdf = build_report(customer, month)
    filename = report_filename(customer, month)
    subject = clean_header(f"Backup report — {customer.name}, {month.label}")
    text = (
        f"Hello,\n\nAttached is the backup report of {customer.name} for "
        f"{month.label}.\n\n{report.summary}\n\n{report.msp_name}\n"
    )
    html = format_html(
        "<p>Hello,</p><p>Attached is the backup report of {} for {}.</p><p>{}</p><p>{}</p>",
        customer.name,
        month.label,
        report.summary,
        report.msp_name,
    )
    try:
        with transaction.atomic():
            locked = (
                ReportSubscription.objects.select_for_update(of=("self",))
                .filter(pk=subscription.pk)
                .first()
            )
            recipients = locked.recipient_list if locked is not None else []
            if not recipients:
                return None
            if MonthlyReport.objects.filter(customer=customer, month=month.first).exists():
                return None
            made = MonthlyReport.objects.create(
                customer=customer,
                month=month.first,
                recipients="\n".join(recipients),
                filename=filename,
                size=len(pdf),
                created_at=now,
            )
            notifications = AlertNotification.objects.bulk_create(
                AlertNotification(
                    recipient=address,
                    purpose=AlertNotification.Purpose.REPORT,
                    subject=subject,
                    body_text=text,
                    body_html=html,
                    created_at=now,
                    next_attempt_at=now,
                )
                for address in recipients
            )
            NotificationAttachment.objects.bulk_create(
                NotificationAttachment(
                    notification=notification,
                    filename=filename,
                    content_type="application/pdf",
                    content=pdf,
                    size=len(pdf),
                )
                for notification in notifications
            )
    except IntegrityError:
        return None  # another task wrote this month between our check and our insert
    return made
