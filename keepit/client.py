"""The Keepit API client: one class over a `requests` session, read-only by construction.

- Base URL from `KEEPIT_BASE_URL_TEMPLATE` with the validated region substituted
  (the template may carry `{region}` in the host or in the path).
- HTTP Basic auth with the login/password, or the API-token pair when both token fields
  are set (same wire format).
- Every request has connect and read timeouts. Transient failures (timeouts, connection
  errors, 408/429/5xx) are retried with exponential backoff and full jitter, honouring
  `Retry-After`, within a cap on attempts and on total time; then `KeepitUnavailable`.
- Read-only by construction: besides GET it sends only the `PUT`s that carry a read
  filter, each on an exact allow-list of path pattern and body root (keepit-api.md C12:
  the audit log, job history, snapshot range/count, seat expirations and usage reports).
  `_request` refuses everything else, including the look-alike writes (`PUT` on a
  connector, on a token, on `/resources`), so Vectis can never change anything in Keepit.
- Every answer is read in chunks up to a size cap (`KEEPIT_MAX_RESPONSE_MB`): a hostile or
  broken answer is refused while it arrives, before it can fill memory, and nothing from
  it is used. An audit page with more records than asked for is refused too.
- Basic auth is encoded as UTF-8, as Keepit's own client does (`requests` would use
  Latin-1), so passwords such as `pæsswørd-Ø1` or `€…` work.
- Results are typed dataclasses (keepit/schemas.py); XML is parsed with defusedxml.
- Credentials never appear in reprs, logs or exception messages.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

import requests
from django.views.decorators.debug import sensitive_variables
from requests.adapters import HTTPAdapter
from requests.auth import HTTPBasicAuth

from .errors import (
    KeepitAuthError,
    KeepitError,
    KeepitNotFound,
    KeepitProtocolError,
    KeepitUnavailable,
)
from .schemas import (
    SKIPPED_CONNECTOR_TYPES,
    ApiToken,
    AuditRecord,
    BackupSummary,
    ChildAccount,
    Connector,
    ConnectorHealth,
    DeviceStatus,
    Job,
    JobCounts,
    ParentAccount,
    SeatResource,
    SeatViolation,
    format_time,
    health_by_connector,
    job_counts_by_connector,
    parse_audit_records,
    parse_xml,
    seat_violations,
    text,
)

logger = logging.getLogger(__name__)

KNOWN_REGIONS: dict[str, str] = {
    "dk-co": "Denmark (Copenhagen)",
    "ws": "Denmark (legacy)",
    "us-dc": "USA (Washington DC)",
    "uk-ld": "UK (London)",
    "de-fr": "Germany (Frankfurt)",
    "ca-tr": "Canada (Toronto)",
    "au-sy": "Australia (Sydney)",
    "ch-zh": "Switzerland (Zurich)",
}
REGION_RE = re.compile(r"^[a-z0-9-]{2,32}$")
ACCOUNT_GUID_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")

ACCEPT_V1 = "application/vnd.keepit.v1+xml"
# The v3 child list and the token list take a version without "+xml" (C8, C9); the
# token list answers v4 with 400.
ACCEPT_V3 = "application/vnd.keepit.v3"
ACCEPT_V2_TOKENS = "application/vnd.keepit.v2"
ACCEPT_V4 = "application/vnd.keepit.v4+xml"
ACCEPT_PLAIN = "application/xml"
AUDIT_FILTER_PATH = "/audit/filter/pretty"
AUDIT_PAGE_SIZE = 500
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 20.0
READ_CHUNK_BYTES = 64 * 1024
DEFAULT_MAX_RESPONSE_BYTES = 20 * 1024 * 1024

_GUID = r"[A-Za-z0-9_-]{1,100}"
# A connector GUID as it goes into a path: URL-quoted, never "." or ".." (a dot segment
# would let a read-filter pattern reach another path once the URL is normalised).
_CONNECTOR = r"[A-Za-z0-9_%-]{1,200}"
# keepit-api.md C12: the only PUTs Vectis may send, each a read with a filter or range
# body: (path pattern, body root). Nothing else but GET goes out.
READ_FILTERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"/audit/filter/pretty"), "filter"),
    (re.compile(rf"/users/{_GUID}/devices/{_CONNECTOR}/jobs"), "filter"),
    (re.compile(rf"/users/{_GUID}/devices/{_CONNECTOR}/history/(range|count)"), "range"),
    (re.compile(rf"/users/{_GUID}/expirations"), "filter"),
    (re.compile(rf"/users/{_GUID}/resources/(max_usage|max_usage/total|history)"), "filter"),
)
# C7.1: seat groups (not connector types) the violation filter asks about.
SEAT_GROUPS = (
    "o365-admin",
    "gsuite",
    "salesforce",
    "azuread",
    "azuredo",
    "dynamics365",
    "powerbi",
    "zendesk",
    "okta",
    "jira",
    "confluence",
    "bamboohr",
    "docusign",
    "miro",
)


def is_read_request(method: str, path: str, body: bytes | None) -> bool:
    """True for a GET, or a PUT on the read-filter allow-list with the right body root."""
    if method == "GET":
        return True
    if method != "PUT" or body is None:
        return False
    for pattern, root in READ_FILTERS:
        if pattern.fullmatch(path):
            try:
                parse_xml(body, path=path, expected_root=root)  # checks the root element
            except KeepitError:
                return False
            return True
    return False


@dataclass(frozen=True)
class KeepitAnswer:
    """A successful answer, read in full (and within the size cap)."""

    status: int
    headers: Mapping[str, str]
    content: bytes


@dataclass(frozen=True)
class AuditPage:
    """One page of the audit log and where the next one starts (None: the last page)."""

    offset: int
    records: list[AuditRecord]
    next_offset: int | None


class _AnswerTooLarge(Exception):
    def __init__(self, size: int | None) -> None:
        super().__init__(size)
        self.size = size


def validate_region(region: str) -> str:
    """A region may only be a short lower-case slug: it can never change the host pattern."""
    if not REGION_RE.fullmatch(region):
        raise ValueError("Region must be 2-32 lower-case letters, digits or dashes, such as us-dc.")
    return region


def validate_account_guid(guid: str) -> str:
    if not ACCOUNT_GUID_RE.fullmatch(guid):
        raise ValueError("Account GUID may contain only letters, digits, '-' and '_'.")
    return guid


def base_url_for(template: str, region: str) -> str:
    return template.replace("{region}", validate_region(region)).rstrip("/")


@dataclass(frozen=True)
class KeepitCredentials:
    """The login/password pair sent with Basic auth. Its repr never shows the password."""

    login: str
    password: str = field(repr=False)
    kind: Literal["api_token", "username_password"]

    @classmethod
    @sensitive_variables("password", "token_password")
    def choose(
        cls, *, username: str, password: str, token_login: str, token_password: str
    ) -> KeepitCredentials:
        """API-token pair when both token fields are set (it takes priority), else the
        username/password."""
        if token_login and token_password:
            return cls(login=token_login, password=token_password, kind="api_token")
        if username and password:
            return cls(login=username, password=password, kind="username_password")
        raise ValueError("Keepit needs either a username and password or an API token pair.")

    def __str__(self) -> str:
        return f"{self.kind} {self.login}"


class _FairBudget:
    """At most `size` holders at once, served in the order they asked (the standard
    library's semaphore lets a thread that just released take the slot straight back,
    so the accounts' readers would starve the audit log's readers sharing the budget)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._free = size
        self._lock = threading.Lock()
        self._waiting: deque[threading.Event] = deque()

    def __enter__(self) -> None:
        with self._lock:
            if self._free > 0 and not self._waiting:
                self._free -= 1
                return
            turn = threading.Event()
            self._waiting.append(turn)
        turn.wait()  # the slot is handed over by the releaser

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            if self._waiting and self._free >= 0:
                self._waiting.popleft().set()
            else:
                self._free += 1

    def resize(self, size: int) -> None:
        """A new size, taking effect as requests end (a smaller one never cuts a request
        short: `_free` goes below zero until enough have ended)."""
        with self._lock:
            self._free += size - self._size
            self._size = size
            while self._free > 0 and self._waiting:
                self._free -= 1
                self._waiting.popleft().set()


