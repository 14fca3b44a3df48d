"""The Keepit sandbox: a threaded HTTP server on loopback speaking the Keepit API.

It implements every call of keepit-api.md Part A and the read calls of Part C with
Keepit's paths, headers, status codes, XML shapes and quirks: plain-text 401 bodies, 404
for "no child accounts" (and an empty `<users/>` for others, as Keepit's clients
disagree), `next-offset` paging with pages two records shorter than `limit`, elements
that appear once or many times, `agent-type` only for v4, the child list in its v0, v1
and v3 shapes, a 400 for a v4 Accept on `/tokens`. Like Keepit it is lenient: the PUT
filters are accepted with any content type, and unversioned requests get the default
shape.

Part C calls (the data comes from simulation.py; where Keepit is silent the sandbox chose
what the docstrings of the handlers say):

- `GET /users/{id}/devices/health?reason=true[&type=T]`: the health of every connector in
  one `<devhealth>` (404 when the server runs with `aggregated_health=False`, like a
  Keepit without the call).
- `GET /users/{id}/jobs/count`, `GET /users/{id}/devices/{dev}/jobs/count`: job counts.
- `PUT /users/{id}/devices/{dev}/jobs` (a `<filter>`), `GET …/jobs` with
  `active-jobs-only`: job history and active jobs.
- `GET /users/{id}/devices/{dev}/status`: `<devstatus>` with Keepit's error codes.
- `GET /users/{id}/resources`, `PUT /users/{partner}/expirations`: seats and violations.
- `GET /users/{id}/tokens[?secondary=1]`: the parent user's tokens (`lastuse` follows the
  requests the sandbox saw with each login).

The region is the first path segment (`KEEPIT_BASE_URL_TEMPLATE=http://127.0.0.1:9100/{region}`);
only the simulated region knows the MSP, any other answers as Keepit does for an account
that is not there (401).

Faults can be injected for tests (`inject`, optionally only for one route of ROUTES such
as "audit", "devices" or "jobs") or at random (`fault_rate`): 429 with Retry-After, 503,
dropped connections, malformed XML, an XML bomb, an external entity, a hang, a slow
answer (`slow:SECONDS`, or `slow:SECONDS:FAULT` for a failure that takes its time), a huge
answer (`huge:MB` with a Content-Length, `huge-stream:MB` without one, streamed so the
sandbox itself stays small) and an audit page with more records than the `limit` asked
for (`overfull`).

Read-only proof: every non-GET request is counted in `methods` and its path kept in
`non_get_paths`; the only PUTs answered are the filters above (everything else is 405).
`request_log` keeps (method, path, route) of the latest requests, so a test can count
what a sync sent (`requests_by_route`); `peak_in_flight` the most requests of a route it
answered at once.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import random
import re
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit
from xml.etree.ElementTree import ParseError
from xml.sax.saxutils import escape

from defusedxml.ElementTree import fromstring

from .simulation import (
    JOB_TYPES,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_RUN,
    STATUS_SFORCE_API_LIMIT,
    SandboxClock,
    SandboxConfig,
    SandboxMsp,
    SimAccount,
    SimConnector,
    SimJob,
    iso,
)

logger = logging.getLogger(__name__)

REGION_SEGMENT_RE = re.compile(r"^[a-z0-9-]{2,32}$")
FAULT_KINDS = (
    "429",
    "503",
    "403",
    "404",
    "drop",
    "malformed",
    "xml-bomb",
    "xxe",
    "hang",
    "slow",
    "huge",
    "huge-stream",
    "overfull",
)
# Which requests a route-targeted fault applies to (the first path segments after the
# region, and the method).
ROUTES = (
    "whoami",
    "account",
    "children",
    "devices",
    "summary",
    "health",
    "audit",
    "jobs",
    "history",
    "status",
    "seats",
    "tokens",
)
DEFAULT_RANDOM_FAULTS = ("429", "503", "drop", "malformed")
UNAUTHENTICATED = "Anonymous access denied - suggest authentication."
BAD_CREDENTIALS = "User authentication error: Username or password is incorrect."

XML_BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">'
    b'<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>'
    b"<users><user><id>&lol4;</id></user></users>"
)
XXE = (
    b'<?xml version="1.0"?><!DOCTYPE users [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b"<users><user><id>&xxe;</id></user></users>"
)


def _accept_version(accept: str | None) -> int:
    """`application/vnd.keepit.v4+xml` -> 4; no version (or none sent) -> 0."""
    if not accept:
        return 0
    match = re.search(r"vnd\.keepit\.v(\d+)", accept)
    return int(match.group(1)) if match else 0


def _element(name: str, value: object) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


class SandboxRequestHandler(BaseHTTPRequestHandler):
    server: KeepitSandboxServer
    protocol_version = "HTTP/1.1"  # keep-alive, as a real API server offers
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm and
    # delayed ACKs add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    # Set per request by the "overfull" fault.
    overfull = False
    # Every value of every query parameter (`job-types` may be repeated).
    query_lists: dict[str, list[str]]

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("sandbox %s", format % args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    # --- plumbing --------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes | str,
        *,
        content_type: str = "application/xml",
        headers: dict[str, str] | None = None,
    ) -> None:
        payload = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def _text(self, status: int, message: str) -> None:
        self._send(status, message, content_type="text/plain; charset=utf-8")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        sandbox = self.server
        body = self._read_body()
        parts = urlsplit(self.path)
        segments = [s for s in parts.path.split("/") if s]
        self.query_lists = parse_qs(parts.query)
        query = {k: v[-1] for k, v in self.query_lists.items()}
        region = sandbox.config.region
        if (
            segments
            and segments[0] not in ("users", "audit")
            and REGION_SEGMENT_RE.match(segments[0])
        ):
            region = segments.pop(0)
        route = _route_of(method, segments)
        sandbox.count_request(method, self.path, region=region, route=route)
        with sandbox.in_flight(route):
            self._answer(method, segments, query, body, route=route, region=region)

    def _answer(
        self,
        method: str,
        segments: list[str],
        query: dict[str, str],
        body: bytes,
        *,
        route: str,
        region: str,
    ) -> None:
        sandbox = self.server
        if sandbox.latency > 0:
            time.sleep(sandbox.latency)
        self.overfull = False
        fault = sandbox.next_fault(route)
        if fault == "overfull":
            self.overfull = True  # the audit handler serves too many records
        elif fault is not None and self._inject(fault):
            return
        login = self._authenticate(region)
        if login is None:
            return
        sandbox.msp.note_login(login, sandbox.msp.clock.now())
        # A client that gave up (timeout) leaves nobody to answer.
        with contextlib.suppress(BrokenPipeError):
            self._route(method, segments, query, body, login)

    def _inject(self, fault: str) -> bool:
        if fault == "429":
            self._send(
                429, "Too many requests", content_type="text/plain", headers={"Retry-After": "1"}
            )
        elif fault == "503":
            self._text(503, "Service temporarily unavailable")
        elif fault == "403":
            # A token without the permission this call needs.
            self._text(403, "Access denied")
        elif fault == "404":
            self._text(404, "Not found")
        elif fault == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        elif fault == "malformed":
            self._send(200, b"<users><user><id>abc</id></user")
        elif fault == "xml-bomb":
            self._send(200, XML_BOMB)
        elif fault == "xxe":
            self._send(200, XXE)
        elif fault.startswith("slow"):
            # A slow answer: wait, then serve the request as usual ("slow:2"), or answer
            # it with another fault ("slow:2:503", a failure that takes its time).
            _slow, _colon, rest = fault.partition(":")
            wait, _colon, then = rest.partition(":")
            time.sleep(float(wait or 5))
            return bool(then) and self._inject(then)
        elif fault.startswith("hang"):
            seconds = float(fault.partition(":")[2] or 30)
            time.sleep(seconds)
            self.close_connection = True
        elif fault.startswith("huge"):
            self._huge(float(fault.partition(":")[2] or 50), announce=fault.startswith("huge:"))
        else:
            return False
        return True

    def _huge(self, megabytes: float, *, announce: bool) -> None:
        """A well-formed audit answer of `megabytes`, written in chunks (never held in
        memory), with or without a Content-Length."""
        record = (
            b"<record><time>2026-11-26T11:00:00Z</time><account>x</account>"
            b"<area>User events</area><message>" + b"A" * 900 + b"</message></record>"
        )
        head, tail = b"<audit>", b"</audit>"
        count = max(1, int(megabytes * 1024 * 1024) // len(record))
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        if announce:
            self.send_header("Content-Length", str(len(head) + count * len(record) + len(tail)))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        block = record * 64
        with contextlib.suppress(OSError):  # the client is expected to hang up early
            self.wfile.write(head)
            written = 0
            while written < count:
                batch = min(64, count - written)
                self.wfile.write(block if batch == 64 else record * batch)
                written += batch
            self.wfile.write(tail)

    def _authenticate(self, region: str) -> str | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            self._text(401, UNAUTHENTICATED)
            return None
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            self._text(401, BAD_CREDENTIALS)
            return None
        login, _, password = decoded.partition(":")
        config = self.server.config
        valid = {(config.username, config.password), (config.token_login, config.token_password)}
        # Credentials are region-bound: another region does not know this account.
        if region != config.region or (login, password) not in valid:
            self._text(401, BAD_CREDENTIALS)
            return None
        return login

    # --- routes ----------------------------------------------------------------------------

    def _route(
        self, method: str, segments: list[str], query: dict[str, str], body: bytes, login: str
    ) -> None:
        msp = self.server.msp
        version = _accept_version(self.headers.get("Accept"))
        if method == "PUT" and segments == ["audit", "filter", "pretty"]:
            self._audit(query, body, login)
            return
        rest = segments[2:] if len(segments) >= 2 and segments[0] == "users" else []
        read_put = method == "PUT" and (
            rest == ["expirations"]
            or (len(rest) == 3 and rest[0] == "devices" and rest[2] == "jobs")
        )
        if method != "GET" and not read_put:
            self._text(405, "Method not allowed")
            return
        if segments == ["users"]:
            self._own_read(login, "GetUser", "/users/")
            self._send(200, f"<user>{_element('id', msp.parent.guid)}</user>")
            return
        if len(segments) < 2 or segments[0] != "users":
            self._text(404, "Not found")
            return
        guid = segments[1]
        if guid in self.server.failing_accounts:
            self._text(503, "Service temporarily unavailable")
            return
        account = msp.account(guid)
        if account is None:
            # Keepit: the account must belong to the token or be a descendant of it.
            self._text(403, "Access denied")
            return
        path = "/" + "/".join(segments)
        if not rest:
            self._own_read(login, "GetUser", path)
            parent = "" if account is msp.parent else msp.parent.guid
            deletion = msp.account_deletion(account)
            self._send(
                200,
                "<user>"
                + _element("id", account.guid)
                + _element("enabled", "true")
                + _element("created", iso(account.created))
                + (_element("parent", parent) if parent else "")
                + (_element("deletion", iso(deletion)) if deletion is not None else "")
                + _element("subscribed", "true")
                + "</user>",
            )
        elif rest == ["users"]:
            self._own_read(login, "GetUsers", path)
            self._children(account.guid, version, include_deleted=query.get("all") == "1")
        elif rest == ["devices"]:
            self._own_read(login, "GetDevices", path)
            self._devices(account.guid, version, include_deleted=query.get("all") == "1")
        elif rest == ["monitoring", "backup", "summary"]:
            self._own_read(login, "GetBackupSummary", path)
            self._summary(account.guid)
        elif rest == ["devices", "health"]:
            if not self.server.aggregated_health:
                self._text(404, "Not found")  # a Keepit without the aggregated call
                return
            self._own_read(login, "GetDevicesHealth", path)
            self._aggregated_health(account.guid, query)
        elif len(rest) == 3 and rest[0] == "devices" and rest[2] == "health":
            self._own_read(login, "GetDeviceHealth", path)
            self._health(account.guid, rest[1].lower(), with_reason=query.get("reason") == "true")
        elif rest == ["jobs", "count"]:
            self._own_read(login, "GetJobsCount", path)
            self._jobs_count(account.guid, query)
        elif len(rest) == 4 and rest[0] == "devices" and rest[2:] == ["jobs", "count"]:
            self._own_read(login, "GetDeviceJobsCount", path)
            self._device_jobs_count(account.guid, rest[1].lower(), query)
        elif len(rest) == 3 and rest[0] == "devices" and rest[2] == "jobs":
            if method == "PUT":
                self._own_read(login, "FilterDeviceJobs", path)
                self._job_history(account.guid, rest[1].lower(), body)
            else:
                self._own_read(login, "GetDeviceJobs", path)
                self._active_jobs(account.guid, rest[1].lower())
        elif len(rest) == 3 and rest[0] == "devices" and rest[2] == "status":
            self._own_read(login, "GetDeviceStatus", path)
            self._status(account.guid, rest[1].lower())
        elif rest == ["resources"]:
            self._own_read(login, "GetResources", path)
            self._resources(account)
        elif rest == ["expirations"]:
            self._own_read(login, "FilterExpirations", path)
            self._expirations(account.guid, body)
        elif rest == ["tokens"]:
            self._own_read(login, "GetTokens", path)
            self._tokens(account.guid, version, secondary=query.get("secondary") == "1")
        else:
            self._text(404, "Not found")

    def _own_read(self, login: str, acl: str, path: str) -> None:
        self.server.msp.record_own_read(
            login=login, acl=acl, method=self.command, path=path, ip=self.client_address[0]
        )

    def _children(self, guid: str, version: int, *, include_deleted: bool) -> None:
        """The child list: v0 ids, v1 flat users, v3 (any v3 or later) users with a nested
        `<contact>` and `deletion-deadline`. Accounts scheduled for deletion are listed only
        with `all=1` (in every version); `X-Total-Count` counts what is listed."""
        msp = self.server.msp
        if guid != msp.parent.guid:
            # Leaves: Keepit's clients disagree on 404 vs empty list, so the sandbox does both.
            account = msp.account(guid)
            if account is not None and account.index % 2:
                self._text(404, "Not found")
            else:
                self._send(200, "<users/>")
            return
        items = []
        for child in msp.accounts:
            deletion = msp.account_deletion(child)
            if deletion is not None and not include_deleted:
                continue
            if version == 0:
                items.append(_element("id", child.guid))
            elif version >= 3:
                items.append(self._child_v3(child.index, deletion))
            else:
                items.append(
                    "<user>"
                    + _element("id", child.guid)
                    + _element("created", iso(child.created))
                    + _element("parent_id", msp.parent.guid)
                    + _element("email", f"  {child.email} ")  # Keepit does not always trim
                    + _element("full_name", child.full_name)
                    + (
                        _element("company_name", child.company_name)
                        if child.company_name
                        else "<company_name/>"
                    )
                    + "</user>"
                )
        self._send(
            200,
            "<users>" + "".join(items) + "</users>",
            headers={"X-Total-Count": str(len(items))},
        )

    def _child_v3(self, index: int, deletion: float | None) -> str:
        msp = self.server.msp
        child = msp.accounts[index]
        country, state = COUNTRIES[index % len(COUNTRIES)]
        contact = (
            _element("email", child.email)
            + _element("companyname", child.company_name)
            + _element("fullname", child.full_name)
            + _element("phone", f"+1 555 01{index % 100:02d}")
            + (_element("vatnumber", f"VAT{100000 + index}") if index % 3 else "<vatnumber/>")
            + _element("country", country)
            + (_element("state", state) if state else "<state/>")
        )
        return (
            "<user>"
            + _element("id", child.guid)
            + _element("created", iso(child.created))
            + _element("parent_id", msp.parent.guid)
            + (_element("deletion-deadline", iso(deletion)) if deletion is not None else "")
            + "<contact>"
            + contact
            + "</contact></user>"
        )

    def _devices(self, guid: str, version: int, *, include_deleted: bool) -> None:
        msp = self.server.msp
        now = msp.clock.now()
        clouds = []
        for connector in msp.connectors.get(guid, []):
            if connector.created > now:
                continue
            if connector.deletion_deadline is not None and not include_deleted:
                continue
            parts = [
                _element("guid", connector.guid),
                _element("name", connector.name),
                _element("type", connector.type),
            ]
            if connector.type == "dsl" and version >= 4:
                parts.append(_element("agent-type", connector.agent_type))
            parts.append(_element("created", iso(connector.created)))
            parts.append(_element("accessible", "true" if connector.accessible else "false"))
            parts.append(_element("backup-retention", "P1Y"))
            if connector.deletion_deadline is not None:
                parts.append(_element("deletion-deadline", iso(connector.deletion_deadline)))
            clouds.append("<cloud>" + "".join(parts) + "</cloud>")
        self._send(200, "<devices>" + "".join(clouds) + "</devices>")

    def _summary(self, guid: str) -> None:
        msp = self.server.msp
        now = msp.clock.now()
        devices = []
        for connector in msp.connectors.get(guid, []):
            if connector.type == "system" or connector.created > now:
                continue
            state = msp.backup_state(connector, now)
            if state.last_snapshot is None:
                continue  # onboarding without any snapshot: missing from the summary
            parts = [
                _element("guid", connector.guid),
                _element("last-snapshot-time", iso(state.last_snapshot)),
            ]
            if state.last_complete is not None:
                parts.append(_element("last-complete-snapshot-time", iso(state.last_complete)))
            parts.append(_element("last-snapshot-size", state.size))
            parts.append(_element("size-change", state.size_change))
            devices.append("<device>" + "".join(parts) + "</device>")
        if not devices:
            self._text(404, "Not found")  # Keepit: 404 while an account has no backups yet
            return
        self._send(200, "<backup-summary>" + "".join(devices) + "</backup-summary>")

    def _health(self, guid: str, device: str, *, with_reason: bool) -> None:
        msp = self.server.msp
        connector = msp.connector(device)
        if connector is None or connector.account.guid != guid:
            self._text(404, "Not found")
            return
        state = msp.backup_state(connector, msp.clock.now())
        reason = _element("reason", state.reason) if with_reason and state.reason else ""
        self._send(200, f"<devhealth>{_element('health', state.health)}{reason}</devhealth>")

    def _aggregated_health(self, guid: str, query: dict[str, str]) -> None:
        """One `<device>` per connector that exists (created by now), system devices left
        out, inaccessible and deletion-scheduled ones kept, each with the health and reason
        of the per-connector call. `type` matches the type, or the agent-type of a dsl
        connector; `reason` is included only with reason=true (as on the per-connector
        call). No connector: `<devhealth/>`."""
        msp = self.server.msp
        now = msp.clock.now()
        wanted = query.get("type", "").strip()
        with_reason = query.get("reason") == "true"
        devices = []
        for connector in msp.connectors.get(guid, []):
            if connector.type == "system" or connector.created > now:
                continue
            if wanted and wanted not in (connector.type, connector.agent_type):
                continue
            state = msp.backup_state(connector, now)
            reason = _element("reason", state.reason) if with_reason and state.reason else ""
            devices.append(
                "<device>"
                + _element("guid", connector.guid)
                + _element("health", state.health)
                + reason
                + "</device>"
            )
        self._send(200, _wrap("devhealth", devices))

    def _connector_of(self, guid: str, device: str) -> SimConnector | None:
        """The account's connector `device` (created by now), or None after a 404."""
        msp = self.server.msp
        connector = msp.connector(device)
        if (
            connector is None
            or connector.account.guid != guid
            or connector.created > msp.clock.now()
        ):
            self._text(404, "Not found")
            return None
        return connector

    def _job_types(self) -> list[str] | None:
        """`job-types` as one comma-joined parameter or repeated; None after a 400."""
        names = [
            name.strip()
            for value in self.query_lists.get("job-types", [])
            for name in value.split(",")
            if name.strip()
        ]
        unknown = [name for name in names if name not in JOB_TYPES]
        if unknown:
            self._text(400, f"Unknown job type: {', '.join(unknown)}")
            return None
        return list(dict.fromkeys(names))

    def _window(self, query: dict[str, str], start: str, end: str) -> tuple[float, float] | None:
        """[from, to) of a job query (to defaults to now); None after a 400."""
        now = self.server.msp.clock.now()
        if not query.get(start, "").strip():
            self._text(400, f"{start} is required")
            return None
        try:
            return _parse_query_time(query[start], now), _parse_query_time(query.get(end), now)
        except ValueError:
            self._text(400, f"{start} and {end} must be ISO 8601 times")
            return None

    def _jobs_count(self, guid: str, query: dict[str, str]) -> None:
        """Jobs per connector that *started* in [from, to) (to defaults to now), by state
        at the sandbox's now. A connector without a job in the window is left out, and so
        is a job type without jobs (the sandbox only runs backups, so `job-types` naming
        only other types gives `<jobs-count/>`). `device-type` matches the type or the
        agent-type of a dsl connector."""
        msp = self.server.msp
        window = self._window(query, "from", "to")
        types = self._job_types()
        if window is None or types is None:
            return
        if types and "backup" not in types:
            self._send(200, "<jobs-count/>")
            return
        device_type = query.get("device-type", "").strip()
        now = msp.clock.now()
        devices = []
        for connector in msp.connectors.get(guid, []):
            if connector.type == "system" or connector.created > now:
                continue
            if device_type and device_type not in (connector.type, connector.agent_type):
                continue
            counts = msp.job_counts(connector, window[0], window[1], now)
            if not counts:
                continue
            devices.append(
                "<device>"
                + _element("guid", connector.guid)
                + "<counts>"
                + _job_type_xml("backup", counts)
                + "</counts></device>"
            )
        self._send(200, _wrap("jobs-count", devices))

    def _device_jobs_count(self, guid: str, device: str, query: dict[str, str]) -> None:
        """One `<job-type>` per requested type (zeros included: the caller named the
        connector and the types), jobs counted as on the account-wide call."""
        msp = self.server.msp
        connector = self._connector_of(guid, device)
        if connector is None:
            return
        types = self._job_types()
        if types is None:
            return
        if not types:
            self._text(400, "job-types is required")
            return
        window = self._window(query, "from", "to")
        if window is None:
            return
        now = msp.clock.now()
        counts = msp.job_counts(connector, window[0], window[1], now)
        entries = "".join(
            _job_type_xml(name, counts if name == "backup" else Counter()) for name in types
        )
        self._send(200, f"<jobs-count>{entries}</jobs-count>")

    def _job_history(self, guid: str, device: str, body: bytes) -> None:
        """`PUT …/jobs` with a `<filter>`: jobs that *started* in [from-time, to-time or
        now). active-only false or absent: finished jobs; true (or an empty
        `<active-only/>`, as the vendor's XML builder writes true): running ones. Also
        honoured: `limit` (default 10000), `reverse` (newest first; default oldest
        first), `failed-only`, `type` / `types`. Unknown elements are ignored."""
        msp = self.server.msp
        connector = self._connector_of(guid, device)
        if connector is None:
            return
        try:
            root = fromstring(body, forbid_dtd=True)
        except (ValueError, ParseError):
            self._text(400, "Bad filter")
            return
        if root.tag != "filter":
            self._text(400, "Bad filter: the root element must be <filter>")
            return
        now = msp.clock.now()
        if not (root.findtext("from-time") or "").strip():
            self._text(400, "from-time is required")
            return
        try:
            start = _parse(root.findtext("from-time"), default=now)
            end = _parse(root.findtext("to-time"), default=now)
            limit = int((root.findtext("limit") or "10000").strip())
        except ValueError:
            self._text(400, "Bad filter: from-time, to-time or limit is malformed")
            return
        types = {
            (t.text or "").strip() for t in [*root.findall("type"), *root.findall("types/type")]
        }
        types.discard("")
        active = _flag(root, "active-only")
        jobs: list[SimJob] = []
        if not types or "backup" in types:
            for job in msp.jobs_between(connector, start, end, now=now):
                state = job.state(now)
                if state == "scheduled" or (state == "in-progress") != active:
                    continue
                if _flag(root, "failed-only") and state != "unsuccessful":
                    continue
                jobs.append(job)
        if _flag(root, "reverse"):
            jobs.reverse()
        self._send(200, _jobs_xml(jobs[: max(0, limit)], now))

    def _active_jobs(self, guid: str, device: str) -> None:
        """`GET …/jobs`: with `active-jobs-only: true` the running jobs; without it (or
        false) also the next scheduled one (sandbox's choice; Keepit does not say)."""
        msp = self.server.msp
        connector = self._connector_of(guid, device)
        if connector is None:
            return
        now = msp.clock.now()
        jobs = msp.active_jobs(connector, now)
        if (self.headers.get("active-jobs-only") or "").strip().lower() != "true":
            upcoming = msp.next_job(connector, now)
            if upcoming is not None:
                jobs.append(upcoming)
        self._send(200, _jobs_xml(jobs, now))

    def _status(self, guid: str, device: str) -> None:
        """`<devstatus>`: a connector without an error has one entry (status 0). One with
        an error code has two: the first, status 1, carries `adata/ecode`; the last, the
        current status 3, has none, so only Keepit's own rule (error code from the first
        entry's adata, status from the last entry) reads both right. Salesforce
        connectors at their API limit: status 7 last, no error code anywhere."""
        msp = self.server.msp
        connector = self._connector_of(guid, device)
        if connector is None:
            return
        uploaded, total = msp.object_counts(connector)
        code = msp.error_code(connector)

        def entry(status: int, ecode: str = "") -> str:
            adata = (
                _element("objectsuploaded", uploaded)
                + _element("objectstotal", total)
                + (_element("ecode", ecode) if ecode else "")
            )
            return f"<entry>{_element('status', status)}<adata>{adata}</adata></entry>"

        if code:
            entries = entry(STATUS_RUN, code) + entry(STATUS_ERROR)
        elif msp.salesforce_api_limit(connector):
            entries = entry(STATUS_RUN) + entry(STATUS_SFORCE_API_LIMIT)
        else:
            entries = entry(STATUS_OK)
        self._send(200, f"<devstatus>{entries}</devstatus>")

    def _resources(self, account: SimAccount) -> None:
        """`<resources>` of one account, evaluated at the top of the current hour. The
        parent account (which has no connectors) answers `<resources/>`."""
        msp = self.server.msp
        now = msp.clock.now()
        evaluated = iso(now // 3600 * 3600)
        items = []
        for resource in msp.seat_resources(account, now):
            items.append(
                "<resource>"
                + _element("evaluated", evaluated)
                + _element("name", resource.name)
                + _element("type", "integer")
                + _element("usage", resource.usage)
                + (_element("limit", resource.limit) if resource.limit is not None else "")
                + _element("violated", "true" if resource.violated else "false")
                + "</resource>"
            )
        self._send(200, _wrap("resources", items))

    def _expirations(self, guid: str, body: bytes) -> None:
        """`PUT /users/{partner}/expirations` with a `<filter>` naming seat groups
        (`resource-group` anywhere under it; none named means all): one `<account>` per
        child account over a limit in one of them, with only its violated resources. The
        sandbox's children are direct children only; a leaf answers `<subaccounts/>`."""
        msp = self.server.msp
        try:
            root = fromstring(body, forbid_dtd=True)
        except (ValueError, ParseError):
            self._text(400, "Bad filter")
            return
        if root.tag != "filter":
            self._text(400, "Bad filter: the root element must be <filter>")
            return
        groups = {(g.text or "").strip() for g in root.iter("resource-group")} - {""}
        now = msp.clock.now()
        accounts = []
        children = msp.accounts if guid == msp.parent.guid else []
        for child in children:
            by_group: dict[str, list[str]] = {}
            for resource in msp.seat_resources(child, now):
                if not resource.violated or (groups and resource.group not in groups):
                    continue
                by_group.setdefault(resource.group, []).append(
                    "<resource>"
                    + _element("name", resource.name)
                    + _element("readable-name", resource.readable_name)
                    + _element("limit", resource.limit)
                    + _element("usage", resource.usage)
                    + (
                        _element("grace-expires", iso(resource.grace_expires))
                        if resource.grace_expires is not None
                        else ""
                    )
                    + "</resource>"
                )
            if not by_group:
                continue
            violation = "".join(
                "<resource-group>"
                + _element("name", group)
                + "<resources>"
                + "".join(items)
                + "</resources></resource-group>"
                for group, items in by_group.items()
            )
            accounts.append(
                "<account>"
                + _element("guid", child.guid)
                + _element("email", child.email)
                + _element("company_name", child.company_name)
                + _element("type", "customer")
                + f"<resources-violation>{violation}</resources-violation>"
                + "</account>"
            )
        self._send(200, _wrap("subaccounts", accounts))

    def _tokens(self, guid: str, version: int, *, secondary: bool) -> None:
        """The parent user's tokens (other accounts: `<tokens/>`). v0-v2 Accept (with or
        without +xml) get this shape; a later version answers 400, as v4 does at Keepit.
        `expires` only where set; `lifetime` only where the token has one."""
        msp = self.server.msp
        if version > 2:
            self._text(400, "Unsupported version")
            return
        if guid != msp.parent.guid:
            self._send(200, "<tokens/>")
            return
        now = msp.clock.now()
        items = []
        for token in msp.tokens(now, secondary=secondary):
            items.append(
                "<token>"
                + _element("guid", token.guid)
                + _element("aname", token.aname)
                + _element("descr", token.descr)
                + _element("primary", "true" if token.primary else "false")
                + _element("primary_aname", msp.config.username)
                + _element("created", iso(token.created))
                + _element("lastuse", iso(msp.last_use(token)))
                + (_element("lifetime", token.lifetime) if token.lifetime else "")
                + (_element("expires", iso(token.expires)) if token.expires is not None else "")
                + _element("acl", token.acl)
                + _element("eacl", TOKEN_EACL)
                + "<capability/>"
                + "</token>"
            )
        self._send(200, "<tokens>" + "".join(items) + "</tokens>")

    def _audit(self, query: dict[str, str], body: bytes, login: str) -> None:
        msp = self.server.msp
        try:
            limit = max(1, min(10_000, int(query.get("limit", "100"))))
            offset = max(0, int(query.get("offset", "0")))
            root = fromstring(body or b"<filter/>", forbid_dtd=True)
        except (ValueError, ParseError):
            self._text(400, "Bad filter")
            return
        account = (root.findtext("account") or "").strip()
        if msp.account(account) is None:
            self._text(403, "Access denied")
            return
        now = msp.clock.now()
        start = _parse(root.findtext("from"), default=now - 14 * 86400)
        end = _parse(root.findtext("to"), default=now)
        recursive = (root.findtext("recursive") or "").strip().lower() == "true"
        if offset == 0:
            self._own_read(login, "AuditFilter", "/audit/filter/pretty")
        # Keepit returns two records fewer than asked for (KeepitTools notes it).
        served = max(1, limit - 2)
        records, total = msp.audit_page(account, start, end, recursive, offset, served)
        if self.overfull:
            # The fault breaks the paging contract the other way: one record too many.
            filler = records or [_FILLER_RECORD]
            records = (filler * (limit // len(filler) + 2))[: limit + 1]
        headers = {}
        if offset + len(records) < total:
            headers["next-offset"] = str(offset + len(records))
        self._send(
            200,
            "<audit>" + "".join(_record_xml(r) for r in records) + "</audit>",
            headers=headers,
        )


_FILLER_RECORD = {
    "time": "2026-11-26T11:00:00Z",
    "account": "",
    "company": "",
    "area": "User events",
    "message": "filler",
    "acl": "Login",
    "method": "post",
    "allowed": "true",
    "succeeded": "true",
    "client-ip": "198.51.100.1",
    "token": "filler@example.com",
}


COUNTRIES = [("US", "WA"), ("DK", ""), ("GB", ""), ("DE", "BY"), ("CA", "ON"), ("AU", "NSW")]
# The capabilities of the sandbox's tokens (Keepit's `eacl`: G get, U put, P post, ...).
TOKEN_EACL = ":".join(
    [
        "G/User",
        "G/SubUsers",
        "G/Devices",
        "G/DevHealth",
        "G/DevStatus",
        "G/DevJobs",
        "U/DevJobs",
        "G/DevJobsCount",
        "G/History",
        "G/Resources",
        "U/Expirations",
        "G/Tokens",
        "U/AuditFilter",
    ]
)


def _flag(root: Any, name: str) -> bool:
    """A filter flag: absent false, empty element true (the vendor writes true so), or
    the text true/false."""
    element = root.find(name)
    if element is None:
        return False
    text = (element.text or "").strip().lower()
    return text in ("", "true")


def _job_type_xml(name: str, counts: Counter[str]) -> str:
    return (
        "<job-type>"
        + _element("name", name)
        + "".join(_element(state, counts.get(state, 0)) for state in JOB_COUNT_ELEMENTS)
        + "</job-type>"
    )


# The children of a `<job-type>` count, in the order of Keepit's type (C2).
JOB_COUNT_ELEMENTS = (
    "scheduled",
    "in-progress",
    "cancelled",
    "successful",
    "incomplete",
    "unsuccessful",
)


def _jobs_xml(jobs: list[SimJob], now: float) -> str:
    return _wrap("jobs", [_job_xml(job, now) for job in jobs])


def _job_xml(job: SimJob, now: float) -> str:
    """One `<job>`: the outcome is the timestamp that is set (`succeeded`, `failed`,
    `cancelled`). An incomplete job is one with `succeeded` *and* a `fail_reason` stat and
    an `<execsummary>` (escaped XML) listing its errors; a failed job has both too; a
    cancelled one says why in `<comment>`."""
    connector = job.connector
    kind = connector.agent_type if connector.type == "dsl" else connector.type
    state = job.state(now)
    parts = [
        _element("guid", job.guid),
        _element("type", "backup"),
        _element("description", f"[backup][bl][auto][{kind}]{{}}"),
        _element("active", "true" if state == "in-progress" else "false"),
        _element("scheduled", iso(job.start - 300)),
        _element("start", iso(job.start)),
    ]
    if state != "scheduled":
        parts.append(_element("dispatched", iso(job.start + 2)))
        parts.append(_element("started", iso(job.start + 7)))
    outcome_element = {"successful": "succeeded", "incomplete": "succeeded"}.get(
        state, {"unsuccessful": "failed", "cancelled": "cancelled"}.get(state, "")
    )
    if outcome_element:
        parts.append(_element(outcome_element, iso(job.end)))
    # 0.0-1.0 as text: "0.0" before the start, "0.41" while running, "1.0" once ended.
    progress = f"{job.progress(now):.2f}".rstrip("0")
    progress = progress + "0" if progress.endswith(".") else progress
    parts.append(_element("progress", progress))
    if state in ("incomplete", "unsuccessful") and job.error:
        exit_reason = "completed-with-errors" if state == "incomplete" else "failed"
        summary = (
            "<summary>"
            + _element("exit-reason", exit_reason)
            + "<errors>"
            + _element("error", job.error)
            + "</errors></summary>"
        )
        parts.append(
            "<stats><stat>"
            + _element("name", "fail_reason")
            + _element("value", job.error)
            + "</stat></stats>"
        )
        parts.append(_element("execsummary", summary))
    elif state == "cancelled" and job.error:
        parts.append(_element("comment", job.error))
    return "<job>" + "".join(parts) + "</job>"


def _route_of(method: str, segments: list[str]) -> str:
    """The route name of a request, for route-targeted faults and the request log."""
    if method == "PUT" and segments[:2] == ["audit", "filter"]:
        return "audit"
    if segments == ["users"]:
        return "whoami"
    if len(segments) < 2 or segments[0] != "users":
        return "other"
    rest = segments[2:]
    if not rest:
        return "account"
    if rest == ["users"]:
        return "children"
    if rest == ["devices"]:
        return "devices"
    if rest[:1] == ["monitoring"]:
        return "summary"
    if rest[-1:] == ["health"]:
        return "health"
    if method == "PUT" and rest[0] == "devices" and rest[2:] == ["jobs"]:
        return "history"  # the job-history filter (route "jobs" covers the counts too)
    if rest == ["jobs", "count"] or (rest[0] == "devices" and rest[2:3] == ["jobs"]):
        return "jobs"
    if rest[0] == "devices" and rest[2:] == ["status"]:
        return "status"
    if rest in (["resources"], ["expirations"]):
        return "seats"
    if rest == ["tokens"]:
        return "tokens"
    return "other"


def _parse(value: str | None, *, default: float) -> float:
    """An ISO 8601 time (Z or an offset, with or without fractions; naive means UTC)."""
    if not value or not value.strip():
        return default
    moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _wrap(root: str, children: list[str]) -> str:
    """`<root>children</root>`, or `<root/>` when there are none (as Keepit writes it)."""
    return f"<{root}>{''.join(children)}</{root}>" if children else f"<{root}/>"


def _parse_query_time(value: str | None, default: float) -> float:
    """A time from the query string; an offset's `+` sent unencoded arrives as a space."""
    try:
        return _parse(value, default=default)
    except ValueError:
        return _parse((value or "").strip().replace(" ", "+"), default=default)


def _record_xml(record: dict[str, str]) -> str:
    """A record's XML, kept on the record (the simulation keeps generated records a while,
    and a client reading slices at once is served the same ones again)."""
    cached = record.get("_xml")
    if cached is None:
        cached = record["_xml"] = _build_record_xml(record)
    return cached


def _build_record_xml(record: dict[str, str]) -> str:
    parts = [
        _element(name, record[name])
        for name in (
            "time",
            "account",
            "company",
            "area",
            "message",
            "acl",
            "method",
            "allowed",
            "succeeded",
            "client-ip",
            "token",
        )
    ]
    if record.get("device"):
        parts.append(_element("device", record["device"]))
    if record.get("_meta"):
        parts.append(
            "<metadata><parameter>"
            + _element("key", "job")
            + _element("value", record["_meta"])
            + "</parameter></metadata>"
        )
    return "<record>" + "".join(parts) + "</record>"


class RequestLogEntry(NamedTuple):
    """One request the sandbox saw: method, path (with the region, without the query)
    and route name (ROUTES, or "other")."""

    method: str
    path: str
    route: str


class KeepitSandboxServer(ThreadingHTTPServer):
    """The sandbox's HTTP server. `aggregated_health=False` makes
    `GET /users/{id}/devices/health` answer 404, as a Keepit without that call would."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        *,
        config: SandboxConfig,
        clock: SandboxClock,
        latency_ms: int = 0,
        fault_rate: float = 0.0,
        fault_kinds: Iterable[str] = DEFAULT_RANDOM_FAULTS,
        aggregated_health: bool = True,
        request_log_size: int = 100_000,
    ) -> None:
        super().__init__(address, SandboxRequestHandler)
        self.aggregated_health = aggregated_health
        # The latest requests (failed and faulted ones too), oldest first.
        self.request_log: deque[RequestLogEntry] = deque(maxlen=request_log_size)
        self.config = config
        self.msp = SandboxMsp(config=config, clock=clock)
        self.latency = latency_ms / 1000
        self.fault_rate = fault_rate
        self.fault_kinds = tuple(fault_kinds)
        self._faults: deque[str] = deque()
        self._route_faults: dict[str, deque[str]] = {}
        self._lock = threading.Lock()
        self._random = random.Random(config.seed)
        self.requests_served = 0
        # What clients sent, so tests can prove Vectis only ever reads.
        self.methods: Counter[str] = Counter()
        # Accounts whose calls answer 503 until removed (partial-failure tests).
        self.failing_accounts: set[str] = set()
        self.non_get_paths: set[str] = set()
        # Requests per region segment: proves credentials only went where they were sent.
        self.regions: Counter[str] = Counter()
        # Requests being answered now, and the most at once, per route: proves what a
        # client reads concurrently.
        self._in_flight: Counter[str] = Counter()
        self.peak_in_flight: Counter[str] = Counter()

    @contextlib.contextmanager
    def in_flight(self, route: str) -> Iterator[None]:
        with self._lock:
            self._in_flight[route] += 1
            self.peak_in_flight[route] = max(self.peak_in_flight[route], self._in_flight[route])
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[route] -= 1

    def count_request(self, method: str, path: str, *, region: str = "", route: str = "") -> None:
        with self._lock:
            self.requests_served += 1
            self.methods[method] += 1
            self.regions[region] += 1
            bare = urlsplit(path).path
            if method != "GET":
                self.non_get_paths.add(bare)
            self.request_log.append(RequestLogEntry(method, bare, route or "other"))

    def requests_by_route(self) -> Counter[str]:
        """How many requests of each route the request log holds."""
        with self._lock:
            return Counter(entry.route for entry in self.request_log)

    def reset_request_log(self) -> None:
        with self._lock:
            self.request_log.clear()

    def inject(self, *faults: str, route: str | None = None) -> None:
        """Answer the next requests (or the next ones of `route`) with these faults, in
        order."""
        for fault in faults:
            if fault.split(":")[0] not in FAULT_KINDS:
                raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULT_KINDS)}")
        if route is not None and route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; known: {', '.join(ROUTES)}")
        with self._lock:
            if route is None:
                self._faults.extend(faults)
            else:
                self._route_faults.setdefault(route, deque()).extend(faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._route_faults.clear()

    def next_fault(self, route: str = "") -> str | None:
        with self._lock:
            targeted = self._route_faults.get(route)
            if targeted:
                return targeted.popleft()
            if self._faults:
                return self._faults.popleft()
            if self.fault_rate and self._random.random() < self.fault_rate:
                return self._random.choice(self.fault_kinds)
        return None


class KeepitSandbox:
    """The sandbox server in a background thread: for tests, the demo and the benchmark.
    `aggregated_health=False` simulates a Keepit without `GET …/devices/health`.

    >>> with KeepitSandbox(SandboxConfig(accounts=5)) as sandbox:
    ...     sandbox.base_url_template  # 'http://127.0.0.1:<port>/{region}'
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        start: datetime | None = None,
        speed: float = 1.0,
        latency_ms: int = 0,
        fault_rate: float = 0.0,
        fault_kinds: Iterable[str] = DEFAULT_RANDOM_FAULTS,
        aggregated_health: bool = True,
    ) -> None:
        self.config = config or SandboxConfig()
        self.clock = SandboxClock(start=start, speed=speed)
        self.server = KeepitSandboxServer(
            (host, port),
            config=self.config,
            clock=self.clock,
            latency_ms=latency_ms,
            fault_rate=fault_rate,
            fault_kinds=fault_kinds,
            aggregated_health=aggregated_health,
        )
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url_template(self) -> str:
        return self.url + "/{region}"

    @property
    def msp(self) -> SandboxMsp:
        return self.server.msp

    def start(self) -> KeepitSandbox:
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="keepit-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def advance(self, delta: timedelta) -> None:
        self.clock.advance(delta)

    def inject(self, *faults: str, route: str | None = None) -> None:
        self.server.inject(*faults, route=route)

    def __enter__(self) -> KeepitSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
