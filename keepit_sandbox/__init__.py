"""A local HTTP server that speaks the Keepit API for one simulated MSP (see server.py)."""

from __future__ import annotations

from .server import KeepitSandbox, KeepitSandboxServer
from .simulation import SandboxClock, SandboxConfig, SandboxMsp

__all__ = ["KeepitSandbox", "KeepitSandboxServer", "SandboxClock", "SandboxConfig", "SandboxMsp"]
