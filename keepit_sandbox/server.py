"""The Keepit sandbox: a threaded HTTP server on loopback speaking the Keepit API.

It implements every call of keepit-api.md Part A with Keepit's paths, headers, status
codes, XML shapes and quirks: plain-text 401 bodies, 404 for "no child accounts" (and an
empty `<users/>` for others, as Keepit's clients disagree), `next-offset` paging with
pages two records shorter than `limit`, elements that appear once or many times,
`agent-type` only for v4. Like Keepit it is lenient: the audit filter is accepted with any
content type, and unversioned requests get the default shape.

The region is the first path segment (`KEEPIT_BASE_URL_TEMPLATE=http://127.0.0.1:9100/{region}`);
only the simulated region knows the MSP, any other answers as Keepit does for an account
that is not there (401).

Faults can be injected for tests (`inject`, optionally only for one route such as
"audit" or "devices") or at random (`fault_rate`): 429 with Retry-After, 503, dropped
connections, malformed XML, an XML bomb, an external entity, a hang, a huge answer
(`huge:MB` with a Content-Length, `huge-stream:MB` without one, streamed so the sandbox
itself stays small) and an audit page with more records than the `limit` asked for
(`overfull`).
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
from collections.abc import Iterable
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree.ElementTree import ParseError
from xml.sax.saxutils import escape

from defusedxml.ElementTree import fromstring

from .simulation import SandboxClock, SandboxConfig, SandboxMsp, iso

logger = logging.getLogger(__name__)

REGION_SEGMENT_RE = re.compile(r"^[a-z0-9-]{2,32}$")
FAULT_KINDS = (
    "429",
    "503",
    "drop",
    "malformed",
    "xml-bomb",
    "xxe",
    "hang",
    "huge",
    "huge-stream",
    "overfull",
)
# Which requests a route-targeted fault applies to (the first path segments after the
# region, and the method).
ROUTES = ("whoami", "account", "children", "devices", "summary", "health", "audit")
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
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        region = sandbox.config.region
        if (
            segments
            and segments[0] not in ("users", "audit")
            and REGION_SEGMENT_RE.match(segments[0])
        ):
            region = segments.pop(0)
        sandbox.count_request(method, self.path, region=region)
        if sandbox.latency > 0:
            time.sleep(sandbox.latency)
        self.overfull = False
        fault = sandbox.next_fault(_route_of(method, segments))
        if fault == "overfull":
            self.overfull = True  # the audit handler serves too many records
        elif fault is not None and self._inject(fault):
            return
        login = self._authenticate(region)
        if login is None:
            return
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
        if method != "GET":
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
        rest = segments[2:]
        path = "/" + "/".join(segments)
        if not rest:
            self._own_read(login, "GetUser", path)
            parent = "" if account is msp.parent else msp.parent.guid
            self._send(
                200,
                "<user>"
                + _element("id", account.guid)
                + _element("enabled", "true")
                + _element("created", iso(account.created))
                + (_element("parent", parent) if parent else "")
                + _element("subscribed", "true")
                + "</user>",
            )
        elif rest == ["users"]:
            self._own_read(login, "GetUsers", path)
            self._children(account.guid, version)
        elif rest == ["devices"]:
            self._own_read(login, "GetDevices", path)
            self._devices(account.guid, version, include_deleted=query.get("all") == "1")
        elif rest == ["monitoring", "backup", "summary"]:
            self._own_read(login, "GetBackupSummary", path)
            self._summary(account.guid)
        elif len(rest) == 3 and rest[0] == "devices" and rest[2] == "health":
            self._own_read(login, "GetDeviceHealth", path)
            self._health(account.guid, rest[1].lower(), with_reason=query.get("reason") == "true")
        else:
            self._text(404, "Not found")

    def _own_read(self, login: str, acl: str, path: str) -> None:
        self.server.msp.record_own_read(
            login=login, acl=acl, method=self.command, path=path, ip=self.client_address[0]
        )

    def _children(self, guid: str, version: int) -> None:
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
            if version == 0:
                items.append(_element("id", child.guid))
                continue
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
            headers={"X-Total-Count": str(len(msp.accounts))},
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


def _route_of(method: str, segments: list[str]) -> str:
    """The route name of a request, for route-targeted faults."""
    if method == "PUT" and segments[:2] == ["audit", "filter"]:
        return "audit"
    if segments == ["users"]:
        return "whoami"
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
    return "other"


def _parse(value: str | None, *, default: float) -> float:
    if not value or not value.strip():
        return default
    return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp()


def _record_xml(record: dict[str, str]) -> str:
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


class KeepitSandboxServer(ThreadingHTTPServer):
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
    ) -> None:
        super().__init__(address, SandboxRequestHandler)
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

    def count_request(self, method: str, path: str, *, region: str = "") -> None:
        with self._lock:
            self.requests_served += 1
            self.methods[method] += 1
            self.regions[region] += 1
            if method != "GET":
                self.non_get_paths.add(urlsplit(path).path)

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
