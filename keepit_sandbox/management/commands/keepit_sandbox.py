"""`manage.py keepit_sandbox`: serve a simulated Keepit MSP on loopback.

The help text is what a demo user reads first, so it lists the states the sandbox
simulates as well as its flags.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from keepit_sandbox import KeepitSandbox, SandboxConfig
from keepit_sandbox.server import DEFAULT_RANDOM_FAULTS, FAULT_KINDS


class Command(BaseCommand):
    help = (
        "Serve a simulated Keepit MSP (the Keepit API of keepit-api.md Part A, and the read "
        "calls of Part C) on loopback. Point Vectis at it with "
        "KEEPIT_BASE_URL_TEMPLATE=http://127.0.0.1:PORT/{region}. Same flags, same data: "
        "everything derives from --seed and the clock. What it simulates: connectors that "
        "are healthy, flapping, partial, onboarding, stalled, with a lost login (BADTOKEN, "
        "BADLOGIN, NONADMINLOGIN), over a seat limit (QUOTAVIOLATED, GRACETIMERSTARTED), "
        "misconfigured, inaccessible, scheduled for deletion, or with a reason code Keepit "
        "never published; per-connector and aggregated health; backup jobs (history, "
        "active jobs, job counts: successful, incomplete, unsuccessful, cancelled) that "
        "agree with the backup summary; device status with Keepit's error codes (E_REVOKED, "
        "E_QUOTA, ..., Salesforce status 7); seat usage and seat-limit violations with grace "
        "periods; the user's primary, API and session tokens (the API token expires "
        "--token-expires-in-days after the start day, 65 by default); the v3 child list, "
        "where one account in 25 (the 25th, 50th, ...) is scheduled for deletion; the audit "
        "log, including the API calls made with the MSP's "
        "credentials."
    )
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = SandboxConfig()
        parser.add_argument(
            "--host",
            default="127.0.0.1",
            help="Address to listen on (default: 127.0.0.1; keep it on loopback).",
        )
        parser.add_argument(
            "--port", type=int, default=9100, help="Port (default: 9100; 0 picks a free one)."
        )
        parser.add_argument(
            "--region",
            default=defaults.region,
            help="The one region the MSP lives in; other regions answer 401 (default: us-dc).",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=defaults.seed,
            help="Seed of all generated data (default: 1).",
        )
        parser.add_argument(
            "--accounts",
            type=int,
            default=defaults.accounts,
            help="Number of customer (child) accounts (default: 25).",
        )
        parser.add_argument(
            "--connectors-per-account",
            type=int,
            default=defaults.connectors_per_account,
            help=(
                "Backup connectors per account, plus a 'system' device on every 10th "
                "account (default: 4)."
            ),
        )
        parser.add_argument(
            "--events-per-account-per-day",
            type=int,
            default=defaults.events_per_account_per_day,
            help="Audit records per account per day (default: 10).",
        )
        parser.add_argument(
            "--audit-history-days",
            type=int,
            default=defaults.audit_history_days,
            help="Days of audit history kept (default: 30).",
        )
        parser.add_argument(
            "--speed",
            type=float,
            default=1.0,
            help=(
                "Clock speed: 1 follows real time, 60 makes a minute pass each second, "
                "0 freezes it (default: 1)."
            ),
        )
        parser.add_argument(
            "--start", default="", help="The sandbox's time at start-up, ISO 8601 (default: now)."
        )
        parser.add_argument(
            "--processes",
            type=int,
            default=1,
            help="answer with this many processes (benchmarks: a real Keepit has more than "
            "one core); each holds its own copy of the simulated MSP, so it needs --speed 0, "
            "and what requests change (own-read records, a token's last use) is per process",
        )
        parser.add_argument(
            "--latency-ms",
            type=int,
            default=0,
            help="Added latency per request in milliseconds (default: 0).",
        )
        parser.add_argument(
            "--fault-rate",
            type=float,
            default=0.0,
            help="Share of requests answered with a fault, 0..1 (default: 0).",
        )
        parser.add_argument(
            "--fault-kinds",
            default=",".join(DEFAULT_RANDOM_FAULTS),
            help=(
                "Faults --fault-rate picks from, comma-separated; known: "
                f"{', '.join(FAULT_KINDS)} (default: %(default)s)."
            ),
        )
        # The simulated MSP's credentials are public on purpose: they are what the admin
        # types into the Keepit form to try Vectis against the sandbox.
        parser.add_argument(
            "--username",
            default=os.environ.get("KEEPIT_SANDBOX_USERNAME", defaults.username),
            help="Login of the MSP's user (env KEEPIT_SANDBOX_USERNAME; default: %(default)s).",
        )
        parser.add_argument(
            "--password",
            default=os.environ.get("KEEPIT_SANDBOX_PASSWORD", defaults.password),
            help="Password of that user (env KEEPIT_SANDBOX_PASSWORD; default: %(default)s).",
        )
        parser.add_argument(
            "--token-login",
            default=os.environ.get("KEEPIT_SANDBOX_TOKEN_LOGIN", defaults.token_login),
            help="API token login (env KEEPIT_SANDBOX_TOKEN_LOGIN; default: %(default)s).",
        )
        parser.add_argument(
            "--token-password",
            default=os.environ.get("KEEPIT_SANDBOX_TOKEN_PASSWORD", defaults.token_password),
            help="API token password (env KEEPIT_SANDBOX_TOKEN_PASSWORD; default: %(default)s).",
        )
        parser.add_argument(
            "--no-own-read-audit",
            action="store_true",
            help="Do not write the API calls made with the MSP's credentials into its audit log.",
        )
        parser.add_argument(
            "--no-aggregated-health",
            action="store_true",
            help=(
                "Answer GET /users/{id}/devices/health (the health of all connectors in one "
                "call) with 404, like a Keepit without that call; Vectis then asks each "
                "connector's health."
            ),
        )
        parser.add_argument(
            "--token-expires-in-days",
            type=int,
            default=defaults.token_expires_in_days,
            help=(
                "When the MSP's API token expires, in days from the start (default: 65; "
                "`make demo` uses 20, so the demo shows the API-token alert)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["host"] not in {"127.0.0.1", "localhost", "::1"}:
            raise CommandError("The sandbox only listens on loopback (127.0.0.1, localhost, ::1).")
        start = None
        if options["start"]:
            try:
                start = datetime.fromisoformat(options["start"].replace("Z", "+00:00"))
            except ValueError as exc:
                raise CommandError(f"--start is not an ISO 8601 time: {options['start']}") from exc
            if start.tzinfo is None:
                start = start.replace(tzinfo=UTC)
        kinds = [kind.strip() for kind in options["fault_kinds"].split(",") if kind.strip()]
        unknown = [kind for kind in kinds if kind.split(":")[0] not in FAULT_KINDS]
        if unknown:
            raise CommandError(f"Unknown fault kinds: {', '.join(unknown)}")
        config = SandboxConfig(
            seed=options["seed"],
            region=options["region"],
            accounts=options["accounts"],
            connectors_per_account=options["connectors_per_account"],
            events_per_account_per_day=options["events_per_account_per_day"],
            audit_history_days=options["audit_history_days"],
            username=options["username"],
            password=options["password"],
            token_login=options["token_login"],
            token_password=options["token_password"],
            own_read_audit=not options["no_own_read_audit"],
            token_expires_in_days=options["token_expires_in_days"],
        )
        sandbox = KeepitSandbox(
            config,
            host=options["host"],
            port=options["port"],
            start=start,
            speed=options["speed"],
            latency_ms=options["latency_ms"],
            fault_rate=options["fault_rate"],
            fault_kinds=kinds,
            aggregated_health=not options["no_aggregated_health"],
        )
        msp = sandbox.msp
        connectors = sum(len(c) for c in msp.connectors.values())
        now = sandbox.clock.now()
        scenarios = Counter(
            c.scenario for cs in msp.connectors.values() for c in cs if c.type != "system"
        )
        deleting = sum(1 for a in msp.accounts if msp.account_deletion(a) is not None)
        over_limit = sum(
            1 for a in msp.accounts if any(r.violated for r in msp.seat_resources(a, now))
        )
        self.stdout.write(
            f"Keepit sandbox for region {config.region} on {sandbox.url}/{config.region}\n"
            f"  parent account GUID: {msp.parent.guid}\n"
            f"  Keepit URL to paste: https://{config.region}.keepit.com/users/{msp.parent.guid}\n"
            f"  {len(msp.accounts)} customer accounts, {connectors} devices\n"
            f"  username / password: {config.username} / {config.password}\n"
            f"  API token login / password: {config.token_login} / {config.token_password}\n"
            f"  Vectis: KEEPIT_BASE_URL_TEMPLATE={sandbox.base_url_template}\n"
            f"  connector scenarios: "
            + ", ".join(f"{name} {count}" for name, count in scenarios.most_common())
            + "\n"
            f"  accounts over a seat limit: {over_limit}; scheduled for deletion: {deleting}\n"
            f"  aggregated health call: "
            f"{'on' if sandbox.server.aggregated_health else 'off (404)'}"
        )
        if options["processes"] > 1 and options["speed"] != 0:
            raise CommandError("--processes needs --speed 0 (each process keeps its own clock).")
        children: list[int] = []
        self.stdout.flush()  # a child must not inherit (and print again) what is buffered
        for _ in range(options["processes"] - 1):
            # Forked before any thread starts: each child serves the same listening socket.
            pid = os.fork()
            if pid == 0:
                children = []
                break
            children.append(pid)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        sandbox.start()
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            sandbox.stop()
            for child in children:
                os.kill(child, signal.SIGTERM)
            for child in children:
                os.waitpid(child, 0)
