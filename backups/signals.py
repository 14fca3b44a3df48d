"""Signals of the backup inventory.

`account_excluded` is sent (after commit) when an account is excluded from monitoring;
the alerts app listens to end that account's open alerts at once, quietly.
"""

from __future__ import annotations

from django.dispatch import Signal

# kwargs: link (AccountLink), by (str: who excluded it)
account_excluded = Signal()
