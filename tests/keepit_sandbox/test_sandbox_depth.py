"""The sandbox's Part C calls over real loopback HTTP: aggregated health, job counts and
history, device status, seats, tokens, the v3 child list, the request log and faults.

Plain `requests` and defusedxml on purpose: these tests pin the wire shapes the Keepit
client is written against, without depending on the client.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from xml.etree.ElementTree import Element

import pytest
import requests
from defusedxml.ElementTree import fromstring

from keepit_sandbox import KeepitSandbox, SandboxConfig, SandboxMsp
from keepit_sandbox.simulation import (
    AUTH_ERRORS,
    QUOTA_ERROR,
    THROTTLED,
    UNKNOWN_ERROR_CODE,
    SandboxClock,
    SimConnector,
)
from tests.conftest import ROOT, subprocess_env

USER = ("msp-admin@example.com", "sandbox-password")
TOKEN = ("vectis-api-token", "sandbox-token-password")
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # the frozen clock of the sandboxes here
ANCHOR = datetime(2026, 11, 26, tzinfo=UTC)
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
JOB_STATES = ("scheduled", "in-progress", "cancelled", "successful", "incomplete", "unsuccessful")


@pytest.fixture(scope="module")
def big() -> Iterator[KeepitSandbox]:
    """60 accounts (every scenario but a few rare ones), clock frozen; never changed."""
    with KeepitSandbox(SandboxConfig(accounts=60), start=NOW, speed=0) as running:
        yield running


def call(
    sandbox: KeepitSandbox,
    path: str,
    *,
    method: str = "GET",
    body: str | None = None,
    auth: tuple[str, str] = USER,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | list[tuple[str, str]] | None = None,
) -> requests.Response:
    return requests.request(
        method,
        f"{sandbox.url}/us-dc{path}",
        data=body.encode() if body is not None else None,
        auth=auth,
        headers=headers or {},
        params=params,
        timeout=10,
    )


def xml(response: requests.Response) -> Element:
    assert response.status_code == 200, (response.status_code, response.text)
    root: Element = fromstring(response.content, forbid_dtd=True)
    return root


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(value: str | None) -> datetime:
    assert value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def live_connectors(msp: SandboxMsp, account: str) -> list[SimConnector]:
    return [c for c in msp.connectors[account] if c.type != "system"]


def by_scenario(msp: SandboxMsp, scenario: str) -> SimConnector:
    return next(
        c
        for a in msp.accounts
        for c in live_connectors(msp, a.guid)
        if c.scenario == scenario and c.accessible and c.deletion_deadline is None
    )


def history(
    sandbox: KeepitSandbox,
    connector: SimConnector,
    start: datetime,
    end: datetime | None = None,
    *,
    extra: str = "",
    content_type: str = "application/xml",
) -> list[Element]:
    to = f"<to-time>{end.isoformat().replace('+00:00', '.000Z')}</to-time>" if end else ""
    body = (
        f"<filter><from-time>{start.isoformat().replace('+00:00', '.000Z')}</from-time>{to}"
        f"{extra}</filter>"
    )
    root = xml(
        call(
            sandbox,
            f"/users/{connector.account.guid}/devices/{connector.guid}/jobs",
            method="PUT",
            body=body,
            headers={"Content-Type": content_type},
        )
    )
    assert root.tag == "jobs"
    return root.findall("job")


def outcome_of(job: Element) -> str:
    """Keepit's status derivation, plus "incomplete": succeeded *and* an error."""
    if job.find("succeeded") is not None:
        return "incomplete" if job.find("execsummary") is not None else "successful"
    if job.find("failed") is not None:
        return "unsuccessful"
    if job.find("cancelled") is not None:
        return "cancelled"
    return "in-progress" if job.findtext("active") == "true" else "scheduled"


def summary_of(sandbox: KeepitSandbox, connector: SimConnector) -> tuple[str | None, str | None]:
    root = xml(call(sandbox, f"/users/{connector.account.guid}/monitoring/backup/summary"))
    device = next(d for d in root.findall("device") if d.findtext("guid") == connector.guid)
    return device.findtext("last-snapshot-time"), device.findtext("last-complete-snapshot-time")


def health_of(sandbox: KeepitSandbox, connector: SimConnector) -> tuple[str, str]:
    root = xml(
        call(
            sandbox,
            f"/users/{connector.account.guid}/devices/{connector.guid}/health",
            params={"reason": "true"},
        )
    )
    return root.findtext("health") or "", root.findtext("reason") or ""


# --- aggregated health ----------------------------------------------------------------------


def test_aggregated_health_equals_the_per_connector_health_of_every_connector(
    big: KeepitSandbox,
) -> None:
    msp = big.msp
    seen_reasons: set[str] = set()
    for account in msp.accounts:
        root = xml(call(big, f"/users/{account.guid}/devices/health", params={"reason": "true"}))
        assert root.tag == "devhealth"
        aggregated = {
            d.findtext("guid"): (d.findtext("health"), d.findtext("reason") or "")
            for d in root.findall("device")
        }
        # Every connector but the system device, inaccessible and deletion-scheduled too.
        assert set(aggregated) == {c.guid for c in live_connectors(msp, account.guid)}
        for connector in live_connectors(msp, account.guid):
            assert aggregated[connector.guid] == health_of(big, connector)
            seen_reasons.add(aggregated[connector.guid][1])
    assert {"BADTOKEN", "NOCHECKIN", "CLOUDNOCHECKIN", "OK", ""} <= seen_reasons
    assert any(not c.accessible for a in msp.accounts for c in msp.connectors[a.guid])


