"""The Keepit client's errors: a small tree the UI turns into sentences.

Every failure of a Keepit call is one of these; callers never see `requests` exceptions.
None of them ever carries a credential (messages name the method and path only).
"""

from __future__ import annotations


class KeepitError(Exception):
    """Base of every Keepit client error."""

    #: Whether trying again later may succeed (Celery retries only these).
    transient = False

    def __init__(self, message: str, *, status: int | None = None, path: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.path = path


class KeepitAuthError(KeepitError):
    """401/403: the credentials were refused, or lack the right to this resource."""


class KeepitNotFound(KeepitError):
    """404 where the call does not define 404 as "empty"."""


class KeepitUnavailable(KeepitError):
    """Timeouts, connection errors, 408/429/5xx — after the retries ran out."""

    transient = True


class KeepitProtocolError(KeepitError):
    """Keepit answered, but not with what the API promises (malformed or unexpected XML,
    forbidden XML constructs, an unexpected status code)."""
