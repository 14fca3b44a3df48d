"""The monthly report as a PDF: a Django template (templates/reports/monthly.html)
rendered by WeasyPrint, which needs Pango from the OS (see the README)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.template.loader import render_to_string
from django.utils import timezone

from customers.models import Customer

from .monthly import Month, monthly_report

# WeasyPrint loads Pango from the OS when imported. Without it Vectis still runs (the
# demo needs only Python); asking for a report then says what to install.
PANGO_MISSING = ""
try:
    import weasyprint
except OSError as missing:  # (depends on the machine)
    weasyprint = None
    PANGO_MISSING = str(missing)


def report_filename(customer: Customer, month: Month) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in customer.name).strip("-").lower()
    return f"backup-report-{slug or customer.pk}-{month.key}.pdf"


def render_pdf(customer: Customer, month: Month) -> bytes:
    if weasyprint is None:
        raise ImproperlyConfigured(
            "The PDF report needs Pango from the operating system (on Debian: apt-get "
            f"install libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core): {PANGO_MISSING}"
        )
    report = monthly_report(customer, month, msp_name=settings.VECTIS_MSP_NAME)
    html = render_to_string(
        "reports/monthly.html", {"report": report, "generated_at": timezone.now()}
    )
    pdf: bytes = weasyprint.HTML(string=html).write_pdf()
    return pdf
