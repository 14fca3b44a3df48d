"""The monthly backup report per customer: its figures (monthly.py) and its PDF (pdf.py)."""
