"""`manage.py webhook_receiver`: receive Vectis's generic webhook on loopback and print
each delivery (checking its signature) — for the demo and for whoever builds on it."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from alerts.receiver import run_in_thread, serve

# The demo channel's signing secret: a known value on purpose (the demo is local only).
DEMO_SECRET = "demo-webhook-secret"  # noqa: S105


class Command(BaseCommand):
    help = "Print the generic webhook deliveries Vectis posts to http://127.0.0.1:PORT/."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=9200)
        parser.add_argument("--secret", default=DEMO_SECRET, help="the channel's signing secret")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["host"] not in {"127.0.0.1", "localhost", "::1"}:
            raise CommandError("The receiver only listens on loopback.")

        def write(text: str) -> None:
            self.stdout.write(text)
            self.stdout.flush()

        server = serve(
            host=options["host"], port=options["port"], secret=options["secret"], write=write
        )
        self.stdout.write(
            f"Webhook receiver on http://{options['host']}:{options['port']}/ "
            "(prints each delivery; answers 401 to a wrong signature)"
        )
        run_in_thread(server)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
            server.server_close()
