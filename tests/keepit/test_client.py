"""The Keepit client at its HTTP boundary (`responses`), with XML fixtures shaped as in
keepit-api.md Part A/B, odd cases included."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import responses
from responses import matchers

from keepit.client import KeepitClient, KeepitCredentials, base_url_for, validate_region
from keepit.errors import (
    KeepitAuthError,
    KeepitNotFound,
    KeepitProtocolError,
    KeepitUnavailable,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keepit"
BASE = "https://us-dc.keepit.com"
PARENT = "y17hbi-i620pk-80q5x2"
CHILD = "abc123-def456-ghi789"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(
    *,
    username: str = "user@msp.example",
    password: str = "S3cret%+,?)=$@pass",
    token_login: str = "",
    token_password: str = "",
    sleeps: Sleeps | None = None,
    max_attempts: int = 4,
) -> KeepitClient:
    credentials = KeepitCredentials.choose(
        username=username, password=password, token_login=token_login, token_password=token_password
    )
    return KeepitClient(
        region="us-dc",
        credentials=credentials,
        user_agent="Vectis/0.1.0",
        max_attempts=max_attempts,
        retry_budget_seconds=30,
        sleep=sleeps if sleeps is not None else Sleeps(),
    )


def basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


@responses.activate
def test_who_am_i_sends_basic_auth_user_agent_and_no_version() -> None:
    responses.get(f"{BASE}/users/", body=fixture("whoami.xml"))
    assert make_client().who_am_i() == PARENT
    request = responses.calls[0].request
    assert request.headers["Authorization"] == basic("user@msp.example", "S3cret%+,?)=$@pass")
    assert re.fullmatch(r"Vectis/\d+\.\d+\.\d+", request.headers["User-Agent"])
    assert "vnd.keepit" not in request.headers.get("Accept", "")


@responses.activate
def test_api_token_pair_takes_priority_over_username_and_password() -> None:
    responses.get(f"{BASE}/users/", body=fixture("whoami.xml"))
    client = make_client(token_login="tok-login", token_password="tok-pass")
    client.who_am_i()
    assert responses.calls[0].request.headers["Authorization"] == basic("tok-login", "tok-pass")
    assert client.credential_kind == "api_token"


def test_a_half_filled_token_pair_falls_back_to_username_and_password() -> None:
    credentials = KeepitCredentials.choose(
        username="u", password="p", token_login="tok", token_password=""
    )
    assert credentials.kind == "username_password"
    with pytest.raises(ValueError, match="username and password or an API token"):
        KeepitCredentials.choose(username="u", password="", token_login="", token_password="")


@responses.activate
def test_each_call_sends_its_accept_version() -> None:
    responses.get(f"{BASE}/users/{PARENT}", body=fixture("parent_account.xml"))
    responses.get(f"{BASE}/users/{PARENT}/users", body=fixture("users_v1_many.xml"))
    responses.get(f"{BASE}/users/{CHILD}/devices", body=fixture("devices_v4.xml"))
    responses.get(
        f"{BASE}/users/{CHILD}/monitoring/backup/summary", body=fixture("backup_summary.xml")
    )
    responses.get(
        f"{BASE}/users/{CHILD}/devices/conn01-m365aa-000001/health",
        body=fixture("health_critical.xml"),
    )
    client = make_client()
    client.parent_account(PARENT)
    client.child_accounts(PARENT)
    client.connectors(CHILD)
    client.backup_summary(CHILD)
    client.connector_health(CHILD, "conn01-m365aa-000001")
    accepts = [call.request.headers["Accept"] for call in responses.calls]
    assert accepts == [
        "application/vnd.keepit.v1+xml",
        "application/vnd.keepit.v3",  # the child list with contacts and deletion dates
        "application/vnd.keepit.v4+xml",
        "application/xml",
        "application/xml",
    ]
    assert str(responses.calls[2].request.url).endswith("/devices?all=1")
    assert str(responses.calls[4].request.url).endswith("/health?reason=true")


@responses.activate
def test_parent_account_is_parsed() -> None:
    responses.get(f"{BASE}/users/{PARENT}", body=fixture("parent_account.xml"))
    parent = make_client().parent_account(PARENT)
    assert parent.id == PARENT
    assert parent.enabled is True
    assert parent.created == datetime(2021, 3, 4, 9, 10, 11, tzinfo=UTC)
    assert parent.parent == "p4rent-0f0msp-aaaaaa"


@responses.activate
def test_child_accounts_are_trimmed_and_tolerate_missing_elements() -> None:
    responses.get(f"{BASE}/users/{PARENT}/users", body=fixture("users_v1_many.xml"))
    children = make_client().child_accounts(PARENT)
    assert [c.id for c in children] == [CHILD, "abcd1-def456-ghi780", "zzz999-yyy888-xxx777"]
    contoso, empty_company, bare = children
    assert contoso.company_name == "Contoso, Inc."
    assert contoso.email == "it@contoso.example"
    assert empty_company.company_name == ""
    assert empty_company.display_name == "Bo Jensen"
    assert empty_company.created == datetime(2025, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)
    assert bare.created is None
    assert bare.display_name == "zzz999-yyy888-xxx777"


@responses.activate
def test_a_single_child_account_is_a_list_of_one() -> None:
    responses.get(f"{BASE}/users/{PARENT}/users", body=fixture("users_v1_single.xml"))
    children = make_client().child_accounts(PARENT)
    assert len(children) == 1
    assert children[0].company_name == "Müller & Söhne GmbH"


@pytest.mark.parametrize(
    ("status", "body"), [(404, b"Not found"), (200, fixture("users_empty.xml"))]
)
@responses.activate
def test_no_child_accounts_is_an_empty_list_for_404_and_empty_users(
    status: int, body: bytes
) -> None:
    responses.get(f"{BASE}/users/{PARENT}/users", body=body, status=status)
    assert make_client().child_accounts(PARENT) == []


@responses.activate
def test_connectors_resolve_dsl_skip_system_and_keep_the_odd_ones() -> None:
    responses.get(f"{BASE}/users/{CHILD}/devices", body=fixture("devices_v4.xml"))
    connectors = {c.guid: c for c in make_client().connectors(CHILD)}
    assert set(connectors) == {
        "conn01-m365aa-000001",  # GUIDs are lower-cased
        "conn02-okta00-000002",
        "conn04-future-000004",
        "conn05-goner0-000005",
    }
    okta = connectors["conn02-okta00-000002"]
    assert (okta.type, okta.agent_type, okta.vendor_type) == ("dsl", "okta", "dsl/okta")
    assert okta.name == "Contoso Okta"
    future = connectors["conn04-future-000004"]
    assert future.vendor_type == "futuresaas"
    assert future.accessible is False
    assert connectors["conn05-goner0-000005"].deletion_deadline == datetime(
        2026, 12, 31, tzinfo=UTC
    )


@responses.activate
def test_single_and_empty_device_lists() -> None:
    responses.get(f"{BASE}/users/{CHILD}/devices", body=fixture("devices_single.xml"))
    responses.get(f"{BASE}/users/{PARENT}/devices", body=fixture("devices_empty.xml"))
    client = make_client()
    assert [c.type for c in client.connectors(CHILD)] == ["azure-ad"]
    assert client.connectors(PARENT) == []


@responses.activate
def test_backup_summary_parses_complete_partial_and_onboarding_entries() -> None:
    responses.get(
        f"{BASE}/users/{CHILD}/monitoring/backup/summary", body=fixture("backup_summary.xml")
    )
    summary = {s.guid: s for s in make_client().backup_summary(CHILD)}
    complete = summary["conn01-m365aa-000001"]
    assert complete.last_complete_snapshot_time == complete.last_snapshot_time
    assert complete.size_change == -2048
    partial = summary["conn02-okta00-000002"]
    assert partial.last_snapshot_time == datetime(2026, 11, 26, 7, 30, 0, 500000, tzinfo=UTC)
    assert partial.last_complete_snapshot_time == datetime(2026, 11, 24, 7, 30, tzinfo=UTC)
    assert summary["conn06-onbrd0-000006"].last_complete_snapshot_time is None


@responses.activate
def test_backup_summary_404_means_no_backups_yet() -> None:
    responses.get(f"{BASE}/users/{CHILD}/monitoring/backup/summary", status=404)
    assert make_client().backup_summary(CHILD) == []


@pytest.mark.parametrize(
    ("name", "health", "reason"),
    [
        ("health_critical.xml", "critical", "BADTOKEN"),
        ("health_healthy_no_reason.xml", "healthy", ""),
        ("health_strange.xml", "degraded", "SOMENEWCODE"),
    ],
)
@responses.activate
def test_connector_health_with_and_without_reason(name: str, health: str, reason: str) -> None:
    responses.get(f"{BASE}/users/{CHILD}/devices/c1/health", body=fixture(name))
    result = make_client().connector_health(CHILD, "c1")
    assert (result.health, result.reason) == (health, reason)


@responses.activate
def test_audit_log_follows_next_offset_through_short_pages_and_streams() -> None:
    audit = f"{BASE}/audit/filter/pretty"
    responses.put(
        audit,
        body=fixture("audit_page1.xml"),
        headers={"next-offset": "2"},
        match=[matchers.query_param_matcher({"limit": "5", "offset": "0"})],
    )
    responses.put(
        audit,
        body=fixture("audit_page2.xml"),
        headers={"next-offset": "3"},
        match=[matchers.query_param_matcher({"limit": "5", "offset": "2"})],
    )
    responses.put(
        audit,
        body=fixture("audit_empty.xml"),
        match=[matchers.query_param_matcher({"limit": "5", "offset": "3"})],
    )
    client = make_client()
    stream = client.audit_records(
        PARENT,
        start=datetime(2026, 11, 12, tzinfo=UTC),
        end=datetime(2026, 11, 26, 12, 0, 30, tzinfo=UTC),
        page_size=5,
    )
    first = next(stream)
    assert len(responses.calls) == 1  # a generator: the next page is not fetched yet
    records = [first, *stream]
    assert len(responses.calls) == 3
    assert [r.message for r in records] == [
        "User signed in",
        "Restore job failed",
        "Something happened",
    ]
    request = responses.calls[0].request
    assert request.method == "PUT"
    assert request.headers["Accept"] == "application/vnd.keepit.v4+xml"
    assert request.headers["Content-Type"] == "application/xml"
    assert (
        request.body
        == (
            f"<filter><account>{PARENT}</account><from>2026-11-12T00:00:00Z</from>"
            "<to>2026-11-26T12:00:30Z</to><recursive>true</recursive></filter>"
        ).encode()
    )
    failed = records[1]
    assert failed.succeeded is False
    assert failed.device == "conn01-m365aa-000001"
    assert failed.metadata == {"job": "job-000042", "items": "17"}
    assert records[0].method == "post"
    assert records[2].company == ""
    assert records[2].area == "Some future area"


@responses.activate
def test_audit_stops_when_next_offset_does_not_advance() -> None:
    responses.put(
        f"{BASE}/audit/filter/pretty", body=fixture("audit_page1.xml"), headers={"next-offset": "0"}
    )
    records = list(
        make_client().audit_records(
            PARENT, start=datetime(2026, 11, 1, tzinfo=UTC), end=datetime(2026, 11, 2, tzinfo=UTC)
        )
    )
    assert len(records) == 2
    assert len(responses.calls) == 1


def test_dedup_key_ignores_fractional_seconds_and_whitespace_but_not_content() -> None:
    from defusedxml.ElementTree import fromstring

    from keepit.schemas import AuditRecord

    def record(time: str, message: str) -> AuditRecord:
        return AuditRecord.from_xml(
            fromstring(
                f"<record><time>{time}</time><account>a</account><message>{message}</message>"
                "</record>"
            )
        )

    assert (
        record("2026-11-20T10:00:00Z", "x").dedup_key
        == record(" 2026-11-20T10:00:00.000Z ", " x ").dedup_key
    )
    assert (
        record("2026-11-20T10:00:00Z", "x").dedup_key
        != record("2026-11-20T10:00:01Z", "x").dedup_key
    )


@responses.activate
def test_401_with_a_plain_text_body_is_an_authentication_error() -> None:
    responses.get(
        f"{BASE}/users/", body=fixture("auth_error.txt"), status=401, content_type="text/plain"
    )
    with pytest.raises(KeepitAuthError) as caught:
        make_client().who_am_i()
    assert caught.value.status == 401


@responses.activate
def test_403_is_an_authentication_error_and_404_is_not_found() -> None:
    responses.get(f"{BASE}/users/{CHILD}", status=403)
    responses.get(f"{BASE}/users/{CHILD}/devices", status=404)
    client = make_client()
    with pytest.raises(KeepitAuthError):
        client.parent_account(CHILD)
    with pytest.raises(KeepitNotFound):
        client.connectors(CHILD)


@responses.activate
def test_transient_errors_are_retried_with_backoff_honouring_retry_after() -> None:
    url = f"{BASE}/users/"
    responses.get(url, status=429, headers={"Retry-After": "7"})
    responses.get(url, status=503)
    responses.get(url, status=502)
    responses.get(url, body=fixture("whoami.xml"))
    sleeps = Sleeps()
    client = make_client(sleeps=sleeps)
    assert client.who_am_i() == PARENT
    assert sleeps[0] == 7.0
    assert 0 <= sleeps[1] <= 1.0  # full jitter under 0.5 s * 2^1
    assert 0 <= sleeps[2] <= 2.0
    assert client.request_count == 4


@responses.activate
def test_retries_stop_at_the_attempt_cap_with_an_unavailable_error() -> None:
    responses.get(f"{BASE}/users/", status=503)
    sleeps = Sleeps()
    with pytest.raises(KeepitUnavailable, match="after 3 attempt"):
        make_client(sleeps=sleeps, max_attempts=3).who_am_i()
    assert len(responses.calls) == 3
    assert len(sleeps) == 2


@responses.activate
def test_a_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    responses.get(f"{BASE}/users/", status=429, headers={"Retry-After": "3600"})
    sleeps = Sleeps()
    with pytest.raises(KeepitUnavailable):
        make_client(sleeps=sleeps).who_am_i()
    assert sleeps == []


@responses.activate
def test_unexpected_status_is_a_protocol_error() -> None:
    responses.get(f"{BASE}/users/", status=400)
    with pytest.raises(KeepitProtocolError, match="HTTP 400"):
        make_client().who_am_i()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("malformed.xml", "malformed XML"),
        ("xml_bomb.xml", "forbidden XML"),
        ("xxe.xml", "forbidden XML"),
        ("users_empty.xml", "expected <user>"),
    ],
)
@responses.activate
def test_bad_xml_is_a_protocol_error_without_expansion(name: str, message: str) -> None:
    responses.get(f"{BASE}/users/", body=fixture(name))
    with pytest.raises(KeepitProtocolError, match=message):
        make_client().who_am_i()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("malformed.xml", "malformed XML"),
        ("xml_bomb.xml", "forbidden XML"),
        ("xxe.xml", "forbidden XML"),
        ("users_empty.xml", "expected <audit>"),
        # An entity without a DTD: refused, never a record cut short at it.
        ("<audit><record><message>a&nbsp;b</message></record></audit>", "malformed XML"),
        # A DTD hidden from the byte check by a declared encoding.
        (
            '<?xml version="1.0" encoding="UTF-7"?>+ADwAIQ-DOCTYPE audit +AFs-'
            "+ADwAIQ-ENTITY x +ACI-boom+ACIAPg- +AF0APg-+ADw-audit+AD4-+ADw-/audit+AD4-",
            "forbidden XML",
        ),
    ],
)
@responses.activate
def test_a_bad_audit_page_is_a_protocol_error_without_expansion(name: str, message: str) -> None:
    body = fixture(name) if name.endswith(".xml") else name.encode()
    responses.put(f"{BASE}/audit/filter/pretty", body=body)
    with pytest.raises(KeepitProtocolError, match=message):
        list(
            make_client().audit_records(
                PARENT,
                start=datetime(2026, 11, 1, tzinfo=UTC),
                end=datetime(2026, 11, 2, tzinfo=UTC),
            )
        )


@responses.activate
def test_an_audit_page_reads_the_same_through_either_parser() -> None:
    """A plain page is parsed by lxml, one with any declaration by defusedxml: the
    records, metadata and trimming are the same, and a processing instruction inside a
    record is no field."""
    page = fixture("audit_page1.xml").replace(b"<record>", b"<record><?keepit note?>", 1)
    declared = page.replace(b"<audit>", b"<!-- sends the page through defusedxml --><audit>")
    read = []
    for body in (page, declared):
        responses.put(f"{BASE}/audit/filter/pretty", body=body)
        read.append(
            list(
                make_client().audit_records(
                    PARENT,
                    start=datetime(2026, 11, 1, tzinfo=UTC),
                    end=datetime(2026, 11, 2, tzinfo=UTC),
                )
            )
        )
        responses.reset()
    assert read[0] == read[1]
    assert [r.message for r in read[0]] == ["User signed in", "Restore job failed"]
    assert read[0][1].metadata == {"job": "job-000042", "items": "17"}


@responses.activate
def test_credentials_never_appear_in_reprs_or_errors() -> None:
    responses.get(f"{BASE}/users/", status=401)
    responses.get(f"{BASE}/users/{PARENT}", status=503)
    client = make_client(token_login="tok-login", token_password="Tok3n-P@ss")
    texts = [repr(client), str(client), repr(client._credentials), str(client._credentials)]
    for call in (client.who_am_i, lambda: client.parent_account(PARENT)):
        try:
            call()
        except Exception as exc:
            texts += [str(exc), repr(exc)]
    joined = "\n".join(texts)
    assert "Tok3n-P@ss" not in joined
    assert "S3cret" not in joined
    assert "tok-login" in joined  # the login is not secret; Keepit logs it as the actor


def test_the_client_refuses_any_write_request() -> None:
    client = make_client()
    for method, path in [
        ("POST", "/users/x/tokens/"),
        ("PUT", "/users/x/devices/y"),
        ("DELETE", "/users/x"),
        ("PATCH", "/users/x"),
    ]:
        with pytest.raises(Exception, match="read-only"):
            client._request(method, path, accept=None)


def test_region_can_never_change_the_host_pattern() -> None:
    for bad in ["evil.example/x", "us-dc.attacker.com#", "..", "us dc", "US-DC", "a", "x" * 33]:
        with pytest.raises(ValueError, match="Region"):
            validate_region(bad)
    assert base_url_for("https://{region}.keepit.com", "us-dc") == BASE
    assert base_url_for("http://127.0.0.1:9100/{region}", "de-fr") == "http://127.0.0.1:9100/de-fr"


def test_account_guids_are_validated_before_they_reach_a_path() -> None:
    with pytest.raises(Exception, match="Account GUID"):
        make_client().connectors("../../audit")
