from __future__ import annotations

from django.apps import AppConfig


class KeepitSandboxConfig(AppConfig):
    """The simulated Keepit (development, tests, the demo and the benchmark): no models,
    only the `keepit_sandbox` and `keepit_demo_setup` commands. The product never
    imports it."""

    name = "keepit_sandbox"
    verbose_name = "Keepit sandbox"
