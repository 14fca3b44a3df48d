"""The Keepit client's Part C calls at their HTTP boundary (`responses`): job counts and
history, aggregated health, device status, seats, expirations, tokens and the v3 child
list, with fixtures shaped as keepit-api.md Part C describes them, odd ones included;
the read-filter allow-list; error codes and reasons to Keepit's sentence and article."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import responses

from backups.models import JobOutcome
from keepit.client import is_read_request
from keepit.errors import KeepitProtocolError
from keepit.fixes import (
    APP_REGISTRATION,
    REAUTHENTICATE,
    REAUTHENTICATE_M365,
    SALESFORCE_API_LIMIT,
    SUPPORT_FORM,
    error_code_fix,
    reason_fix,
)
from keepit.inventory import job_failure
from keepit.schemas import Job, JobCounts
from tests.keepit.test_client import BASE, CHILD, PARENT, fixture, make_client

T0 = datetime(2026, 11, 26, tzinfo=UTC)
T1 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@responses.activate
def test_the_child_list_is_read_in_v3_with_contacts_and_deletion_dates() -> None:
    responses.get(f"{BASE}/users/{PARENT}/users", body=fixture("users_v3.xml"))
    children = make_client().child_accounts(PARENT)
    request = responses.calls[0].request
    assert request.headers["Accept"] == "application/vnd.keepit.v3"
    assert "all=1" in str(request.url)
    assert "include_contact_details=1" in str(request.url)
    contoso, leaving, flat = children
    assert (contoso.company_name, contoso.full_name, contoso.email) == (
        "Contoso Ltd",
        "Anna Admin",
        "it@contoso.example",
    )
    assert contoso.deletion_deadline is None
    assert leaving.display_name == "Leaving Customer"  # empty company: the contact's name
    assert leaving.deletion_deadline == datetime(2026, 12, 20, tzinfo=UTC)
    # A server answering the flat v1 shape still gives names.
    assert (flat.company_name, flat.full_name, flat.email) == (
        "Flat Co",
        "Flat Person",
        "flat@example.com",
    )


@responses.activate
def test_aggregated_health_is_keyed_by_connector_and_tolerant() -> None:
    responses.get(f"{BASE}/users/{CHILD}/devices/health", body=fixture("devices_health.xml"))
    health = make_client().connectors_health(CHILD)
    assert str(responses.calls[0].request.url).endswith("/devices/health?reason=true")
    assert responses.calls[0].request.headers["Accept"] == "application/xml"
    assert health is not None
    assert set(health) == {
        "conn01-m365aa-000001",
        "conn02-entraa-000002",
        "conn03-gwsaaa-000003",
    }
    assert (health["conn02-entraa-000002"].health, health["conn02-entraa-000002"].reason) == (
        "critical",
        "BADTOKEN",
    )
    assert health["conn03-gwsaaa-000003"].reason == ""


@responses.activate
def test_aggregated_health_that_keepit_does_not_offer_is_none() -> None:
    responses.get(f"{BASE}/users/{CHILD}/devices/health", status=404, body="Not found")
    assert make_client().connectors_health(CHILD) is None


@responses.activate
def test_job_counts_of_an_account_keep_backup_jobs_per_connector() -> None:
    responses.get(f"{BASE}/users/{CHILD}/jobs/count", body=fixture("jobs_count_account.xml"))
    counts = make_client().job_counts(CHILD, start=T0, end=T1)
    url = str(responses.calls[0].request.url)
    assert "from=2026-11-26T00%3A00%3A00Z" in url
    assert "to=2026-11-26T12%3A00%3A00Z" in url
    assert "job-types=backup" in url
    m365 = counts["conn01-m365aa-000001"]
    # Restore jobs and a type Keepit added later are not backups.
    assert (m365.successful, m365.incomplete, m365.unsuccessful, m365.scheduled) == (2, 1, 0, 1)
    assert m365.finished == 3
    entra = counts["conn02-entraa-000002"]
    # "2.0" is two; missing counts are zero.
    assert (entra.successful, entra.unsuccessful, entra.in_progress, entra.incomplete) == (
        2,
        1,
        1,
        0,
    )
    assert counts["conn03-gwsaaa-000003"].finished == 0  # an empty <counts/>


@responses.activate
def test_job_history_is_a_put_filter_and_parses_every_outcome() -> None:
    path = f"/users/{CHILD}/devices/conn01-m365aa-000001/jobs"
    responses.put(f"{BASE}{path}", body=fixture("jobs_history.xml"))
    jobs = make_client().job_history(CHILD, "conn01-m365aa-000001", start=T0, end=T1)
    request = responses.calls[0].request
    assert request.method == "PUT"
    assert request.body == (
        b"<filter><from-time>2026-11-26T00:00:00Z</from-time>"
        b"<to-time>2026-11-26T12:00:00Z</to-time><active-only>false</active-only></filter>"
    )
    assert request.headers["Content-Type"] == "application/xml"
    by_guid = {job.guid: job for job in jobs}
    ok = by_guid["job-ok-1"]
    assert (ok.state, ok.error, ok.is_backup) == ("succeeded", "", True)
    incomplete = by_guid["job-incomplete-2"]
    assert incomplete.state == "succeeded"
    # The execution summary's errors win over fail_reason and over its exit reason;
    # repeats are said once, trimmed.
    assert incomplete.error == "Mailbox anna@contoso.example is over its size limit"
    failed = by_guid["job-failed-3"]
    assert (failed.state, failed.is_backup) == ("failed", True)  # <types><type>
    assert failed.error == "Authentication to Microsoft 365 is no longer valid"
    assert failed.ended == datetime(2026, 11, 26, 14, 2, tzinfo=UTC)
    assert by_guid["job-restore-4"].is_backup is False
    untyped = by_guid["job-untyped-5"]
    assert (untyped.state, untyped.is_backup, untyped.ended) == ("active", True, None)
    assert by_guid["job-cancelled-6"].state == "cancelled"


@responses.activate
def test_an_empty_job_history_is_an_empty_list() -> None:
    responses.put(f"{BASE}/users/{CHILD}/devices/c/jobs", body=b"<jobs/>")
    assert make_client().job_history(CHILD, "c", start=T0, end=T1) == []


@responses.activate
def test_device_status_follows_keepits_first_and_last_entry_rule() -> None:
    responses.get(f"{BASE}/users/{CHILD}/devices/a/status", body=fixture("devstatus_error.xml"))
    responses.get(f"{BASE}/users/{CHILD}/devices/b/status", body=fixture("devstatus_single.xml"))
    responses.get(f"{BASE}/users/{CHILD}/devices/c/status", body=fixture("devstatus_empty.xml"))
    client = make_client()
    first = client.device_status(CHILD, "a")
    assert (first.status, first.error_code) == ("5", "E_REVOKED")  # last entry, first code
    assert responses.calls[0].request.headers["Accept"] == "*/*"  # no version, as Keepit sends
    single = client.device_status(CHILD, "b")
    assert (single.status, single.error_code) == ("7", "")
    empty = client.device_status(CHILD, "c")
    assert (empty.status, empty.error_code) == ("0", "")


@responses.activate
def test_seat_usage_and_violations() -> None:
    responses.get(f"{BASE}/users/{CHILD}/resources", body=fixture("resources.xml"))
    responses.put(f"{BASE}/users/{PARENT}/expirations", body=fixture("expirations.xml"))
    client = make_client()
    usage = {r.name: r for r in client.seat_usage(CHILD)}
    assert (usage["o365-admin-seats-total"].usage, usage["o365-admin-seats-total"].limit) == (
        112,
        100,
    )
    assert usage["o365-admin-seats-total"].violated is True
    assert usage["azuread-seats-total"].limit is None  # no limit: unlimited
    violations = client.seat_violations(PARENT)
    body = responses.calls[1].request.body
    assert isinstance(body, bytes)
    assert body.startswith(b"<filter><or><resources-violation><resource-group>o365-admin<")
    assert b"<resource-group>salesforce</resource-group>" in body  # seat groups, not types
    assert [(v.account, v.resource) for v in violations] == [
        (CHILD, "m365-mailboxonedrive-total"),
        (CHILD, "o365-admin-seats-total"),
        (CHILD, "gsuite-seats-total"),
        ("zzz999-yyy888-xxx777", "jira-seats-total"),
    ]
    first = violations[0]
    assert (first.limit, first.usage) == (100, 112)
    assert first.grace_expires == datetime(2026, 12, 10, tzinfo=UTC)
    assert violations[1].grace_expires is None  # unparseable: unknown, not guessed
    responses.put(f"{BASE}/users/{PARENT}/expirations", body=fixture("expirations_empty.xml"))
    assert client.seat_violations(PARENT) == []


@responses.activate
def test_tokens_carry_expiry_from_expires_or_created_plus_lifetime() -> None:
    responses.get(f"{BASE}/users/{PARENT}/tokens", body=fixture("tokens.xml"))
    tokens = {t.aname: t for t in make_client().tokens(PARENT)}
    request = responses.calls[0].request
    assert request.headers["Accept"] == "application/vnd.keepit.v2"  # v4 gets a 400
    assert str(request.url).endswith("/tokens?secondary=1")
    assert tokens["tok-login"].expires_at == datetime(2027, 1, 31, 12, 0, tzinfo=UTC)
    assert tokens["tok-login"].last_used == datetime(2026, 11, 26, 11, 59, 0, 123000, tzinfo=UTC)
    assert tokens["session-8f2"].expires_at == datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    # An explicit expiry wins over created + lifetime.
    assert tokens["other-token"].expires_at == datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert tokens["user@msp.example"].expires_at is None  # no lifetime: never expires
    assert tokens["weird-token"].expires_at is None  # a lifetime that is no ISO period


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"),
    [
        ("GET", "/users/x/anything", None, True),
        ("PUT", "/audit/filter/pretty", b"<filter/>", True),
        ("PUT", "/users/abc/devices/dev1/jobs", b"<filter><from-time/></filter>", True),
        ("PUT", "/users/abc/devices/dev1/history/range", b"<range/>", True),
        ("PUT", "/users/abc/devices/dev1/history/count", b"<range/>", True),
        ("PUT", "/users/abc/expirations", b"<filter/>", True),
        ("PUT", "/users/abc/resources/max_usage", b"<filter/>", True),
        ("PUT", "/users/abc/resources/max_usage/total", b"<filter/>", True),
        ("PUT", "/users/abc/resources/history", b"<filter/>", True),
        # The look-alike writes of C12.
        ("PUT", "/users/abc/devices/dev1", b"<cloud><enabled>true</enabled></cloud>", False),
        ("PUT", "/users/abc/devices/dev1", b"<filter/>", False),
        ("PUT", "/users/abc/tokens/login", b"<filter/>", False),
        ("PUT", "/users/abc/tokens/login", b"<token_update/>", False),
        ("POST", "/users/abc/tokens/", b"<token/>", False),
        ("DELETE", "/users/abc", None, False),
        ("PUT", "/users/abc/resources", b"<filter/>", False),
        # A read path with a body that is not a read filter.
        ("PUT", "/users/abc/devices/dev1/jobs", b"<cloud/>", False),
        ("PUT", "/users/abc/devices/dev1/history/range", b"<filter/>", False),
        ("PUT", "/users/abc/devices/dev1/jobs", b"not xml", False),
        ("PUT", "/users/abc/devices/dev1/jobs", None, False),
        ("PUT", "/users/abc/devices/dev1/jobs/extra", b"<filter/>", False),
        # Dot segments would reach other paths once the URL is normalised.
        ("PUT", "/users/abc/devices/../jobs", b"<filter/>", False),
        ("PUT", "/users/abc/devices/./jobs", b"<filter/>", False),
        ("PUT", "/users/abc/devices/../../audit/filter/pretty/jobs", b"<filter/>", False),
        ("PATCH", "/audit/filter/pretty", b"<filter/>", False),
    ],
)
def test_only_the_read_filters_may_be_put(
    method: str, path: str, body: bytes | None, allowed: bool
) -> None:
    assert is_read_request(method, path, body) is allowed
    if not allowed:
        with pytest.raises(Exception, match="read-only"):
            make_client()._request(method, path, accept=None, body=body)


@responses.activate
def test_a_job_count_answer_of_the_wrong_shape_is_refused() -> None:
    responses.get(f"{BASE}/users/{CHILD}/jobs/count", body=b"<devices/>")
    with pytest.raises(KeepitProtocolError, match="expected <jobs-count>"):
        make_client().job_counts(CHILD, start=T0, end=T1)


@pytest.mark.parametrize(
    ("code", "connector_type", "status", "url", "words"),
    [
        ("E_REVOKED", "o365-admin", "3", REAUTHENTICATE_M365, "reauthenticate"),
        ("e_login", "gsuite", "", REAUTHENTICATE, "no longer valid"),
        ("E_DEDICATED_APP_IS_NOT_PRESENT_UNHEALTHY", "o365-admin", "", APP_REGISTRATION, "Teams"),
        ("E_QUOTA", "o365-admin", "", SUPPORT_FORM, "seat limit"),
        ("E_START", "zendesk", "", SUPPORT_FORM, "contact Keepit Support"),
        ("", "sforce", "7", SALESFORCE_API_LIMIT, "Salesforce API request limit"),
        ("E_BRAND_NEW_CODE", "o365-admin", "", SUPPORT_FORM, "could not start"),
        ("E_INCOMPLETE_CONNECTOR_CONFIG", "gsuite", "", "google-workspace", "organizational"),
        ("E_INCOMPLETE_CONNECTOR_CONFIG", "zendesk", "", SUPPORT_FORM, "Entra ID groups"),
    ],
)
def test_error_codes_get_keepits_sentence_and_article(
    code: str, connector_type: str, status: str, url: str, words: str
) -> None:
    fix = error_code_fix(code, connector_type=connector_type, status=status)
    assert fix is not None
    assert url in fix.url
    assert words in fix.sentence
    assert fix.label == ("Contact Keepit Support" if fix.url == SUPPORT_FORM else "How to fix")


def test_no_code_and_no_salesforce_limit_means_nothing_to_fix() -> None:
    assert error_code_fix("", connector_type="o365-admin", status="7") is None
    assert error_code_fix("  ", connector_type="sforce", status="3") is None


def test_health_reasons_get_the_article_of_their_error_code() -> None:
    badtoken = reason_fix("BADTOKEN", connector_type="o365-admin")
    assert badtoken is not None
    assert badtoken.url == REAUTHENTICATE_M365
    config = reason_fix("INCOMPLETECONFIG_AZURE_AD", connector_type="azure-ad")
    assert config is not None
    assert "entra-id-objects" in config.url
    # Late backups and throttling have no article; the reason's sentence says enough.
    for reason in ("NOCHECKIN", "THROTTLINGBACKUP", "OK", "", "NEWFANGLEDREASON", "QUOTAVIOLATED"):
        assert reason_fix(reason, connector_type="o365-admin") is None


@responses.activate
def test_empty_part_c_answers_mean_nothing_there_not_an_error() -> None:
    """An account without connectors or jobs, a partner without tokens: Keepit answers an
    empty root element (or one with whitespace only), which reads as an empty result."""
    responses.get(f"{BASE}/users/{CHILD}/devices/health", body=b"<devhealth/>")
    responses.get(f"{BASE}/users/{CHILD}/jobs/count", body=b"<jobs-count>\n  </jobs-count>")
    responses.get(f"{BASE}/users/{PARENT}/tokens", body=b"<tokens/>")
    responses.put(f"{BASE}/users/{CHILD}/devices/CONN01-M365AA-000001/jobs", body=b"<jobs></jobs>")
    client = make_client()
    assert client.connectors_health(CHILD) == {}
    assert client.job_counts(CHILD, start=T0, end=T1) == {}
    assert client.tokens(PARENT) == []
    assert client.job_history(CHILD, "CONN01-M365AA-000001", start=T0, end=T1) == []


@responses.activate
def test_a_connector_left_out_of_the_day_counts_had_no_job_and_one_with_empty_counts_too() -> None:
    responses.get(f"{BASE}/users/{CHILD}/jobs/count", body=fixture("jobs_count_account.xml"))
    counts = make_client().job_counts(CHILD, start=T0, end=T1)
    empty = counts["conn03-gwsaaa-000003"]  # keyed by lower-cased GUID
    assert (empty.successful, empty.incomplete, empty.unsuccessful, empty.finished) == (0, 0, 0, 0)
    assert counts["conn01-m365aa-000001"].finished == 3  # whitespace in " 2 " read as 2
    assert "conn99-absent-000099" not in counts


def _job(guid: str, *, ended: str, state: str, comment: str = "", fail_reason: str = "") -> Job:
    at = datetime.fromisoformat(ended)
    return Job(
        guid=guid,
        types=("backup",),
        description="",
        active=False,
        start=at,
        succeeded=at if state == "succeeded" else None,
        failed=at if state == "failed" else None,
        cancelled=None,
        comment=comment,
        stats={"fail_reason": fail_reason} if fail_reason else {},
        summary_error="",
    )


def test_a_comment_on_a_good_job_is_not_an_error_but_a_failed_jobs_comment_is_its_reason() -> None:
    counts = JobCounts(name="backup", successful=2, unsuccessful=1)
    fine = _job("a", ended="2026-11-26T03:00:00+00:00", state="succeeded", comment="Nightly run")
    assert job_failure([fine], counts) is None
    failed = _job("b", ended="2026-11-26T02:00:00+00:00", state="failed", comment="Token expired")
    # The failed job is the failure even though a later job ended well with a comment.
    failure = job_failure([failed, fine], counts)
    assert failure is not None
    assert (failure.outcome, failure.error) == (JobOutcome.FAILED, "Token expired")
    partly = _job(
        "c", ended="2026-11-26T04:00:00+00:00", state="succeeded", fail_reason="3 items skipped"
    )
    failure = job_failure([failed, fine, partly], counts)
    assert failure is not None
    assert (failure.outcome, failure.error) == (JobOutcome.INCOMPLETE, "3 items skipped")
