"""Signals of the integrations framework.

`sync_finished` is sent (after commit) when a sync run ends, whatever its outcome; the
alerts app listens to evaluate the rules for what the sync touched.
"""

from __future__ import annotations

from django.dispatch import Signal

# kwargs: connection (Connection), run (SyncRun)
sync_finished = Signal()