class _RequestCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def increment(self) -> None:
        with self._lock:
            self.value += 1


class KeepitClient:
    """Read-only access to one Keepit region with one credential.

    Thread-safe for concurrent reads (the sync fans out over thread pools); `pool_size`
    is both the connection pool and the request budget: never more requests in flight.
    """

    def __init__(
        self,
        *,
        region: str,
        credentials: KeepitCredentials,
        base_url_template: str = "https://{region}.keepit.com",
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 4,
        retry_budget_seconds: float = 60.0,
        pool_size: int = 8,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        user_agent: str = "Vectis",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.region = validate_region(region)
        self.base_url = base_url_for(base_url_template, region)
        self._credentials = credentials
        self.timeout = (connect_timeout, read_timeout)
        self.max_attempts = max(1, max_attempts)
        self.retry_budget_seconds = retry_budget_seconds
        self.max_response_bytes = max(1, max_response_bytes)
        self._sleep = sleep
        self._requests = _RequestCounter()
        # The request budget: at most `pool_size` requests in flight, whichever threads
        # send them (the accounts' and the audit log's readers share one client).
        self._in_flight = _FairBudget(max(pool_size, 1))
        self._session = requests.Session()
        # Bytes, so requests sends them as they are: UTF-8, like Keepit's own client.
        self._session.auth = HTTPBasicAuth(
            credentials.login.encode(), credentials.password.encode()
        )
        self._session.headers["User-Agent"] = user_agent
        # The environment (proxy, CA bundle) is read once here, not on every request: a
        # sync sends thousands, and requests' per-request look-up was measurable.
        self._session.proxies = requests.utils.get_environ_proxies(self.base_url)
        self._session.verify = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        )
        self._session.trust_env = False
        # Our own retry loop handles retries (Retry-After, budget); the adapter never does.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(pool_size, 1), max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def __repr__(self) -> str:
        return f"<KeepitClient region={self.region!r} base_url={self.base_url!r}>"

    @property
    def credential_kind(self) -> str:
        return self._credentials.kind

    @property
    def login(self) -> str:
        """The login in use (not secret: Keepit records it as the audit `token`)."""
        return self._credentials.login

    @property
    def request_count(self) -> int:
        """HTTP requests sent so far, retries included."""
        return self._requests.value

    def close(self) -> None:
        self._session.close()

    def set_budget(self, size: int) -> None:
        """How many requests may be in flight from now on (at least 1)."""
        self._in_flight.resize(max(1, size))

    # --- the calls of keepit-api.md Part A -------------------------------------------------

    def who_am_i(self) -> str:
        """`GET /users/`: the GUID of the account that owns these credentials."""
        root = self._get_xml("/users/", accept=None, expected_root="user")
        guid = text(root, "id")
        if not guid:
            raise KeepitProtocolError("Keepit's who-am-I answer has no <id>", path="/users/")
        return guid

    def parent_account(self, account: str) -> ParentAccount:
        """`GET /users/{guid}`: the configured account (proves it is visible)."""
        path = f"/users/{self._guid(account)}"
        root = self._get_xml(path, accept=ACCEPT_V1, expected_root="user")
        return ParentAccount.from_xml(root, requested_id=account)

    def child_accounts(self, parent: str) -> list[ChildAccount]:
        """`GET /users/{parent}/users?all=1&include_contact_details=1` (v3, C9): the
        customer accounts with their contact, including those scheduled for deletion
        (`deletion-deadline`). 404 and an empty `<users/>` both mean none."""
        path = f"/users/{self._guid(parent)}/users"
        root = self._get_xml_or_none(
            path,
            accept=ACCEPT_V3,
            expected_root="users",
            params={"all": "1", "include_contact_details": "1"},
        )
        if root is None:
            return []
        return [child for child in map(ChildAccount.from_xml, root.findall("user")) if child.id]

    def connectors(self, account: str) -> list[Connector]:
        """`GET /users/{account}/devices?all=1` (v4); `system` devices are skipped."""
        path = f"/users/{self._guid(account)}/devices"
        root = self._get_xml(path, accept=ACCEPT_V4, params={"all": "1"}, expected_root="devices")
        found = [Connector.from_xml(cloud) for cloud in root.findall("cloud")]
        return [c for c in found if c.guid and c.type not in SKIPPED_CONNECTOR_TYPES]

    def backup_summary(self, account: str) -> list[BackupSummary]:
        """`GET /users/{account}/monitoring/backup/summary`; 404 means no backups yet."""
        path = f"/users/{self._guid(account)}/monitoring/backup/summary"
        root = self._get_xml_or_none(path, accept=ACCEPT_PLAIN, expected_root="backup-summary")
        if root is None:
            return []
        return [s for s in map(BackupSummary.from_xml, root.findall("device")) if s.guid]

    def connector_health(self, account: str, connector: str) -> ConnectorHealth:
        """`GET /users/{account}/devices/{guid}/health?reason=true`."""
        path = f"/users/{self._guid(account)}/devices/{quote(connector, safe='')}/health"
        root = self._get_xml(
            path, accept=ACCEPT_PLAIN, params={"reason": "true"}, expected_root="devhealth"
        )
        return ConnectorHealth.from_xml(root)

    # --- the calls of keepit-api.md Part C ------------------------------------------------

    def connectors_health(self, account: str) -> dict[str, ConnectorHealth] | None:
        """`GET /users/{account}/devices/health?reason=true` (C1): every connector's health
        in one call, by GUID. None when Keepit does not offer the call (404): the caller
        then asks per connector, as for any connector missing from the answer."""
        path = f"/users/{self._guid(account)}/devices/health"
        root = self._get_xml_or_none(
            path, accept=ACCEPT_PLAIN, expected_root="devhealth", params={"reason": "true"}
        )
        return None if root is None else health_by_connector(root)

    def job_counts(self, account: str, *, start: datetime, end: datetime) -> dict[str, JobCounts]:
        """`GET /users/{account}/jobs/count?from=…&to=…&job-types=backup` (C2): the
        backup jobs of every connector in [start, end) by state, by connector GUID (a
        connector left out had none)."""
        path = f"/users/{self._guid(account)}/jobs/count"
        root = self._get_xml(
            path,
            accept=ACCEPT_PLAIN,
            expected_root="jobs-count",
            params={"from": format_time(start), "to": format_time(end), "job-types": "backup"},
        )
        return job_counts_by_connector(root, "backup")

    def job_history(
        self, account: str, connector: str, *, start: datetime, end: datetime
    ) -> list[Job]:
        """`PUT /users/{account}/devices/{guid}/jobs` with a `<filter>` (C3): the finished
        jobs of one connector in [start, end) — a read, like the audit filter. Keepit's
        own client asks at most 24 hours at a time; so does Vectis."""
        path = f"/users/{self._guid(account)}/devices/{quote(connector, safe='')}/jobs"
        body = (
            "<filter>"
            f"<from-time>{format_time(start)}</from-time><to-time>{format_time(end)}</to-time>"
            "<active-only>false</active-only>"
            "</filter>"
        ).encode()
        answer = self._request("PUT", path, accept=ACCEPT_PLAIN, body=body)
        root = parse_xml(answer.content, path=path, expected_root="jobs")
        return [Job.from_xml(element) for element in root.findall("job")]

    def device_status(self, account: str, connector: str) -> DeviceStatus:
        """`GET /users/{account}/devices/{guid}/status` (C4): status and error code."""
        path = f"/users/{self._guid(account)}/devices/{quote(connector, safe='')}/status"
        root = self._get_xml(path, accept=None, expected_root="devstatus")
        return DeviceStatus.from_xml(root)

    def seat_usage(self, account: str) -> list[SeatResource]:
        """`GET /users/{account}/resources` (C7.2): usage against the product's limits."""
        path = f"/users/{self._guid(account)}/resources"
        root = self._get_xml_or_none(path, accept=None, expected_root="resources")
        if root is None:
            return []
        return [r for r in map(SeatResource.from_xml, root.findall("resource")) if r.name]

    def seat_violations(self, partner: str) -> list[SeatViolation]:
        """`PUT /users/{partner}/expirations` with the violation filter (C7.1): every
        child account over a seat limit, with usage, limit and grace expiry — a read."""
        path = f"/users/{self._guid(partner)}/expirations"
        groups = "".join(f"<resource-group>{group}</resource-group>" for group in SEAT_GROUPS)
        body = f"<filter><or><resources-violation>{groups}</resources-violation></or></filter>"
        answer = self._request("PUT", path, accept=None, body=body.encode())
        root = parse_xml(answer.content, path=path, expected_root="subaccounts")
        return seat_violations(root)

    def tokens(self, account: str) -> list[ApiToken]:
        """`GET /users/{account}/tokens?secondary=1` (C8, Accept v2): the account's
        tokens with their creation, lifetime or expiry, and last use."""
        path = f"/users/{self._guid(account)}/tokens"
        root = self._get_xml(
            path, accept=ACCEPT_V2_TOKENS, expected_root="tokens", params={"secondary": "1"}
        )
        return [ApiToken.from_xml(element) for element in root.findall("token")]

    def audit_pages(
        self,
        account: str,
        *,
        start: datetime,
        end: datetime,
        recursive: bool = True,
        page_size: int = AUDIT_PAGE_SIZE,
        offset: int = 0,
    ) -> Iterator[AuditPage]:
        """The audit log of `account` (and its descendants) in [start, end), page by page
        from `offset`.

        Pages follow the `next-offset` header while it is present and greater than the
        offset just asked for; a short page does not mean the end (Keepit may return
        fewer records than `limit`). A page with more records than `limit` breaks the
        contract and is refused whole. Each page says where the next one starts, so a
        reader stopped half-way can resume there.
        """
        body = (
            "<filter>"
            f"<account>{escape(self._guid(account))}</account>"
            f"<from>{format_time(start)}</from><to>{format_time(end)}</to>"
            f"<recursive>{'true' if recursive else 'false'}</recursive>"
            "</filter>"
        ).encode()
        while True:
            answer = self._request(
                "PUT",
                AUDIT_FILTER_PATH,
                accept=ACCEPT_V4,
                params={"limit": str(page_size), "offset": str(offset)},
                body=body,
            )
            records = parse_audit_records(answer.content, path=AUDIT_FILTER_PATH, limit=page_size)
            next_offset = _int_header(answer, "next-offset")
            if next_offset is not None and next_offset <= offset:
                next_offset = None
            yield AuditPage(
                offset=offset,
                records=records,
                next_offset=next_offset,
            )
            if next_offset is None:
                return
            offset = next_offset

    def audit_records(
        self,
        account: str,
        *,
        start: datetime,
        end: datetime,
        recursive: bool = True,
        page_size: int = AUDIT_PAGE_SIZE,
    ) -> Iterator[AuditRecord]:
        """Every audit record of `account` (and its descendants) in [start, end), as they
        arrive, so memory stays flat however long the log (see `audit_pages`)."""
        for page in self.audit_pages(
            account, start=start, end=end, recursive=recursive, page_size=page_size
        ):
            yield from page.records

    # --- transport -------------------------------------------------------------------------

    def _guid(self, guid: str) -> str:
        try:
            return validate_account_guid(guid)
        except ValueError as exc:
            raise KeepitError(str(exc)) from None

    def _get_xml(
        self,
        path: str,
        *,
        accept: str | None,
        expected_root: str,
        params: dict[str, str] | None = None,
    ) -> Element:
        response = self._request("GET", path, accept=accept, params=params)
        return parse_xml(response.content, path=path, expected_root=expected_root)

    def _get_xml_or_none(
        self,
        path: str,
        *,
        accept: str | None,
        expected_root: str,
        params: dict[str, str] | None = None,
    ) -> Element | None:
        """For the lists where Keepit answers 404 to mean "none"."""
        try:
            return self._get_xml(path, accept=accept, expected_root=expected_root, params=params)
        except KeepitNotFound:
            return None

    def _request(
        self,
        method: str,
        path: str,
        *,
        accept: str | None,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> KeepitAnswer:
        """Send one logical request, retrying transient failures within the budget."""
        # Read-only by construction: GET anything, PUT only the read filters (C12).
        if not is_read_request(method, path, body):
            raise KeepitError(f"Refusing {method} {path}: the Keepit client is read-only.")
        headers = {"Accept": accept} if accept else {}
        if body is not None:
            headers["Content-Type"] = "application/xml"
        url = self.base_url + path
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            failure: str
            retry_after: float | None = None
            try:
                with self._in_flight:
                    self._requests.increment()  # counted when it really goes out
                    response = self._session.request(
                        method,
                        url,
                        params=params,
                        data=body,
                        headers=headers,
                        timeout=self.timeout,
                        stream=True,
                    )
                    try:
                        status = response.status_code
                        content = self._read_capped(response) if status < 300 else b""
                    finally:
                        response.close()
            except _AnswerTooLarge as exc:
                cap = self.max_response_bytes / (1024 * 1024)
                size = f" ({exc.size / (1024 * 1024):.0f} MB)" if exc.size else ""
                raise KeepitProtocolError(
                    f"Keepit's answer to {method} {path} is larger than the {cap:g} MB limit"
                    f"{size}; it was refused and nothing from it was stored "
                    "(KEEPIT_MAX_RESPONSE_MB)",
                    path=path,
                ) from None
            except requests.Timeout:
                failure = "Keepit did not answer in time"
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                failure = "could not connect to Keepit"
            except requests.RequestException as exc:
                raise KeepitUnavailable(
                    f"{method} {path} failed: {type(exc).__name__}", path=path
                ) from None
            else:
                if status < 300:
                    return KeepitAnswer(status=status, headers=response.headers, content=content)
                if status in (401, 403):
                    raise KeepitAuthError(
                        f"Keepit refused the credentials for {method} {path} (HTTP {status})",
                        status=status,
                        path=path,
                    )
                if status == 404:
                    raise KeepitNotFound(
                        f"Keepit has no {path} (HTTP 404)", status=status, path=path
                    )
                if status not in TRANSIENT_STATUSES:
                    raise KeepitProtocolError(
                        f"Keepit answered {method} {path} with unexpected HTTP {status}",
                        status=status,
                        path=path,
                    )
                failure = f"Keepit answered HTTP {status}"
                retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
            elapsed = time.monotonic() - started
            remaining = self.retry_budget_seconds - elapsed
            delay = (
                retry_after
                if retry_after is not None
                else random.uniform(  # full jitter
                    0, min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
                )
            )
            if attempt >= self.max_attempts or delay > remaining:
                raise KeepitUnavailable(
                    f"{failure} for {method} {path} after {attempt} attempt(s) in {elapsed:.1f} s",
                    path=path,
                )
            logger.info(
                "Keepit %s %s: %s; retry %d in %.2f s", method, path, failure, attempt, delay
            )
            self._sleep(delay)

    def _read_capped(self, response: requests.Response) -> bytes:
        """The body, read in chunks; more than `max_response_bytes` (announced or
        arriving) stops the read at once."""
        limit = self.max_response_bytes
        declared = response.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > limit:
            raise _AnswerTooLarge(int(declared))
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=READ_CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                raise _AnswerTooLarge(None)
            chunks.append(chunk)
        return b"".join(chunks)


def _int_header(answer: KeepitAnswer, name: str) -> int | None:
    value = answer.headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise KeepitProtocolError(f"Keepit sent a non-numeric {name} header") from None


def _retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())
