"""Live progress of a sync on its connection page: the JSON the page polls moves through
the run's phases while a sandbox sync with latency runs."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connections
from django.test import Client
from pytest_django.fixtures import Settings

from backups.runner import run_sync
from tests.conftest import sandbox_connection, slow_sandbox


@pytest.mark.django_db(transaction=True)
def test_the_progress_line_moves_while_a_sync_runs(
    admin_client: Client, settings: Settings
) -> None:
    sandbox = slow_sandbox(latency_ms=60)
    try:
        settings.KEEPIT_BASE_URL_TEMPLATE = sandbox.base_url_template
        settings.VECTIS_SYNC_CHUNK_ACCOUNTS = 2  # four parts of two accounts
        connection = sandbox_connection(sandbox)
        url = f"/admin/keepit/keepitconnection/{connection.pk}/progress/"
        assert admin_client.get(url).json()["text"] == "No sync yet."

        def sync() -> None:
            try:
                run_sync(connection)
            finally:
                connections.close_all()

        worker = threading.Thread(target=sync)
        worker.start()
        seen: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            answer = admin_client.get(url).json()
            if not seen or seen[-1] != answer["text"]:
                seen.append(answer["text"])
            if not answer["running"] and not worker.is_alive():
                break
            time.sleep(0.05)
        worker.join(timeout=30)
    finally:
        sandbox.stop()
    running = [text for text in seen if text.endswith("so far.")]
    assert len(running) >= 2, seen  # it moved while the sync ran
    assert any(text.startswith("Reading accounts: ") for text in running), seen
    assert seen[-1].startswith("Last sync succeeded: 8 of 8 accounts read"), seen
    page = admin_client.get(f"/admin/keepit/keepitconnection/{connection.pk}/change/")
    assert 'id="sync-progress"' in page.content.decode()
    assert seen[-1] in page.content.decode()
