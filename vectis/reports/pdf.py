"""The monthly report as a PDF: a Django template (templates/reports/monthly.html)
rendered by WeasyPrint, which needs Pango from the OS (see the README)."""

from __future__ import annotations

import base64
from types import ModuleType

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.template.loader import render_to_string
from django.utils import timezone

from customers.models import Customer

from ..models import ReportSettings
from .monthly import Month, Report, monthly_report

# WeasyPrint loads Pango from the OS when imported. Without it Vectis still runs (the
# demo needs only Python); asking for a report then says what to install. Imported when a
# report is asked for, not when Django starts: every process loads the admin, and
# WeasyPrint took about half a second of each start (the sync's audit process, each worker).


def _weasyprint() -> ModuleType:
    try:
        import weasyprint  # local import: half a second of each process's start
    except OSError as missing:  # (depends on the machine)
        raise ImproperlyConfigured(
            "The PDF report needs Pango from the operating system (on Debian: apt-get "
            f"install libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core): {missing}"
        ) from None
    module: ModuleType = weasyprint
    return module


def report_filename(customer: Customer, month: Month) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in customer.name).strip("-").lower()
    return f"backup-report-{slug or customer.pk}-{month.key}.pdf"


def logo_uri(look: ReportSettings) -> str:
    """The MSP's logo inlined in the page (a data: URI): WeasyPrint fetches nothing."""
    if not look.logo:
        return ""
    return f"data:{look.logo_type};base64,{base64.b64encode(bytes(look.logo)).decode()}"


def build_report(customer: Customer, month: Month) -> tuple[Report, bytes]:
    """The report's figures and its PDF, with the MSP's name and logo (Report settings)."""
    weasyprint = _weasyprint()
    look = ReportSettings.load()
    report = monthly_report(customer, month, msp_name=look.display_name)
    # The same report whoever asks for it: times in the MSP's zone, not the viewer's.
    with timezone.override(settings.TIME_ZONE):
        html = render_to_string(
            "reports/monthly.html",
            {"report": report, "generated_at": timezone.now(), "logo": logo_uri(look)},
        )
    # Only the inlined logo is ever "fetched": no file, no network, whatever a name holds.
    fetcher = weasyprint.URLFetcher(allowed_protocols={"data"})
    pdf: bytes = weasyprint.HTML(string=html, url_fetcher=fetcher).write_pdf()
    return report, pdf


def render_pdf(customer: Customer, month: Month) -> bytes:
    return build_report(customer, month)[1]
