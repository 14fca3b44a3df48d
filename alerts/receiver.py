"""A webhook receiver for development and the demo: it accepts Vectis's generic webhook
POSTs, checks their signature and prints them like the console prints e-mails (the
`webhook_receiver` command; `make demo` starts one on 127.0.0.1:9200). It also shows a
PSA or automation developer what arrives."""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .channels import webhook_signature


def describe(headers: dict[str, str], body: bytes, secret: str) -> str:
    """What the receiver prints for one delivery."""
    expected = webhook_signature(secret, headers.get("X-Vectis-Timestamp", ""), body)
    valid = hmac.compare_digest(expected, headers.get("X-Vectis-Signature", ""))
    try:
        payload: dict[str, Any] = json.loads(body)
    except ValueError:
        return "Webhook: not JSON (refused)"
    lines = [
        "-" * 72,
        f"Webhook {payload.get('type')} (delivery {headers.get('X-Vectis-Delivery')}, "
        f"signature {'ok' if valid else 'WRONG'})",
        f"Subject: {payload.get('subject')}",
    ]
    for alert in payload.get("alerts", []):
        lines.append(f"  [{alert.get('severity')}] {alert.get('event')}: {alert.get('summary')}")
        links = alert.get("links") or {}
        if links.get("acknowledge"):
            lines.append(f"    acknowledge: {links['acknowledge']}")
    return "\n".join(lines)


def serve(
    *, host: str, port: int, secret: str, write: Callable[[str], None]
) -> ThreadingHTTPServer:
    """A server (not started) that answers 200 to good signatures and 401 to others."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = dict(self.headers.items())
            text = describe(headers, body, secret)
            write(text)
            ok = "signature ok" in text
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return ThreadingHTTPServer((host, port), Handler)


def run_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread
