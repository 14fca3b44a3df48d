"""The Keepit client against the sandbox over real loopback HTTP."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from keepit.client import KeepitClient, KeepitCredentials
from keepit.errors import KeepitAuthError, KeepitError, KeepitProtocolError, KeepitUnavailable
from keepit_sandbox import KeepitSandbox, SandboxConfig
from tests.conftest import ROOT, subprocess_env

USER = ("msp-admin@example.com", "sandbox-password")
TOKEN = ("vectis-api-token", "sandbox-token-password")
WINDOW_END = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def client_for(
    sandbox: KeepitSandbox,
    *,
    username: str = USER[0],
    password: str = USER[1],
    token_login: str = "",
    token_password: str = "",
    region: str = "us-dc",
    **options: float,
) -> KeepitClient:
    credentials = KeepitCredentials.choose(
        username=username, password=password, token_login=token_login, token_password=token_password
    )
    settings: dict[str, float] = {"retry_budget_seconds": 10.0, "read_timeout": 5.0}
    settings.update(options)
    return KeepitClient(
        region=region,
        credentials=credentials,
        base_url_template=sandbox.base_url_template,
        connect_timeout=2.0,
        read_timeout=settings["read_timeout"],
        max_attempts=int(settings.get("max_attempts", 4)),
        retry_budget_seconds=settings["retry_budget_seconds"],
        sleep=lambda seconds: None if settings.get("no_sleep") else time.sleep(seconds),
    )


def test_username_and_password_and_the_api_token_both_work(sandbox: KeepitSandbox) -> None:
    parent = sandbox.msp.parent.guid
    assert client_for(sandbox).who_am_i() == parent
    by_token = client_for(
        sandbox, username="", password="", token_login=TOKEN[0], token_password=TOKEN[1]
    )
    assert by_token.who_am_i() == parent
    assert by_token.credential_kind == "api_token"


def test_the_token_pair_is_used_even_when_the_password_is_wrong(sandbox: KeepitSandbox) -> None:
    client = client_for(sandbox, password="wrong", token_login=TOKEN[0], token_password=TOKEN[1])
    assert client.who_am_i() == sandbox.msp.parent.guid
    own = [
        r
        for r in client.audit_records(
            sandbox.msp.parent.guid,
            start=WINDOW_END - timedelta(hours=1),
            end=WINDOW_END + timedelta(minutes=1),  # the frozen clock stands at WINDOW_END
        )
        if r.acl == "GetUser"
    ]
    assert own
    assert {r.token for r in own} == {TOKEN[0]}


def test_a_wrong_password_is_an_authentication_error(sandbox: KeepitSandbox) -> None:
    with pytest.raises(KeepitAuthError) as caught:
        client_for(sandbox, password="wrong").who_am_i()
    assert caught.value.status == 401


def test_a_region_that_does_not_host_the_account_refuses_the_credentials(
    sandbox: KeepitSandbox,
) -> None:
    with pytest.raises(KeepitAuthError):
        client_for(sandbox, region="de-fr").who_am_i()


def test_a_guid_outside_the_callers_tree_is_refused(sandbox: KeepitSandbox) -> None:
    with pytest.raises(KeepitAuthError) as caught:
        client_for(sandbox).parent_account("zzzzzz-zzzzzz-zzzzzz")
    assert caught.value.status == 403


def test_the_parent_lists_its_customers_and_leaves_have_none(sandbox: KeepitSandbox) -> None:
    client = client_for(sandbox)
    msp = sandbox.msp
    children = client.child_accounts(msp.parent.guid)
    assert [c.id for c in children] == [a.guid for a in msp.accounts]
    assert any(c.company_name == "" and c.display_name == c.full_name for c in children)
    # Leaves answer 404 or an empty <users/>: both are "none".
    assert client.child_accounts(msp.accounts[0].guid) == []
    assert client.child_accounts(msp.accounts[1].guid) == []


def test_connectors_cover_dsl_kinds_and_skip_the_system_device(sandbox: KeepitSandbox) -> None:
    client = client_for(sandbox)
    connectors = [c for a in sandbox.msp.accounts for c in client.connectors(a.guid)]
    assert connectors
    assert all(c.type != "system" for c in connectors)
    assert any(c.type == "dsl" and c.agent_type for c in connectors)
    assert all(c.agent_type for c in connectors if c.type == "dsl")


def test_summary_and_health_describe_every_backup_state(sandbox: KeepitSandbox) -> None:
    with KeepitSandbox(SandboxConfig(accounts=60), start=WINDOW_END, speed=0) as big:
        client = client_for(big)
        healths: set[tuple[str, str]] = set()
        onboarding = partial = 0
        for account in big.msp.accounts[:60]:
            summary = {s.guid: s for s in client.backup_summary(account.guid)}
            for connector in client.connectors(account.guid):
                health = client.connector_health(account.guid, connector.guid)
                healths.add((health.health, health.reason))
                entry = summary.get(connector.guid)
                if entry is None or entry.last_complete_snapshot_time is None:
                    onboarding += 1
                elif entry.last_snapshot_time != entry.last_complete_snapshot_time:
                    partial += 1
        assert {h for h, _ in healths} == {"healthy", "unhealthy", "critical"}
        assert {"BADTOKEN", "QUOTAVIOLATED", "NOCHECKIN", "CLOUDNOCHECKIN"} <= {
            r for _, r in healths
        }
        assert onboarding > 0
        assert partial > 0


def test_the_audit_log_pages_through_short_pages_without_loss(sandbox: KeepitSandbox) -> None:
    client = client_for(sandbox)
    parent = sandbox.msp.parent.guid
    paged = list(
        client.audit_pages(
            parent, start=WINDOW_END - timedelta(days=14), end=WINDOW_END, page_size=50
        )
    )
    pages = [(page.offset, len(page.records)) for page in paged]
    records = [record for page in paged for record in page.records]
    # Each page says where the next starts; the last says nothing.
    assert [page.next_offset for page in paged[:-1]] == [page.offset for page in paged[1:]]
    assert paged[-1].next_offset is None
    resumed = list(
        client.audit_pages(
            parent,
            start=WINDOW_END - timedelta(days=14),
            end=WINDOW_END,
            page_size=50,
            offset=paged[3].offset,
        )
    )
    assert [r.dedup_key for page in resumed for r in page.records] == [
        r.dedup_key for page in paged[3:] for r in page.records
    ]
    in_one_page = list(
        client.audit_records(
            parent, start=WINDOW_END - timedelta(days=14), end=WINDOW_END, page_size=10_000
        )
    )
    assert [r.dedup_key for r in records] == [r.dedup_key for r in in_one_page]
    assert len(records) > 8 * 6 * 13  # 8 accounts, 6 records a day, 14 days
    assert len({r.dedup_key for r in records}) == len(records)
    assert len(pages) > 10
    assert all(count == 48 for _, count in pages[:-1])  # two fewer than the limit asked for
    assert {r.account for r in records} >= {a.guid for a in sandbox.msp.accounts}
    assert all(WINDOW_END - timedelta(days=14) <= r.time < WINDOW_END for r in records if r.time)
    areas = {r.area for r in records}
    assert {"User events", "Backup/Restore", "Connector events", "Miscellaneous"} <= areas
    assert any(r.succeeded is False for r in records)


def test_time_moving_on_brings_new_audit_records_and_backups(sandbox: KeepitSandbox) -> None:
    client = client_for(sandbox)
    account = sandbox.msp.accounts[2].guid
    before = {s.guid: s.last_snapshot_time for s in client.backup_summary(account)}
    start = WINDOW_END - timedelta(hours=1)
    sandbox.advance(timedelta(days=1))
    later = WINDOW_END + timedelta(days=1)
    after = {s.guid: s.last_snapshot_time for s in client.backup_summary(account)}
    assert any(after[g] and before.get(g) and after[g] > before[g] for g in after)  # type: ignore[operator]
    fresh = list(client.audit_records(account, start=WINDOW_END, end=later, recursive=False))
    assert fresh
    assert all(r.time and WINDOW_END <= r.time < later for r in fresh)
    _ = start


def test_injected_429_and_503_are_retried_until_success(sandbox: KeepitSandbox) -> None:
    sleeps: list[float] = []
    client = client_for(sandbox)
    client._sleep = sleeps.append
    sandbox.inject("429", "503", "drop")
    assert client.who_am_i() == sandbox.msp.parent.guid
    assert sleeps[0] == 1.0  # the sandbox's Retry-After
    assert client.request_count == 4


def test_retries_give_up_with_unavailable_in_bounded_time(sandbox: KeepitSandbox) -> None:
    sandbox.inject(*["503"] * 20)
    client = client_for(sandbox, retry_budget_seconds=2.0, max_attempts=20)
    started = time.monotonic()
    with pytest.raises(KeepitUnavailable, match="HTTP 503"):
        client.who_am_i()
    assert time.monotonic() - started < 4.0
    sandbox.server.clear_faults()


def test_a_server_that_does_not_answer_times_out(sandbox: KeepitSandbox) -> None:
    sandbox.inject("hang:3")
    client = client_for(sandbox, read_timeout=0.5, max_attempts=1)
    started = time.monotonic()
    with pytest.raises(KeepitUnavailable, match="did not answer in time"):
        client.who_am_i()
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    ("fault", "message"),
    [("malformed", "malformed XML"), ("xml-bomb", "forbidden XML"), ("xxe", "forbidden XML")],
)
def test_bad_xml_from_keepit_is_a_protocol_error(
    sandbox: KeepitSandbox, fault: str, message: str
) -> None:
    sandbox.inject(fault)
    started = time.monotonic()
    with pytest.raises(KeepitProtocolError, match=message):
        client_for(sandbox).child_accounts(sandbox.msp.parent.guid)
    assert time.monotonic() - started < 2.0  # rejected, not expanded


def test_unversioned_and_text_plain_requests_get_the_default_shapes(
    sandbox: KeepitSandbox,
) -> None:
    base = sandbox.url + "/us-dc"
    parent = sandbox.msp.parent.guid
    v0 = requests.get(f"{base}/users/{parent}/users", auth=USER, timeout=5)
    assert v0.text.startswith("<users><id>")
    audit = requests.put(
        f"{base}/audit/filter/pretty?limit=10&offset=0",
        data=f"<filter><account>{parent}</account></filter>",
        headers={"Content-Type": "text/plain"},
        auth=USER,
        timeout=5,
    )
    assert audit.status_code == 200
    assert audit.text.startswith("<audit>")
    anonymous = requests.get(f"{base}/users/", timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.text == "Anonymous access denied - suggest authentication."


def test_every_call_of_the_client_only_reads(sandbox: KeepitSandbox) -> None:
    client = client_for(sandbox)
    parent = sandbox.msp.parent.guid
    client.who_am_i()
    client.parent_account(parent)
    account = client.child_accounts(parent)[0].id
    connector = client.connectors(account)[0].guid
    client.backup_summary(account)
    client.connector_health(account, connector)
    list(client.audit_records(parent, start=WINDOW_END - timedelta(days=1), end=WINDOW_END))
    assert set(sandbox.server.methods) == {"GET", "PUT"}
    assert sandbox.server.non_get_paths == {"/us-dc/audit/filter/pretty"}


def test_the_same_seed_gives_the_same_data() -> None:
    first = KeepitSandbox(SandboxConfig(seed=7, accounts=30), start=WINDOW_END, speed=0)
    second = KeepitSandbox(SandboxConfig(seed=7, accounts=30), start=WINDOW_END, speed=0)
    other = KeepitSandbox(SandboxConfig(seed=8, accounts=30), start=WINDOW_END, speed=0)
    try:
        names = [[a.company_name for a in s.msp.accounts] for s in (first, second, other)]
        assert names[0] == names[1]
        assert [a.guid for a in first.msp.accounts] == [a.guid for a in second.msp.accounts]
        assert [a.guid for a in first.msp.accounts] != [a.guid for a in other.msp.accounts]
        # The variety of real MSPs: duplicates, "&", accents, legal suffixes, empty names.
        company_names = names[0]
        assert len(set(company_names)) < len(company_names)
        assert any("&" in n for n in company_names)
        assert any(re.search(r"[^\x00-\x7f]", n) for n in company_names)
        assert "" in company_names
    finally:
        for s in (first, second, other):
            s.server.server_close()


def test_the_sandbox_command_serves_the_api_and_documents_its_flags() -> None:
    help_text = subprocess.run(
        [sys.executable, "manage.py", "keepit_sandbox", "--help"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for flag in (
        "--port",
        "--accounts",
        "--connectors-per-account",
        "--events-per-account-per-day",
        "--seed",
        "--speed",
        "--latency-ms",
        "--fault-rate",
        "--username",
        "--token-login",
        "--no-own-read-audit",
        "--region",
    ):
        assert flag in help_text
    process = subprocess.Popen(
        [sys.executable, "manage.py", "keepit_sandbox", "--port", "0", "--accounts", "50"],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/us-dc", banner)
        assert url, banner
        guid = re.search(r"GUID: (\S+)", process.stdout.readline())
        assert guid
        response = requests.get(f"{url.group(0)}/users/", auth=USER, timeout=5)
        assert response.text == f"<user><id>{guid.group(1)}</id></user>"
        children = requests.get(
            f"{url.group(0)}/users/{guid.group(1)}/users",
            params={"all": "1"},  # with the accounts scheduled for deletion, as Vectis asks
            auth=USER,
            timeout=5,
            headers={"Accept": "application/vnd.keepit.v1+xml"},
        )
        assert children.text.count("<user>") == 50
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_nothing_in_the_code_base_sends_a_write_to_keepit() -> None:
    """Read-only by construction: no code names a write method in an HTTP call, except
    the client's read filters (keepit-api.md C12), which are `PUT`s inside
    keepit/client.py, where `_request` checks them against its allow-list, and the one
    POST of a generic webhook channel in alerts/channels.py, which goes to the URL the MSP
    gave that channel (its session never carries Keepit credentials)."""
    write_call = re.compile(
        r"""\b(requests|\w*session\w*|\w*http\w*)\.(post|put|patch|delete)\(|"""
        r"""request\(\s*["'](POST|PUT|PATCH|DELETE)["']|"""
        r"""method\s*=\s*["'](POST|PUT|PATCH|DELETE)["']""",
        re.IGNORECASE,
    )
    read_filter = re.compile(r"""self\._request\(\s*"PUT",""")
    client = Path(ROOT, "keepit", "client.py")
    webhook = (Path(ROOT, "alerts", "channels.py"), "response = requests.post(")
    offenders = []
    for app in ("vectis", "customers", "backups", "integrations", "keepit", "alerts"):
        for path in sorted(Path(ROOT, app).rglob("*.py")):
            if "sandbox" in path.parts or "migrations" in path.parts:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if path == client and read_filter.search(line):
                    continue
                if (path, line.strip()) == webhook:
                    continue
                if write_call.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/users/abc/devices/xyz"),  # updates a connector
        ("PUT", "/users/abc/tokens/me"),  # changes a token
        ("POST", "/users/abc/tokens/"),  # creates a token
        ("DELETE", "/users/abc"),  # deletes an account
        ("PATCH", "/audit/filter/pretty"),
    ],
)
def test_the_client_refuses_every_write_before_it_is_sent(
    sandbox: KeepitSandbox, method: str, path: str
) -> None:
    client = client_for(sandbox)
    with pytest.raises(KeepitError, match="the Keepit client is read-only"):
        client._request(method, path, accept=None, body=b"<x/>")
    assert sandbox.server.requests_served == 0  # refused here, not by Keepit


def test_a_sandbox_started_later_the_same_day_serves_the_same_msp() -> None:
    earlier = KeepitSandbox(SandboxConfig(accounts=30), start=WINDOW_END, speed=0)
    later = KeepitSandbox(
        SandboxConfig(accounts=30), start=WINDOW_END + timedelta(minutes=15), speed=0
    )
    try:
        first, second = earlier.msp, later.msp
        assert [a.created for a in first.accounts] == [a.created for a in second.accounts]
        for account in first.accounts:
            before = [
                (c.guid, c.created, c.stopped_at, c.scenario)
                for c in first.connectors[account.guid]
            ]
            after = [
                (c.guid, c.created, c.stopped_at, c.scenario)
                for c in second.connectors[account.guid]
            ]
            assert before == after
    finally:
        earlier.server.server_close()
        later.server.server_close()
