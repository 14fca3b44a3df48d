"""The Keepit client's errors — a small tree — and the one function that turns them into
sentences an MSP admin can act on (`describe_error`).

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


def describe_error(exc: Exception, *, region: str = "") -> str:
    """One sentence for a failed Keepit call."""
    where = f" (region {region})" if region else ""
    if isinstance(exc, KeepitAuthError):
        return (
            f"Keepit refused the credentials{where}: the password or API token may have "
            "changed or expired. Update them on the Keepit connection and test again."
        )
    if isinstance(exc, KeepitUnavailable):
        if "did not answer in time" in str(exc):
            return (
                f"Keepit did not answer in time{where}. Try again in a few minutes; if it "
                "persists, check that this server can reach Keepit."
            )
        return (
            f"Keepit could not be reached{where} ({exc}). Try again in a few minutes; if "
            "it persists, check this server's network access to Keepit."
        )
    if isinstance(exc, KeepitNotFound):
        return f"Keepit does not know {exc.path}{where}: the account or connector is gone."
    if isinstance(exc, KeepitProtocolError):
        return (
            f"Unexpected answer from Keepit{where}: {exc}. This is usually temporary; if "
            "it persists, contact support with the time of the failure."
        )
    if isinstance(exc, KeepitError):
        return f"Keepit request failed{where}: {exc}."
    return "The Keepit integration failed unexpectedly; see the worker log for details."


def unexpected_error_sentence(what: str, exc: BaseException) -> str:
    """A sentence for an error nobody foresaw in an action that changes nothing (Test
    connection, Find my region); the traceback goes to the log."""
    return (
        f"{what} stopped on an unexpected error ({type(exc).__name__}). Nothing was "
        "changed. Try again; if it happens again, send the worker or web log of this "
        "time to support."
    )