def test_aggregated_health_filters_by_type_and_leaves_reasons_out_when_asked(
    big: KeepitSandbox,
) -> None:
    msp = big.msp
    account = next(
        a
        for a in msp.accounts
        if any(c.type == "dsl" for c in live_connectors(msp, a.guid))
        and any(msp.backup_state(c, NOW.timestamp()).reason for c in live_connectors(msp, a.guid))
    )
    path = f"/users/{account.guid}/devices/health"
    m365 = xml(call(big, path, params={"reason": "true", "type": "o365-admin"}))
    expected = {c.guid for c in live_connectors(msp, account.guid) if c.type == "o365-admin"}
    assert {d.findtext("guid") for d in m365.findall("device")} == expected
    dsl = next(c for c in live_connectors(msp, account.guid) if c.type == "dsl")
    by_agent = xml(call(big, path, params={"reason": "true", "type": dsl.agent_type}))
    assert dsl.guid in {d.findtext("guid") for d in by_agent.findall("device")}
    no_reason = xml(call(big, path, params={"reason": "false"}))
    assert no_reason.findall("device")
    assert all(d.find("reason") is None for d in no_reason.findall("device"))
    # The parent account has no connectors.
    empty = call(big, f"/users/{msp.parent.guid}/devices/health", params={"reason": "true"})
    assert empty.text == "<devhealth/>"


def test_aggregated_health_answers_404_when_the_keepit_has_no_such_call() -> None:
    with KeepitSandbox(
        SandboxConfig(accounts=3), start=NOW, speed=0, aggregated_health=False
    ) as sandbox:
        account = sandbox.msp.accounts[0]
        missing = call(sandbox, f"/users/{account.guid}/devices/health", params={"reason": "1"})
        assert (missing.status_code, missing.text) == (404, "Not found")
        connector = live_connectors(sandbox.msp, account.guid)[0]
        assert health_of(sandbox, connector)[0] in {"healthy", "unhealthy", "critical"}


# --- job counts and history -----------------------------------------------------------------


def account_counts(
    sandbox: KeepitSandbox, account: str, start: datetime, end: datetime, **params: str
) -> dict[str, dict[str, int]]:
    root = xml(
        call(
            sandbox,
            f"/users/{account}/jobs/count",
            params={"from": iso(start), "to": iso(end), **params},
        )
    )
    assert root.tag == "jobs-count"
    result = {}
    for device in root.findall("device"):
        entries = device.findall("counts/job-type")
        assert [e.findtext("name") for e in entries] == ["backup"]
        assert [child.tag for child in entries[0]] == ["name", *JOB_STATES]
        result[device.findtext("guid") or ""] = {
            state: int(entries[0].findtext(state) or "x") for state in JOB_STATES
        }
    return result


def test_a_days_job_counts_equal_its_job_history_per_outcome(big: KeepitSandbox) -> None:
    msp = big.msp
    day_start, day_end = NOW - timedelta(days=1), NOW
    totals: Counter[str] = Counter()
    for account in msp.accounts[:40]:
        counts = account_counts(big, account.guid, day_start, day_end)
        for connector in live_connectors(msp, account.guid):
            finished = history(big, connector, day_start, day_end)
            active = history(big, connector, day_start, day_end, extra="<active-only/>")
            from_history = Counter(outcome_of(job) for job in finished + active)
            if not from_history:
                assert connector.guid not in counts  # no job in the window: left out
                continue
            expected = {state: from_history.get(state, 0) for state in JOB_STATES}
            assert counts[connector.guid] == expected
            totals.update(from_history)
    assert all(totals[state] > 0 for state in JOB_STATES if state != "scheduled"), totals


def test_job_counts_have_scheduled_jobs_ahead_and_answer_400_without_from(
    sandbox: KeepitSandbox,
) -> None:
    account = sandbox.msp.accounts[0].guid
    ahead = account_counts(sandbox, account, NOW, NOW + timedelta(days=1))
    assert ahead
    assert all(c["scheduled"] > 0 for c in ahead.values())
    assert all(c["successful"] == 0 for c in ahead.values())
    no_from = call(sandbox, f"/users/{account}/jobs/count")
    assert (no_from.status_code, no_from.text) == (400, "from is required")
    # `to` defaults to now; job-types joined by commas, or repeated; other types only.
    default_to = account_counts(sandbox, account, NOW - timedelta(days=1), NOW)
    root = xml(
        call(
            sandbox,
            f"/users/{account}/jobs/count",
            params={"from": iso(NOW - timedelta(days=1)), "job-types": "backup,restore"},
        )
    )
    assert len(root.findall("device")) == len(default_to)
    repeated = call(
        sandbox,
        f"/users/{account}/jobs/count",
        params=[
            ("from", iso(NOW - timedelta(days=1))),
            ("job-types", "restore"),
            ("job-types", "backup"),
        ],
    )
    assert len(xml(repeated).findall("device")) == len(default_to)
    restores = call(
        sandbox,
        f"/users/{account}/jobs/count",
        params={"from": iso(NOW - timedelta(days=1)), "job-types": "restore"},
    )
    assert restores.text == "<jobs-count/>"
    # device-type matches the type, or the agent-type of a dsl connector.
    m365 = account_counts(
        sandbox, account, NOW - timedelta(days=1), NOW, **{"device-type": "o365-admin"}
    )
    assert set(m365) == {
        c.guid for c in live_connectors(sandbox.msp, account) if c.type == "o365-admin"
    }


def test_a_stopped_connector_is_left_out_of_the_counts_of_days_without_jobs(
    sandbox: KeepitSandbox,
) -> None:
    stalled = by_scenario(sandbox.msp, "stalled")
    assert stalled.stopped_at is not None
    counts = account_counts(sandbox, stalled.account.guid, NOW - timedelta(hours=6), NOW)
    assert stalled.guid not in counts
    assert history(sandbox, stalled, NOW - timedelta(hours=6), NOW) == []
    before = datetime.fromtimestamp(stalled.stopped_at, UTC)
    assert history(sandbox, stalled, before - timedelta(days=1), before)


def test_the_per_connector_count_needs_job_types_and_knows_its_connector(
    sandbox: KeepitSandbox,
) -> None:
    msp = sandbox.msp
    connector = live_connectors(msp, msp.accounts[1].guid)[0]
    path = f"/users/{connector.account.guid}/devices/{connector.guid}/jobs/count"
    window = {"from": iso(NOW - timedelta(days=2)), "to": iso(NOW)}
    root = xml(call(sandbox, path, params={**window, "job-types": "backup,restore"}))
    assert root.tag == "jobs-count"
    entries = {e.findtext("name"): e for e in root.findall("job-type")}
    assert list(entries) == ["backup", "restore"]
    overall = account_counts(sandbox, connector.account.guid, NOW - timedelta(days=2), NOW)
    assert {s: int(entries["backup"].findtext(s) or "x") for s in JOB_STATES} == overall[
        connector.guid
    ]
    assert all(entries["restore"].findtext(s) == "0" for s in JOB_STATES)
    missing_types = call(sandbox, path, params=window)
    assert (missing_types.status_code, missing_types.text) == (400, "job-types is required")
    unknown = call(
        sandbox,
        f"/users/{connector.account.guid}/devices/nosuch-device-here/jobs/count",
        params={**window, "job-types": "backup"},
    )
    assert unknown.status_code == 404


def test_job_history_shapes_of_successful_incomplete_failed_and_cancelled_jobs(
    big: KeepitSandbox,
) -> None:
    msp = big.msp
    week = NOW - timedelta(days=7)
    partial = by_scenario(msp, "partial")
    jobs = history(big, partial, week, content_type="text/plain;charset=UTF-8")
    assert {outcome_of(j) for j in jobs} == {"successful", "incomplete"}
    for job in jobs:
        assert re.fullmatch(r"[0-9a-z]{6}(-[0-9a-z]{6}){3}", job.findtext("guid") or "")
        assert job.findtext("type") == "backup"
        assert job.findtext("description") == f"[backup][bl][auto][{partial.type}]{{}}"
        assert job.findtext("active") == "false"
        assert job.findtext("progress") == "1.0"
        start = parse(job.findtext("start"))
        ended = parse(job.findtext("succeeded"))
        assert week <= start < NOW
        assert timedelta(minutes=10) <= ended - start <= timedelta(minutes=50)
        for name in ("scheduled", "dispatched", "started"):
            assert job.findtext(name)
    incomplete = next(j for j in jobs if outcome_of(j) == "incomplete")
    reason = incomplete.find("stats/stat")
    assert reason is not None
    assert reason.findtext("name") == "fail_reason"
    sentence = reason.findtext("value") or ""
    assert "items could not be backed up" in sentence
    summary = fromstring(incomplete.findtext("execsummary") or "", forbid_dtd=True)
    assert summary.tag == "summary"
    assert summary.findtext("exit-reason")
    assert [e.text for e in summary.findall("errors/error")] == [sentence]
    successful = next(j for j in jobs if outcome_of(j) == "successful")
    assert successful.find("stats") is None
    flapping = next(
        c
        for a in msp.accounts
        for c in live_connectors(msp, a.guid)
        if c.scenario == "flapping"
        and {"unsuccessful", "cancelled"}
        <= {outcome_of(j) for j in history(big, c, NOW - timedelta(days=30))}
    )
    flaps = history(big, flapping, NOW - timedelta(days=30))
    failed = next(j for j in flaps if outcome_of(j) == "unsuccessful")
    assert failed.findtext("stats/stat/value") == THROTTLED
    assert failed.findtext("execsummary")
    cancelled = next(j for j in flaps if outcome_of(j) == "cancelled")
    assert cancelled.find("execsummary") is None
    assert cancelled.findtext("comment")


def test_lost_logins_fail_every_job_after_they_stopped(big: KeepitSandbox) -> None:
    msp = big.msp
    for scenario in ("BADTOKEN", "BADLOGIN", "NONADMINLOGIN"):
        connector = by_scenario(msp, scenario)
        assert connector.stopped_at is not None
        stopped = datetime.fromtimestamp(connector.stopped_at, UTC)
        after = history(big, connector, stopped)
        assert after
        assert {outcome_of(j) for j in after} == {"unsuccessful"}
        assert {j.findtext("stats/stat/value") for j in after} == {AUTH_ERRORS[scenario]}
        assert {
            outcome_of(j) for j in history(big, connector, stopped - timedelta(days=2), stopped)
        } == {"successful"}
    quota = by_scenario(msp, "QUOTAVIOLATED")
    errors = {j.findtext("stats/stat/value") for j in history(big, quota, NOW - timedelta(days=5))}
    assert errors == {None, QUOTA_ERROR}


def test_the_history_filter_honours_limit_reverse_active_only_and_bad_bodies(
    sandbox: KeepitSandbox,
) -> None:
    msp = sandbox.msp
    connector = live_connectors(msp, msp.accounts[0].guid)[1]
    week = NOW - timedelta(days=7)
    jobs = history(sandbox, connector, week)
    assert len(jobs) > 10
    starts = [parse(j.findtext("start")) for j in jobs]
    assert starts == sorted(starts)
    newest_first = history(sandbox, connector, week, extra="<reverse/><limit>3</limit>")
    assert [j.findtext("guid") for j in newest_first] == [
        j.findtext("guid") for j in reversed(jobs[-3:])
    ]
    explicit = history(sandbox, connector, week, extra="<active-only>false</active-only>")
    assert len(explicit) == len(jobs)
    unknown = history(sandbox, connector, week, extra="<extended-info/><priority>9</priority>")
    assert len(unknown) == len(jobs)
    path = f"/users/{connector.account.guid}/devices/{connector.guid}/jobs"
    no_from = call(sandbox, path, method="PUT", body="<filter><limit>5</limit></filter>")
    assert (no_from.status_code, no_from.text) == (400, "from-time is required")
    wrong_root = call(
        sandbox, path, method="PUT", body=f"<range><start>{iso(week)}</start></range>"
    )
    assert wrong_root.status_code == 400
    dtd = '<?xml version="1.0"?><!DOCTYPE filter [<!ENTITY x "y">]><filter/>'
    assert call(sandbox, path, method="PUT", body=dtd).status_code == 400
    gone = call(
        sandbox,
        f"/users/{connector.account.guid}/devices/nosuch-device-here/jobs",
        method="PUT",
        body=f"<filter><from-time>{iso(week)}</from-time></filter>",
    )
    assert gone.status_code == 404


def test_active_jobs_are_the_running_ones(big: KeepitSandbox) -> None:
    msp = big.msp
    onboarding = next(
        c
        for a in msp.accounts
        for c in live_connectors(msp, a.guid)
        if c.scenario == "onboarding" and c.created < NOW.timestamp() - 3600
    )
    path = f"/users/{onboarding.account.guid}/devices/{onboarding.guid}/jobs"
    root = xml(call(big, path, headers={"active-jobs-only": "true"}))
    [job] = root.findall("job")
    assert job.findtext("active") == "true"
    assert parse(job.findtext("start")) == datetime.fromtimestamp(
        onboarding.created, UTC
    ) + timedelta(minutes=5)  # the one long initial backup
    assert 0.0 < float(job.findtext("progress") or "x") < 1.0
    for name in ("succeeded", "failed", "cancelled"):
        assert job.find(name) is None
    # The onboarding connector has no complete snapshot yet: the summary agrees.
    assert msp.backup_state(onboarding, NOW.timestamp()).last_complete is None
    # Without the header the next scheduled job comes too.
    everything = xml(call(big, path)).findall("job")
    assert [outcome_of(j) for j in everything] == ["in-progress", "scheduled"]
    assert everything[1].find("started") is None
    idle = by_scenario(msp, "stalled")
    quiet = call(
        big,
        f"/users/{idle.account.guid}/devices/{idle.guid}/jobs",
        headers={"active-jobs-only": "true"},
    )
    assert quiet.text == "<jobs/>"


# --- the test API: set_job_outcome ----------------------------------------------------------


def test_set_job_outcome_makes_the_next_jobs_incomplete_and_the_snapshot_partial(
    sandbox: KeepitSandbox,
) -> None:
    msp = sandbox.msp
    connector = next(
        c
        for c in live_connectors(msp, msp.accounts[0].guid)
        + live_connectors(msp, msp.accounts[1].guid)
        if c.scenario == "healthy" and c.cadence <= 6 * 3600
    )
    since = NOW - timedelta(hours=13)
    before = history(sandbox, connector, NOW - timedelta(days=2), since)
    last_good = parse(before[-1].findtext("succeeded"))
    msp.set_job_outcome(
        connector.guid, "incomplete", since=since, error="37 items could not be backed up"
    )
    changed = history(sandbox, connector, since)
    assert changed
    assert {outcome_of(j) for j in changed} == {"incomplete"}
    summary = fromstring(changed[-1].findtext("execsummary") or "", forbid_dtd=True)
    assert summary.findtext("errors/error") == "37 items could not be backed up"
    snapshot, complete = summary_of(sandbox, connector)
    assert parse(snapshot) == parse(changed[-1].findtext("succeeded"))
    assert parse(complete) == last_good
    day = account_counts(sandbox, connector.account.guid, since, NOW)[connector.guid]
    assert day["incomplete"] == len(changed)
    assert day["successful"] == 0
    # Health by the 24 h / 48 h rule from the last complete snapshot.
    sandbox.advance(last_good + timedelta(hours=25) - NOW)
    assert health_of(sandbox, connector) == ("unhealthy", "NOCHECKIN")
    # A later "successful" wins for the jobs starting after it: the connector recovers.
    recovered_at = sandbox.clock.now_datetime()
    msp.set_job_outcome(connector.guid, "successful", since=recovered_at)
    sandbox.advance(timedelta(seconds=connector.cadence + 60))
    snapshot, complete = summary_of(sandbox, connector)
    assert snapshot == complete
    assert parse(complete) > recovered_at
    assert health_of(sandbox, connector)[0] == "healthy"
    assert {outcome_of(j) for j in history(sandbox, connector, since, recovered_at)} == {
        "incomplete"
    }


@pytest.mark.parametrize("outcome", ["unsuccessful", "cancelled"])
def test_failed_or_cancelled_jobs_leave_both_snapshots_where_they_were(
    sandbox: KeepitSandbox, outcome: str
) -> None:
    msp = sandbox.msp
    connector = next(
        c
        for a in msp.accounts
        for c in live_connectors(msp, a.guid)
        if c.scenario == "healthy" and c.cadence == 4 * 3600
    )
    before = summary_of(sandbox, connector)
    msp.set_job_outcome(connector.guid, outcome, since=NOW)
    sandbox.advance(timedelta(hours=20))
    assert summary_of(sandbox, connector) == before
    jobs = history(sandbox, connector, NOW)
    assert len(jobs) >= 4
    assert {outcome_of(j) for j in jobs} == {outcome}
    assert health_of(sandbox, connector)[0] == "healthy"  # not 24 h yet
    sandbox.advance(timedelta(hours=30))
    assert health_of(sandbox, connector) == ("critical", "CLOUDNOCHECKIN")
    if outcome == "unsuccessful":
        assert (
            jobs[0].findtext("stats/stat/value")
            == "The backup failed: an unexpected error occurred."
        )
    with pytest.raises(ValueError, match="unknown outcome"):
        msp.set_job_outcome(connector.guid, "exploded", since=NOW)


def test_a_past_days_jobs_stay_the_same_as_time_moves_on(sandbox: KeepitSandbox) -> None:
    msp = sandbox.msp
    account = msp.accounts[3].guid
    day = (NOW - timedelta(days=2), NOW - timedelta(days=1))
    first = account_counts(sandbox, account, *day)
    sandbox.advance(timedelta(days=3, hours=5))
    assert account_counts(sandbox, account, *day) == first


def test_counting_a_day_of_jobs_of_eight_thousand_connectors_is_cheap() -> None:
    msp = SandboxMsp(
        config=SandboxConfig(accounts=2000, connectors_per_account=4),
        clock=SandboxClock(start=NOW, speed=0),
    )
    now = NOW.timestamp()
    started = time.monotonic()
    totals: Counter[str] = Counter()
    for account in msp.accounts:
        for connector in msp.connectors[account.guid]:
            totals.update(msp.job_counts(connector, now - 86400, now, now))
            msp.backup_state(connector, now)
    assert time.monotonic() - started < 10  # about 0.5 s on a quiet machine
    assert totals["successful"] > 8000 * 2


# --- device status --------------------------------------------------------------------------


def status_of(sandbox: KeepitSandbox, connector: SimConnector) -> list[Element]:
    root = xml(call(sandbox, f"/users/{connector.account.guid}/devices/{connector.guid}/status"))
    assert root.tag == "devstatus"
    return root.findall("entry")


@pytest.mark.parametrize(
    ("scenario", "code"),
    [
        ("BADTOKEN", "E_REVOKED"),
        ("BADLOGIN", "E_LOGIN"),
        ("NONADMINLOGIN", "E_LOGIN_ADMIN"),
        ("QUOTAVIOLATED", "E_QUOTA"),
        ("GRACETIMERSTARTED", "E_QUOTA"),
        ("INCOMPLETECONFIG_O365_ADMIN", "E_INCOMPLETE_CONNECTOR_CONFIG"),
        ("GENERIC", "E_START"),
        ("stalled", "E_TERM"),
        ("NEWFANGLEDREASON", UNKNOWN_ERROR_CODE),
    ],
)
def test_the_error_code_is_in_the_first_entry_and_the_status_in_the_last(
    big: KeepitSandbox, scenario: str, code: str
) -> None:
    connector = by_scenario(big.msp, scenario)
    first, *_, last = status_of(big, connector)
    assert first.findtext("adata/ecode") == code
    assert last.find("adata/ecode") is None
    assert last.find("ecode") is None
    assert first.findtext("status") != last.findtext("status")
    assert int(first.findtext("adata/objectsuploaded") or "x") < int(
        first.findtext("adata/objectstotal") or "x"
    )


def test_healthy_connectors_have_status_0_and_salesforce_at_its_api_limit_status_7(
    big: KeepitSandbox,
) -> None:
    msp = big.msp
    healthy = by_scenario(msp, "healthy")
    entries = status_of(big, healthy)
    assert [e.findtext("status") for e in entries] == ["0"]
    assert all(e.find("adata/ecode") is None for e in entries)
    limited = [
        c
        for a in msp.accounts
        for c in live_connectors(msp, a.guid)
        if c.type == "sforce" and msp.salesforce_api_limit(c)
    ]
    assert limited
    for connector in limited:
        entries = status_of(big, connector)
        assert entries[-1].findtext("status") == "7"
        assert all(e.find("adata/ecode") is None for e in entries)
    missing = call(big, f"/users/{msp.accounts[0].guid}/devices/nosuch-device-here/status")
    assert missing.status_code == 404


# --- seats ----------------------------------------------------------------------------------


def resources_of(sandbox: KeepitSandbox, account: str) -> dict[str, Element]:
    root = xml(call(sandbox, f"/users/{account}/resources"))
    assert root.tag == "resources"
    return {r.findtext("name") or "": r for r in root.findall("resource")}


def expirations(
    sandbox: KeepitSandbox, groups: tuple[str, ...] = SEAT_GROUPS
) -> dict[str, Element]:
    names = "".join(f"<resource-group>{g}</resource-group>" for g in groups)
    root = xml(
        call(
            sandbox,
            f"/users/{sandbox.msp.parent.guid}/expirations",
            method="PUT",
            body=f"<filter><or><resources-violation>{names}</resources-violation></or></filter>",
            headers={"Content-Type": "text/plain;charset=UTF-8"},
        )
    )
    assert root.tag == "subaccounts"
    return {a.findtext("guid") or "": a for a in root.findall("account")}


