"""DataverseConnector against the Dataverse and Azure AD emulators, over real TLS sockets."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from django.test import Client

from integrations import errors
from integrations.models import AuditEntry, System
from integrations.protocols.transport import DeliveryRequest
from integrations.services.systems import system_test_connection
from integrations.systems import get_connector
from integrations.systems.dataverse.connector import DataverseConnector, is_deleted
from sandbox import azuread, dataverse
from sandbox.common.faults import set_faults
from tests.connectors.microsoft_support import CLIENT_ID, CLIENT_SECRET, TENANT

pytest_plugins = ["tests.connectors.microsoft_support"]


def account(
    number: str, name: str = "Contoso", *, etag: str = "", operation: str = "upsert", **extra: Any
) -> DeliveryRequest:
    return DeliveryRequest(
        entity="accounts",
        operation=operation,
        payload={"name": name, **extra},
        key={"accountnumber": number},
        idempotency_key=f"acc-{number}",
        etag=etag,
    )


def connector_of(system: System) -> DataverseConnector:
    connector = get_connector(system)
    assert isinstance(connector, DataverseConnector)
    return connector


def count_requests(connector: DataverseConnector) -> list[str]:
    """Every request the connector's session really sent (the token endpoint is msal's own session)."""
    sent: list[str] = []
    connector.session.hooks["response"].append(lambda r, *a, **k: sent.append(f"{r.request.method} {r.request.url}"))
    return sent


def test_upsert_creates_then_updates_the_same_row(dataverse_system: System) -> None:
    connector = connector_of(dataverse_system)

    created = connector.deliver(account("A1"))
    updated = connector.deliver(account("A1", name="Contoso Ltd"))

    assert created.created is True
    assert updated.created is False
    assert created.target_key == updated.target_key
    assert created.etag != updated.etag
    assert connector.fetch(entity="accounts", key={"accountnumber": "A1"})["name"] == "Contoso Ltd"


def test_one_token_serves_a_hundred_calls(dataverse_system: System) -> None:
    connector = connector_of(dataverse_system)

    for n in range(100):
        connector.deliver(account(f"T{n % 5}", name=f"call {n}"))

    assert azuread.tokens_issued(CLIENT_ID) == 1


def test_connectors_of_the_same_app_share_the_token_cache(
    dataverse_system: System, make_ms_system: Callable[..., System]
) -> None:
    other = make_ms_system("dataverse", name="Dataverse 2", slug="dataverse-2")

    connector_of(dataverse_system).deliver(account("S1"))
    connector_of(other).deliver(account("S2"))

    assert azuread.tokens_issued(CLIENT_ID) == 1


def test_throttling_is_honoured_no_request_before_retry_after(dataverse_system: System) -> None:
    # given a limit of 2 requests per 2 seconds
    dataverse.configure_service_protection(requests=2, window_seconds=2)
    connector = connector_of(dataverse_system)
    sent = count_requests(connector)
    connector.deliver(account("R1"))
    connector.deliver(account("R2"))

    # when the third is refused, and a fourth is tried at once
    with pytest.raises(errors.ThrottledError) as refused:
        connector.deliver(account("R3"))
    with pytest.raises(errors.ThrottledError) as held_back:
        connector.deliver(account("R4"))

    # then the fourth never left the process, and after Retry-After a call goes through
    assert refused.value.status_code == 429
    assert 1 <= refused.value.retry_after <= 2
    assert "0x80072322" in refused.value.message
    assert held_back.value.status_code is None
    assert 0 < held_back.value.retry_after <= refused.value.retry_after
    assert len(sent) == 3
    time.sleep(connector.retry_after_remaining() + 0.05)
    assert connector.deliver(account("R3")).created is True
    assert len(sent) == 4


def test_a_stale_etag_is_a_conflict_carrying_the_current_row(dataverse_system: System) -> None:
    connector = connector_of(dataverse_system)
    first = connector.deliver(account("E1", name="v1"))
    second = connector.deliver(account("E1", name="v2"))

    with pytest.raises(errors.ConflictError) as conflict:
        connector.deliver(account("E1", name="v3", etag=first.etag))

    assert conflict.value.status_code == 412
    assert conflict.value.current_etag == second.etag
    assert conflict.value.current["name"] == "v2"
    assert "0x80060882" in conflict.value.message


def test_the_current_etag_updates(dataverse_system: System) -> None:
    connector = connector_of(dataverse_system)
    first = connector.deliver(account("E2", name="v1"))

    second = connector.deliver(account("E2", name="v2", etag=first.etag))

    assert second.created is False
    assert second.etag != first.etag


def test_create_only_refuses_an_existing_row_as_duplicate(dataverse_system: System) -> None:
    connector = connector_of(dataverse_system)
    created = connector.deliver(account("D1", operation="create"))

    with pytest.raises(errors.DuplicateError) as duplicate:
        connector.deliver(account("D1", name="again", operation="create"))

    assert duplicate.value.existing_key == created.target_key
    assert connector.fetch(entity="accounts", key={"accountnumber": "D1"})["name"] == "Contoso"


def test_a_batch_of_200_records_is_one_request(dataverse_system: System) -> None:
    dataverse_system.batch_size = 500
    dataverse_system.settings["bulk_tables"] = []  # the $batch path (bulk messages: test_dataverse_bulk.py)
    connector = connector_of(dataverse_system)
    sent = count_requests(connector)

    results = connector.deliver_many([account(f"B{n:03d}", name=f"Batch {n}") for n in range(200)])

    assert len(sent) == 1
    assert sent[0].endswith("/api/data/v9.2/$batch")
    assert all(not isinstance(r, errors.ConnectorError) for r in results), [
        r for r in results if isinstance(r, Exception)
    ][:2]
    assert all(r.created for r in results)
    assert len({r.target_key for r in results}) == 200
    assert connector.fetch(entity="accounts", key={"accountnumber": "B199"})["name"] == "Batch 199"


def test_in_a_batch_a_bad_record_fails_alone_with_the_vendor_message(dataverse_system: System) -> None:
    connector = connector_of(dataverse_system)

    results = connector.deliver_many([account("G1"), account("G2", name="x" * 200), account("G3")])

    assert [type(r).__name__ for r in results] == ["DeliveryResult", "RejectedError", "DeliveryResult"]
    assert "exceeded the maximum allowed length of '160'" in results[1].message


def test_an_atomic_batch_writes_all_or_nothing(dataverse_system: System) -> None:
    connector = connector_of(dataverse_system)

    results = connector.deliver_many([account("H1"), account("H2", name="x" * 200)], atomic=True)

    assert all(isinstance(r, errors.RejectedError) for r in results)
    assert connector.fetch(entity="accounts", key={"accountnumber": "H1"}) is None


def test_paging_through_1000_records(dataverse_system: System) -> None:
    dataverse_system.batch_size = 1000
    connector = connector_of(dataverse_system)
    connector.deliver_many([account(f"P{n:04d}", name=f"Paged {n}") for n in range(1000)])
    sent = count_requests(connector)

    rows = list(connector.query("accounts", select="accountnumber", page_size=100))

    assert len(rows) == 1000
    assert len({r["accountid"] for r in rows}) == 1000
    assert len(sent) == 10


def test_read_changes_returns_only_what_changed_since_the_cursor(dataverse_system: System) -> None:
    connector = connector_of(dataverse_system)
    for n in range(3):
        connector.deliver(account(f"C{n}"))
    initial, cursor = connector.read_changes("accounts", select="name,accountnumber")
    gone = connector.fetch(entity="accounts", key={"accountnumber": "C2"})

    connector.deliver(account("C1", name="changed"))
    connector.request("DELETE", f"{connector.api}/accounts({gone['accountid']})")
    changes, cursor_2 = connector.read_changes("accounts", cursor)
    nothing, _ = connector.read_changes("accounts", cursor_2)

    assert len(initial) == 3
    assert [c["name"] for c in changes if not is_deleted(c)] == ["changed"]
    assert [c["id"] for c in changes if is_deleted(c)] == [gone["accountid"]]
    assert nothing == []


def test_an_outage_is_transient(dataverse_system: System) -> None:
    connector = connector_of(dataverse_system)
    connector.access_token()
    set_faults("dataverse", down=True)

    with pytest.raises(errors.TransientError) as outage:
        connector.deliver(account("O1"))

    assert outage.value.status_code == 503
    assert type(outage.value) is errors.TransientError


def test_no_answer_in_time_and_no_server_are_transient(dataverse_system: System) -> None:
    dataverse_system.timeout_seconds = 0.5
    connector = connector_of(dataverse_system)
    connector.access_token()
    set_faults("dataverse", latency_ms=1500)

    with pytest.raises(errors.TransientError) as slow:
        connector.deliver(account("O2"))
    set_faults("dataverse", latency_ms=0)
    dataverse_system.base_url = "https://127.0.0.1:9/sandbox/dataverse"
    with pytest.raises(errors.TransientError) as nobody:
        DataverseConnector(dataverse_system).deliver(account("O3"))

    assert "no answer within" in slow.value.message
    assert "cannot connect" in nobody.value.message


def test_a_token_the_resource_refuses_is_refreshed_once_then_auth_error(
    make_ms_system: Callable[..., System], tls_server: Any
) -> None:
    # a scope for another resource: Azure AD issues the token, Dataverse refuses its audience
    system = make_ms_system("dataverse", scope=f"{tls_server.url}/sandbox/finops/.default")

    with pytest.raises(errors.AuthError) as refused:
        connector_of(system).deliver(account("X1"))

    assert refused.value.status_code == 401
    assert azuread.tokens_issued(CLIENT_ID) == 2


def test_a_bad_secret_is_an_auth_error_with_the_aadsts_text(make_ms_system: Callable[..., System]) -> None:
    system = make_ms_system("dataverse", secret="wrong")

    with pytest.raises(errors.AuthError) as refused:
        connector_of(system).deliver(account("X2"))

    assert "invalid_client" in refused.value.message
    assert "AADSTS7000215" in refused.value.message
    assert "wrong" not in refused.value.message


def test_an_app_without_application_user_is_an_auth_error(dataverse_system: System) -> None:
    azuread.register_app(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, tenant=TENANT, denied=("dataverse",))

    with pytest.raises(errors.AuthError) as denied:
        connector_of(dataverse_system).deliver(account("X3"))

    assert denied.value.status_code == 403
    assert "not a member of the organization" in denied.value.message


def test_validation_is_rejected_with_the_vendor_message(dataverse_system: System) -> None:
    with pytest.raises(errors.RejectedError) as rejected:
        connector_of(dataverse_system).deliver(account("V1", name="x" * 161))

    assert rejected.value.status_code == 400
    assert "The length of the 'name' attribute of the 'account' entity exceeded" in rejected.value.message


def test_test_connection_reports_in_plain_words_and_is_audited(dataverse_system: System) -> None:
    report = system_test_connection(system=dataverse_system)

    assert report.ok, report.summary()
    assert [s.name for s in report.steps] == ["token", "reachability", "permissions (accounts)"]
    assert "issued a token to client" in report.steps[0].detail
    assert "can read accounts" in report.summary()
    assert AuditEntry.objects.get(action="test_connection").reason == "OK"


def test_test_connection_says_what_is_wrong(make_ms_system: Callable[..., System]) -> None:
    bad_secret = make_ms_system("dataverse", secret="wrong")
    no_table = make_ms_system(
        "dataverse",
        name="DV table",
        slug="dv-table",
        settings={
            **bad_secret.settings,
            "check_entities": ["accounts", "nosuchtables"],
        },
    )

    failed = system_test_connection(system=bad_secret)
    partly = system_test_connection(system=no_table)

    assert not failed.ok
    assert [s.name for s in failed.steps] == ["token"]
    assert "AADSTS7000215" in failed.steps[0].detail
    assert [s.ok for s in partly.steps] == [True, True, True, False]
    assert "cannot read nosuchtables" in partly.steps[3].detail


def test_admin_action_tests_the_connection(dataverse_system: System, client: Client) -> None:
    admin = User.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(admin)

    response = client.post(
        "/admin/integrations/system/",
        {"action": "test_connection", "_selected_action": [dataverse_system.pk]},
        follow=True,
    )

    text = response.content.decode()
    assert response.status_code == 200
    assert "OK token" in text
    assert "can read accounts" in text
    assert AuditEntry.objects.get(action="test_connection").actor_name == "ops"


def test_a_plain_http_loopback_sandbox_works_through_msal(
    make_system: Callable[..., System], live_server: Any, ms_sandbox: None
) -> None:
    # the embedded demo serves the sandbox over http; msal is carried there by its http_client
    system = make_system(
        kind="dataverse",
        base_url=f"{live_server.url}/sandbox/dataverse",
        auth_type=System.AuthType.CLIENT_CREDENTIALS,
        auth_url=f"{live_server.url}/sandbox/azuread/{TENANT}",
        client_id=CLIENT_ID,
        secret=CLIENT_SECRET,
    )

    result = connector_of(system).deliver(account("L1"))

    assert result.created is True
    assert requests.get(f"{live_server.url}/sandbox/dataverse/api/data/v9.2/accounts", timeout=5).status_code == 401


def test_a_plain_http_authority_elsewhere_is_refused(make_ms_system: Callable[..., System]) -> None:
    system = make_ms_system("dataverse", auth_url="http://login.example.com/tenant")

    with pytest.raises(errors.AuthError) as refused:
        connector_of(system).deliver(account("L2"))

    assert "must use https" in refused.value.message


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected"),
    [
        (
            429,
            {"Retry-After": "7"},
            '{"error":{"code":"0x80072326","message":"Number of concurrent requests exceeded the limit of 52."}}',
            errors.ThrottledError,
        ),
        (
            412,
            {},
            '{"error":{"code":"0x80060882","message":"The version of the existing record doesn\'t match"}}',
            errors.ConflictError,
        ),
        (
            412,
            {},
            '{"error":{"code":"0x80040237","message":"A record with matching key values already exists."}}',
            errors.DuplicateError,
        ),
        (400, {}, '{"error":{"code":"0x80044331","message":"A validation error occurred."}}', errors.RejectedError),
        (
            404,
            {},
            '{"error":{"code":"0x80040217","message":"account With Id = x Does Not Exist"}}',
            errors.RejectedError,
        ),
        (401, {"WWW-Authenticate": "Bearer authorization_uri=x"}, "", errors.AuthError),
        (
            403,
            {},
            '{"error":{"code":"0x80072560","message":"The user is not a member of the organization."}}',
            errors.AuthError,
        ),
        (500, {}, '{"error":{"code":"0x80040216","message":"An unexpected error occurred."}}', errors.TransientError),
        (503, {}, "<html>Service Unavailable</html>", errors.TransientError),
        (204, {}, "", None),
    ],
)
def test_each_web_api_answer_is_classified_once(status: int, headers: dict, body: str, expected: type | None) -> None:
    from integrations.systems.dataverse.connector import classify

    failure = classify("Dataverse", status, headers, body, "PATCH accounts(accountnumber='A1')")

    assert type(failure) is expected if expected else failure is None
    if failure is not None:
        assert failure.status_code == status
        assert failure.request_summary == "PATCH accounts(accountnumber='A1')"
    if expected is errors.ThrottledError:
        assert failure.retry_after == 7
    if expected is errors.RejectedError and status == 400:
        assert "A validation error occurred." in failure.message
