"""Starts the real OpenID Connect provider of `tests.oidc_provider` in its own process and
plays the browser's part at its login page.

Each `start_provider` call is a fresh process with its own SQLite database, key and
users, so tests cannot leak state into each other through it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
MAX_REDIRECTS = 10
HTTP_TIMEOUT = 10


@dataclass
class ProviderUser:
    username: str
    password: str
    email: str
    email_verified: bool = True
    tid: str = "tenant-msp"
    amr: list[str] = field(default_factory=list)
    name: str = ""
    """Empty means the `name` claim carries the username."""
    acct: int | None = None
    """Entra's optional `acct` claim: 0 a member of the tenant, 1 a guest."""


class ProviderError(RuntimeError):
    """The provider did not start, or did not behave like a provider during sign-in."""


def new_private_key_pem() -> str:
    """A fresh RSA 2048 signing key, PKCS#8 PEM as DOT's OIDC_RSA_PRIVATE_KEY takes it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


class _LoginForm(HTMLParser):
    """The first form of a page: its action and hidden fields (CSRF token, next)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.found = False
        self.action = ""
        self.hidden: dict[str, str] = {}
        self._inside = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and not self.found:
            self.found = self._inside = True
            self.action = attributes.get("action", "")
        elif tag == "input" and self._inside and attributes.get("type") == "hidden":
            self.hidden[attributes.get("name", "")] = attributes.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False


@dataclass
class RunningProvider:
    base: str
    """http://127.0.0.1:PORT"""
    issuer: str
    """As in the discovery document and the ID tokens' `iss`: allauth's `server_url`."""
    jwks_url: str
    process: subprocess.Popen[bytes] = field(repr=False)
    workdir: Path = field(repr=False)

    def stop(self) -> None:
        """Ends the process and removes its database, key and logs; safe to call twice."""
        _terminate(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log(self) -> str:
        """The provider's stderr so far (request log and tracebacks), for failure messages."""
        path = self.workdir / "stderr.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def sign_in(
        self, session: requests.Session, authorize_url: str, username: str, password: str
    ) -> str:
        """Follows authorize_url at the provider (not following any redirect that leaves
        the provider), signs in with the login form (CSRF token taken from the form), and
        returns the URL the provider finally redirects the browser to (the client's
        redirect_uri with ?code=…&state=…), without requesting it.

        If the session is already signed in at the provider, no form is submitted. An
        error the provider redirects back with (`?error=…`) is returned like a code; an
        error it shows as a page raises ProviderError.
        """
        outcome = self._follow(
            session, session.get(authorize_url, allow_redirects=False, timeout=HTTP_TIMEOUT)
        )
        if isinstance(outcome, str):
            return outcome
        form = _LoginForm(outcome.text)
        if not form.found or "csrfmiddlewaretoken" not in form.hidden:
            raise ProviderError(self._unexpected(outcome, "expected the login form"))
        posted = session.post(
            urljoin(outcome.url, form.action or outcome.url),
            data={**form.hidden, "username": username, "password": password},
            allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )
        outcome = self._follow(session, posted)
        if isinstance(outcome, str):
            return outcome
        raise ProviderError(self._unexpected(outcome, f"signing in as {username!r} failed"))

    def _follow(
        self, session: requests.Session, response: requests.Response
    ) -> str | requests.Response:
        """Follows redirects within the provider; returns the first URL outside it, or
        the first non-redirect response."""
        for _ in range(MAX_REDIRECTS):
            if not response.is_redirect:
                return response
            location = urljoin(response.url, response.headers["Location"])
            if not location.startswith(f"{self.base}/"):
                return location
            response = session.get(location, allow_redirects=False, timeout=HTTP_TIMEOUT)
        raise ProviderError(f"more than {MAX_REDIRECTS} redirects at the provider")

    def _unexpected(self, response: requests.Response, what: str) -> str:
        return (
            f"{what}: {response.status_code} at {response.url}\n"
            f"{response.text[:2000]}\n--- provider log ---\n{self.log()[-4000:]}"
        )


def start_provider(
    users: list[ProviderUser],
    *,
    client_id: str,
    client_secret: str,
    redirect_uris: list[str],
    private_key_pem: str | None = None,
) -> RunningProvider:
    """A provider process with these users and one confidential client, ready to serve.
    Call `stop()` when done (fixtures: in a finally/after yield)."""
    workdir = Path(tempfile.mkdtemp(prefix="oidc-provider-"))
    config_path = workdir / "config.json"
    config_path.write_text(
        json.dumps(
            {
                "database": str(workdir / "provider.sqlite3"),
                "private_key_pem": private_key_pem or new_private_key_pem(),
                "client": {
                    "client_id": client_id,
                    "client_secret": client_secret,
                    "redirect_uris": redirect_uris,
                },
                "users": [asdict(user) for user in users],
            }
        )
    )
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    stdout_path, stderr_path = workdir / "stdout.log", workdir / "stderr.log"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        # Files rather than pipes: nobody reads the request log, and a full pipe
        # would block the server.
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.oidc_provider.serve",
                "--config",
                str(config_path),
                "--exit-with-stdin",
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        base = _wait_until_ready(process, stdout_path, stderr_path)
        discovery = requests.get(f"{base}/o/.well-known/openid-configuration", timeout=HTTP_TIMEOUT)
        discovery.raise_for_status()
    except BaseException:
        _terminate(process)
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    metadata = discovery.json()
    return RunningProvider(
        base=base,
        issuer=metadata["issuer"],
        jwks_url=metadata["jwks_uri"],
        process=process,
        workdir=workdir,
    )


def _wait_until_ready(
    process: subprocess.Popen[bytes], stdout_path: Path, stderr_path: Path
) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        line = stdout_path.read_text().partition("\n")
        if line[1] and line[0].startswith("ready "):
            return line[0].removeprefix("ready ").strip()
        if process.poll() is not None:
            raise ProviderError(
                f"OIDC provider exited with {process.returncode}:\n{stderr_path.read_text()}"
            )
        time.sleep(0.02)
    raise ProviderError(
        f"OIDC provider not ready after {START_TIMEOUT:.0f} s:\n{stderr_path.read_text()}"
    )


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdin:
        process.stdin.close()