def test_resources_and_expirations_show_the_same_violations(big: KeepitSandbox) -> None:
    msp = big.msp
    violations = expirations(big)
    seen_grace: list[datetime] = []
    without_limit = 0
    for account in msp.accounts:
        resources = resources_of(big, account.guid)
        kinds = {c.agent_type or c.type for c in live_connectors(msp, account.guid)}
        if "o365-admin" in kinds:
            assert "m365-mailboxonedrive-total" in resources
            assert "o365-admin-seats-total" in resources
        for resource in resources.values():
            assert resource.findtext("type") == "integer"
            assert resource.findtext("evaluated") == "2026-11-26T12:00:00Z"
            limit = resource.findtext("limit")
            violated = limit is not None and int(resource.findtext("usage") or "x") > int(limit)
            assert resource.findtext("violated") == ("true" if violated else "false")
        reported = violations.get(account.guid)
        # A seat group outside Keepit's 14 (the unknown "newsaas" kind) is not asked for.
        group_of = {r.name: r.group for r in msp.seat_resources(account, NOW.timestamp())}
        in_groups = {
            name
            for name, r in resources.items()
            if r.findtext("violated") == "true" and group_of[name] in SEAT_GROUPS
        }
        without_limit += sum(r.find("limit") is None for r in resources.values())
        if not in_groups:
            assert reported is None
            continue
        assert reported is not None
        assert reported.findtext("type") == "customer"
        assert reported.findtext("email") == account.email
        listed = {
            r.findtext("name") or "": r
            for r in reported.findall("resources-violation/resource-group/resources/resource")
        }
        assert set(listed) == in_groups
        for name, entry in listed.items():
            assert entry.findtext("usage") == resources[name].findtext("usage")
            assert entry.findtext("limit") == resources[name].findtext("limit")
            assert entry.findtext("readable-name")
            seen_grace.append(parse(entry.findtext("grace-expires")))
    assert any(g > NOW for g in seen_grace)
    assert any(g < NOW for g in seen_grace)  # a grace period already over
    assert without_limit > 0  # some resources have no limit
    assert set(violations) <= {a.guid for a in msp.accounts}


def test_set_and_clear_a_seat_violation(sandbox: KeepitSandbox) -> None:
    msp = sandbox.msp
    account = msp.accounts[2]
    assert expirations(sandbox) == {}
    assert (
        call(
            sandbox,
            f"/users/{msp.parent.guid}/expirations",
            method="PUT",
            body="<filter/>",
        ).text
        == "<subaccounts/>"
    )
    grace = NOW + timedelta(days=9)
    msp.set_seat_violation(account.guid, grace_expires=grace)
    resource = resources_of(sandbox, account.guid)["m365-mailboxonedrive-total"]
    assert (resource.findtext("usage"), resource.findtext("limit")) == ("112", "100")
    assert resource.findtext("violated") == "true"
    [entry] = expirations(sandbox).values()
    group = entry.find("resources-violation/resource-group")
    assert group is not None
    assert group.findtext("name") == "o365-admin"
    seat = group.find("resources/resource")
    assert seat is not None
    assert seat.findtext("name") == "m365-mailboxonedrive-total"
    assert seat.findtext("readable-name") == "Microsoft 365 mailbox and OneDrive seats"
    assert (seat.findtext("limit"), seat.findtext("usage")) == ("100", "112")
    assert parse(seat.findtext("grace-expires")) == grace
    assert expirations(sandbox, ("gsuite",)) == {}  # only the groups asked for
    msp.clear_seat_violation(account.guid)
    assert expirations(sandbox) == {}
    assert all(
        r.findtext("violated") == "false" for r in resources_of(sandbox, account.guid).values()
    )


def test_a_default_violation_can_be_cleared() -> None:
    msp = SandboxMsp(config=SandboxConfig(accounts=60), clock=SandboxClock(start=NOW, speed=0))
    now = NOW.timestamp()
    violating = [a for a in msp.accounts if any(r.violated for r in msp.seat_resources(a, now))]
    assert violating
    msp.clear_seat_violation(violating[0].guid)
    assert not any(r.violated for r in msp.seat_resources(violating[0], now))


# --- tokens ---------------------------------------------------------------------------------


def tokens_of(
    sandbox: KeepitSandbox, *, secondary: bool = True, auth: tuple[str, str] = USER
) -> dict[str, Element]:
    root = xml(
        call(
            sandbox,
            f"/users/{sandbox.msp.parent.guid}/tokens",
            params={"secondary": "1"} if secondary else None,
            headers={"Accept": "application/vnd.keepit.v2"},
            auth=auth,
        )
    )
    assert root.tag == "tokens"
    return {t.findtext("aname") or "": t for t in root.findall("token")}


def test_tokens_list_the_primary_the_api_and_session_tokens(sandbox: KeepitSandbox) -> None:
    tokens = tokens_of(sandbox)
    primary = tokens.pop(USER[0])
    api = tokens.pop(TOKEN[0])
    assert primary.findtext("primary") == "true"
    assert primary.find("lifetime") is None
    assert api.findtext("primary") == "false"
    assert api.findtext("descr") == "Vectis monitoring"
    assert api.findtext("primary_aname") == USER[0]
    assert api.findtext("lifetime") == "P1Y"
    created = parse(api.findtext("created"))
    assert created == ANCHOR - timedelta(days=300)
    assert api.findtext("lastuse") == api.findtext("created")  # never used yet
    assert "G/Devices" in (api.findtext("eacl") or "").split(":")
    assert api.find("capability") is not None
    assert len(tokens) == 2
    assert {t.findtext("descr") for t in tokens.values()} == {"Session"}
    assert {t.findtext("lifetime") for t in tokens.values()} == {"PT48H"}
    assert list(tokens_of(sandbox, secondary=False)) == [USER[0]]


def test_token_lastuse_moves_with_a_request(sandbox: KeepitSandbox) -> None:
    parent = sandbox.msp.parent.guid
    call(sandbox, "/users/", auth=TOKEN)
    assert tokens_of(sandbox)[TOKEN[0]].findtext("lastuse") == iso(NOW)
    sandbox.advance(timedelta(hours=2))
    assert tokens_of(sandbox)[TOKEN[0]].findtext("lastuse") == iso(NOW)
    assert tokens_of(sandbox)[USER[0]].findtext("lastuse") == iso(NOW + timedelta(hours=2))
    call(sandbox, f"/users/{parent}", auth=TOKEN)
    listed = tokens_of(sandbox, auth=TOKEN)[TOKEN[0]]
    assert listed.findtext("lastuse") == iso(NOW + timedelta(hours=2))


