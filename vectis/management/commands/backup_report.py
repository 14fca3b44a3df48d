"""`manage.py backup_report --customer ID --month 2026-11 [--out FILE]`: one customer's
monthly backup report as a PDF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from customers.models import Customer
from vectis.reports.monthly import Month
from vectis.reports.pdf import render_pdf, report_filename


class Command(BaseCommand):
    help = "Write a customer's monthly backup report (PDF)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--customer", type=int, required=True, help="the customer's id")
        parser.add_argument("--month", required=True, help="the month, YYYY-MM (e.g. 2026-11)")
        parser.add_argument("--out", help="the file to write (default: a name in this folder)")

    def handle(self, *args: Any, **options: Any) -> None:
        customer = Customer.objects.filter(pk=options["customer"]).first()
        if customer is None:
            raise CommandError(f"No customer has the id {options['customer']}.")
        try:
            month = Month.parse(options["month"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        out = Path(options["out"] or report_filename(customer, month))
        try:
            out.write_bytes(render_pdf(customer, month))
        except OSError as exc:
            raise CommandError(f"Could not write {out}: {exc.strerror}.") from None
        self.stdout.write(f"Wrote the {month.label} report of {customer.name} to {out}.")