def test_set_token_changes_expiry_lifetime_and_creation(sandbox: KeepitSandbox) -> None:
    msp = sandbox.msp
    msp.set_token(TOKEN[0], expires=NOW + timedelta(days=6))
    assert tokens_of(sandbox)[TOKEN[0]].findtext("expires") == iso(NOW + timedelta(days=6))
    msp.set_token(TOKEN[0], lifetime="P2Y", created=NOW)  # renewed
    api = tokens_of(sandbox)[TOKEN[0]]
    assert api.find("expires") is None
    assert (api.findtext("lifetime"), api.findtext("created")) == ("P2Y", iso(NOW))
    msp.set_token(USER[0], expires=NOW + timedelta(days=20), lifetime=None)
    assert tokens_of(sandbox)[USER[0]].findtext("expires") == iso(NOW + timedelta(days=20))
    msp.set_token("another-integration", lifetime="P3M", created=NOW - timedelta(days=80))
    assert tokens_of(sandbox)["another-integration"].findtext("primary") == "false"


def test_tokens_refuse_a_v4_accept_and_other_accounts_have_none(sandbox: KeepitSandbox) -> None:
    msp = sandbox.msp
    v4 = call(
        sandbox,
        f"/users/{msp.parent.guid}/tokens",
        params={"secondary": "1"},
        headers={"Accept": "application/vnd.keepit.v4+xml"},
    )
    assert (v4.status_code, v4.text) == (400, "Unsupported version")
    plus_xml = call(
        sandbox,
        f"/users/{msp.parent.guid}/tokens",
        headers={"Accept": "application/vnd.keepit.v2+xml"},
    )
    assert xml(plus_xml).findall("token")
    child = call(sandbox, f"/users/{msp.accounts[0].guid}/tokens", params={"secondary": "1"})
    assert child.text == "<tokens/>"


# --- the v3 child list and accounts scheduled for deletion ----------------------------------


def children(
    sandbox: KeepitSandbox, version: str, **params: str
) -> tuple[list[Element], requests.Response]:
    response = call(
        sandbox,
        f"/users/{sandbox.msp.parent.guid}/users",
        params=params,
        headers={"Accept": version} if version else {},
    )
    return xml(response).findall("user"), response


def test_the_v3_list_carries_contacts_and_the_deletion_deadline_only_with_all() -> None:
    with KeepitSandbox(SandboxConfig(accounts=80), start=NOW, speed=0) as sandbox:
        msp = sandbox.msp
        doomed = msp.accounts[74]  # one in 25, by default
        deadline = msp.account_deletion(doomed)
        assert deadline is not None
        scheduled = [a.index for a in msp.accounts if msp.account_deletion(a) is not None]
        assert scheduled == [24, 49, 74]
        users, response = children(
            sandbox, "application/vnd.keepit.v3", all="1", include_contact_details="1"
        )
        assert response.headers["X-Total-Count"] == "80"
        listed = {u.findtext("id"): u for u in users}
        entry = listed[doomed.guid]
        assert parse(entry.findtext("deletion-deadline")).timestamp() == deadline
        assert ANCHOR + timedelta(days=20) <= parse(entry.findtext("deletion-deadline"))
        assert sum(u.find("deletion-deadline") is not None for u in users) == 3
        first = listed[msp.accounts[0].guid]
        assert [child.tag for child in first] == ["id", "created", "parent_id", "contact"]
        contact = first.find("contact")
        assert contact is not None
        assert [c.tag for c in contact] == [
            "email",
            "companyname",
            "fullname",
            "phone",
            "vatnumber",
            "country",
            "state",
        ]
        assert contact.findtext("companyname") == msp.accounts[0].company_name
        without_all, response = children(sandbox, "application/vnd.keepit.v3")
        assert doomed.guid not in {u.findtext("id") for u in without_all}
        assert response.headers["X-Total-Count"] == "77"
        v1, _ = children(sandbox, "application/vnd.keepit.v1+xml")
        assert len(v1) == 77
        assert v1[0].find("contact") is None
        assert v1[0].findtext("company_name") is not None
        v1_all, _ = children(sandbox, "application/vnd.keepit.v1+xml", all="1")
        assert len(v1_all) == 80
        v0 = call(sandbox, f"/users/{msp.parent.guid}/users")
        assert v0.text.count("<id>") == 77
        user = xml(call(sandbox, f"/users/{doomed.guid}"))
        assert parse(user.findtext("deletion")).timestamp() == deadline
        assert xml(call(sandbox, f"/users/{msp.accounts[0].guid}")).find("deletion") is None


def test_schedule_account_deletion_sets_and_cancels(sandbox: KeepitSandbox) -> None:
    msp = sandbox.msp
    account = msp.accounts[4]
    msp.schedule_account_deletion(account.guid, NOW + timedelta(days=10))
    users, _ = children(sandbox, "application/vnd.keepit.v3", all="1")
    entry = next(u for u in users if u.findtext("id") == account.guid)
    assert entry.findtext("deletion-deadline") == iso(NOW + timedelta(days=10))
    v1, _ = children(sandbox, "application/vnd.keepit.v1+xml")
    assert account.guid not in {u.findtext("id") for u in v1}
    msp.schedule_account_deletion(account.guid, None)
    v1, _ = children(sandbox, "application/vnd.keepit.v1+xml")
    assert len(v1) == 8


# --- request log, faults, read-only ---------------------------------------------------------


def test_the_request_log_counts_requests_by_route(sandbox: KeepitSandbox) -> None:
    msp = sandbox.msp
    account = msp.accounts[0]
    connector = live_connectors(msp, account.guid)[0]
    server = sandbox.server
    call(sandbox, "/users/")
    server.reset_request_log()
    call(sandbox, f"/users/{account.guid}/devices", params={"all": "1"})
    call(sandbox, f"/users/{account.guid}/devices/health", params={"reason": "true"})
    call(sandbox, f"/users/{account.guid}/devices/{connector.guid}/health")
    call(sandbox, f"/users/{account.guid}/jobs/count", params={"from": iso(NOW)})
    history(sandbox, connector, NOW - timedelta(days=1))
    call(sandbox, f"/users/{account.guid}/devices/{connector.guid}/status")
    call(sandbox, f"/users/{account.guid}/resources")
    expirations(sandbox)
    tokens_of(sandbox)
    call(sandbox, f"/users/{account.guid}/devices", auth=("wrong", "login"))
    assert server.requests_by_route() == Counter(
        {"devices": 2, "health": 2, "jobs": 1, "history": 1, "status": 1, "seats": 2, "tokens": 1}
    )
    assert server.request_log[-1] == ("GET", f"/us-dc/users/{account.guid}/devices", "devices")
    assert ("PUT", f"/us-dc/users/{msp.parent.guid}/expirations", "seats") in server.request_log
    server.reset_request_log()
    assert server.requests_by_route() == Counter()


@pytest.mark.parametrize(
    ("route", "path"),
    [
        ("jobs", "/users/{account}/jobs/count?from=2026-11-25T00:00:00Z"),
        ("jobs", "/users/{account}/devices/{connector}/jobs"),
        ("status", "/users/{account}/devices/{connector}/status"),
        ("seats", "/users/{account}/resources"),
        ("tokens", "/users/{parent}/tokens"),
        ("health", "/users/{account}/devices/health"),
    ],
)
def test_a_fault_injected_on_a_route_hits_that_call_only(
    sandbox: KeepitSandbox, route: str, path: str
) -> None:
    msp = sandbox.msp
    account = msp.accounts[0]
    values = {
        "account": account.guid,
        "connector": live_connectors(msp, account.guid)[0].guid,
        "parent": msp.parent.guid,
    }
    target = path.format(**values)
    sandbox.inject("503", "429", route=route)
    assert call(sandbox, f"/users/{account.guid}/devices").status_code == 200
    assert call(sandbox, target).status_code == 503
    throttled = call(sandbox, target)
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "1")
    assert call(sandbox, target).status_code == 200


def test_the_read_puts_are_recorded_and_other_writes_refused(sandbox: KeepitSandbox) -> None:
    msp = sandbox.msp
    account = msp.accounts[0]
    connector = live_connectors(msp, account.guid)[0]
    history(sandbox, connector, NOW - timedelta(hours=6))
    expirations(sandbox)
    for method, path in [
        ("PUT", f"/users/{account.guid}/devices/{connector.guid}"),
        ("PUT", f"/users/{account.guid}/resources"),
        ("POST", f"/users/{account.guid}/devices/{connector.guid}/jobs"),
        ("POST", f"/users/{msp.parent.guid}/tokens/"),
        ("DELETE", f"/users/{account.guid}"),
    ]:
        refused = call(sandbox, path, method=method, body="<filter/>")
        assert refused.status_code == 405, (method, path)
    assert sandbox.server.non_get_paths == {
        f"/us-dc/users/{account.guid}/devices/{connector.guid}/jobs",
        f"/us-dc/users/{msp.parent.guid}/expirations",
        f"/us-dc/users/{account.guid}/devices/{connector.guid}",
        f"/us-dc/users/{account.guid}/resources",
        f"/us-dc/users/{msp.parent.guid}/tokens/",
        f"/us-dc/users/{account.guid}",
    }


def test_the_new_calls_are_in_the_parents_audit_log(sandbox: KeepitSandbox) -> None:
    msp = sandbox.msp
    account = msp.accounts[0]
    connector = live_connectors(msp, account.guid)[0]
    call(sandbox, f"/users/{account.guid}/devices/health", params={"reason": "true"})
    call(sandbox, f"/users/{account.guid}/jobs/count", params={"from": iso(NOW)}, auth=TOKEN)
    history(sandbox, connector, NOW - timedelta(hours=6))
    call(sandbox, f"/users/{account.guid}/devices/{connector.guid}/status")
    tokens_of(sandbox)
    root = xml(
        call(
            sandbox,
            "/audit/filter/pretty?limit=1000&offset=0",
            method="PUT",
            body=(
                f"<filter><account>{msp.parent.guid}</account><from>{iso(NOW)}</from>"
                f"<to>{iso(NOW + timedelta(seconds=1))}</to></filter>"
            ),
        )
    )
    acls = Counter(r.findtext("acl") for r in root.findall("record"))
    for acl in (
        "GetDevicesHealth",
        "GetJobsCount",
        "FilterDeviceJobs",
        "GetDeviceStatus",
        "GetTokens",
    ):
        assert acls[acl] == 1, acls
    tokens = {
        r.findtext("token") for r in root.findall("record") if r.findtext("acl") == "GetJobsCount"
    }
    assert tokens == {TOKEN[0]}


def test_the_sandbox_command_documents_the_new_states() -> None:
    help_text = subprocess.run(
        [sys.executable, "manage.py", "keepit_sandbox", "--help"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    flat = " ".join(help_text.split())
    assert "--no-aggregated-health" in flat
    for word in ("jobs", "seat", "token", "deletion", "status"):
        assert word in flat, word
