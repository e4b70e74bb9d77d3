"""FinOpsConnector against the F&O and Azure AD emulators, over real TLS sockets."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from integrations import errors
from integrations.models import System
from integrations.protocols.transport import DeliveryRequest
from integrations.services.systems import system_test_connection
from integrations.systems import get_connector
from integrations.systems.finops.connector import FinOpsConnector
from sandbox import azuread, finops
from sandbox.common.faults import set_faults
from sandbox.models import EmulatorRecord, EmulatorSubscription
from tests.conftest import wait_until
from tests.connectors.microsoft_support import CLIENT_ID, CLIENT_SECRET, TENANT, Inbox

pytest_plugins = ["tests.connectors.microsoft_support"]


def customer(account: str, company: str = "DK01", name: str = "Contoso", **kwargs: object) -> DeliveryRequest:
    return DeliveryRequest(
        entity="CustomersV3",
        operation=str(kwargs.pop("operation", "upsert")),
        payload={"OrganizationName": name, "CustomerGroupId": "10"},
        key={"CustomerAccount": account},
        idempotency_key=f"cust-{account}",
        company=company,
        etag=str(kwargs.pop("etag", "")),
        exists=kwargs.pop("exists", None),  # type: ignore[arg-type]
    )


def connector_of(system: System) -> FinOpsConnector:
    connector = get_connector(system)
    assert isinstance(connector, FinOpsConnector)
    return connector


def test_upsert_creates_then_updates_in_the_requested_company(finops_system: System) -> None:
    connector = connector_of(finops_system)

    created = connector.deliver(customer("C1"))
    updated = connector.deliver(customer("C1", name="Contoso A/S"))

    assert created.created is True
    assert updated.created is False
    assert created.target_key == updated.target_key == "dataAreaId='dk01',CustomerAccount='C1'"
    row = connector.fetch(entity="CustomersV3", key={"CustomerAccount": "C1"}, company="DK01")
    assert (row["dataAreaId"], row["OrganizationName"]) == ("dk01", "Contoso A/S")
    assert connector.fetch(entity="CustomersV3", key={"CustomerAccount": "C1"}, company="SE01") is None
    assert azuread.tokens_issued(CLIENT_ID) == 1


def test_an_upsert_of_a_record_we_never_wrote_goes_create_first(finops_system: System) -> None:
    connector = connector_of(finops_system)
    sent: list[str] = []
    connector.session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request.method))

    created = connector.deliver(customer("N1", exists=False))
    # Already there (our own lost response, or made in F&O): the create falls back to an update.
    again = connector.deliver(customer("N1", name="Fabrikam", exists=False))

    assert (created.created, again.created) == (True, False)
    assert sent == ["POST", "POST", "PATCH"]
    row = connector.fetch(entity="CustomersV3", key={"CustomerAccount": "N1"}, company="DK01")
    assert row["OrganizationName"] == "Fabrikam"


def test_a_batch_of_new_and_existing_records_guesses_create_then_corrects(finops_system: System) -> None:
    connector = connector_of(finops_system)
    connector.deliver(customer("E1"))

    results = connector.deliver_many([customer("E1", name="Changed", exists=False), customer("E2", exists=False)])

    assert [r.created for r in results] == [False, True]
    row = connector.fetch(entity="CustomersV3", key={"CustomerAccount": "E1"}, company="DK01")
    assert row["OrganizationName"] == "Changed"


def test_a_sales_order_numbered_by_fo_returns_its_key(finops_system: System) -> None:
    request = DeliveryRequest(
        entity="SalesOrderHeadersV2",
        operation="create",
        payload={"OrderingCustomerAccountNumber": "DK01-IC"},
        key={},
        idempotency_key="so-1",
        company="SE01",
    )

    result = connector_of(finops_system).deliver(request)

    assert result.created is True
    assert result.target_key == f"dataAreaId='se01',SalesOrderNumber='{result.body['SalesOrderNumber']}'"
    assert result.body["SalesOrderNumber"].startswith("SA")


def test_a_stale_etag_is_a_conflict_carrying_the_current_row(finops_system: System) -> None:
    connector = connector_of(finops_system)
    first = connector.deliver(customer("C2", name="v1"))
    connector.deliver(customer("C2", name="v2"))

    with pytest.raises(errors.ConflictError) as conflict:
        connector.deliver(customer("C2", name="v3", etag=first.etag))

    assert conflict.value.status_code == 412
    assert conflict.value.current["OrganizationName"] == "v2"
    assert conflict.value.current_etag == conflict.value.current["@odata.etag"]


def test_creating_an_existing_record_is_a_duplicate(finops_system: System) -> None:
    connector = connector_of(finops_system)
    connector.deliver(customer("C3", operation="create"))

    with pytest.raises(errors.DuplicateError) as duplicate:
        connector.deliver(customer("C3", operation="create"))

    assert duplicate.value.existing_key == "dataAreaId='dk01',CustomerAccount='C3'"
    assert "already exists" in duplicate.value.message


def test_a_validation_error_is_rejected_with_the_infolog_text(finops_system: System) -> None:
    request = DeliveryRequest(
        entity="CustomersV3",
        operation="create",
        payload={"OrganizationName": "no group"},
        key={"CustomerAccount": "C4"},
        idempotency_key="c4",
        company="DK01",
    )

    with pytest.raises(errors.RejectedError) as rejected:
        connector_of(finops_system).deliver(request)

    assert rejected.value.status_code == 400
    assert "Write failed for table row of type 'CustCustomerV3Entity'" in rejected.value.message
    assert "Field 'CustomerGroupId' must be filled in." in rejected.value.message


def test_a_request_without_company_is_rejected_before_sending(finops_system: System) -> None:
    with pytest.raises(errors.RejectedError, match="no company"):
        connector_of(finops_system).deliver(customer("C5", company=""))


def test_a_batch_of_200_upserts(finops_system: System) -> None:
    finops_system.batch_size = 200
    connector = connector_of(finops_system)
    sent: list[str] = []
    connector.session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request.url))

    results = connector.deliver_many([customer(f"B{n:03d}") for n in range(200)])

    assert all(not isinstance(r, errors.ConnectorError) for r in results), [
        r for r in results if isinstance(r, Exception)
    ][:2]
    assert all(r.created for r in results)
    assert len(sent) == 2  # the PATCHes find nothing, then the POSTs
    assert all(url.endswith("/data/$batch") for url in sent)
    assert EmulatorRecord.objects.filter(emulator="finops", entity="CustomersV3", company="dk01").count() == 200


KEY = ["CustomerAccount"]


def test_read_changes_exports_only_the_rows_changed_since_the_previous_export(finops_system: System) -> None:
    """Change tracking in data management, not a ModifiedDateTime filter (F&O entities have none)."""
    from sandbox import finops

    finops.change_tracking("CustomersV3")
    finops.data_project("CustomerChanges", entities=["CustomersV3"], incremental=True)
    connector = connector_of(finops_system)
    for n in range(3):
        connector.deliver(customer(f"M{n}"))
    connector.deliver(customer("X0", company="SE01"))
    initial = connector.read_changes("CustomersV3", "exec-1", project="CustomerChanges", company="DK01", key=KEY)

    connector.deliver(customer("M1", name="changed"))
    changes = connector.read_changes("CustomersV3", "exec-2", project="CustomerChanges", company="DK01", key=KEY)
    again = connector.read_changes("CustomersV3", "exec-2", project="CustomerChanges", company="DK01", key=KEY)
    nothing = connector.read_changes("CustomersV3", "exec-3", project="CustomerChanges", company="DK01", key=KEY)

    assert sorted(r["CustomerAccount"] for r in initial) == ["M0", "M1", "M2"]
    assert [(r["CustomerAccount"], r["OrganizationName"]) for r in changes] == [("M1", "changed")]
    assert again == changes  # the same execution id reads the same package, it does not export again
    assert nothing == []
    assert all("ModifiedDateTime" not in r for r in initial)
    assert all(r["@odata.etag"].startswith('W/"') for r in initial + changes)  # read back by key through OData


def test_read_changes_of_a_project_without_the_entity_is_refused(finops_system: System) -> None:
    from sandbox import finops

    finops.data_project("Products", entities=["ReleasedProductsV2"], incremental=True)

    with pytest.raises(errors.RejectedError, match="does not export CustomersV3"):
        connector_of(finops_system).read_changes("CustomersV3", "exec-x", project="Products", company="DK01", key=KEY)


def test_availability_check_through_the_custom_service(finops_system: System) -> None:
    connector = connector_of(finops_system)
    for entity, payload, key in (
        ("ReleasedProductsV2", {"SalesPrice": 10}, {"ItemNumber": "A0001"}),
        (
            "WarehousesOnHandV2",
            {"AvailableOnHandQuantity": 5},
            {"ItemNumber": "A0001", "InventorySiteId": "1", "InventoryWarehouseId": "11"},
        ),
    ):
        connector.deliver(
            DeliveryRequest(
                entity=entity, operation="upsert", payload=payload, key=key, idempotency_key=entity, company="SE01"
            )
        )
    check = DeliveryRequest(
        entity="IcbAvailabilityServices/IcbAvailabilityService/checkAvailability",
        operation="action",
        payload={"_dataAreaId": "SE01", "_itemNumber": "A0001", "_quantity": 2},
        key={},
        idempotency_key="check-1",
    )

    answer = connector.deliver(check).body
    with pytest.raises(errors.RejectedError) as unknown:
        connector.call_service(check.entity, {"_dataAreaId": "SE01", "_itemNumber": "nope", "_quantity": 1})

    assert (answer["AvailableQuantity"], answer["IsAvailable"], answer["NetAmount"]) == (5.0, True, 20.0)
    assert unknown.value.status_code == 500
    assert "Item number nope does not exist" in unknown.value.message


def test_document_postings_push_business_events(finops_system: System, inbox: Inbox) -> None:
    EmulatorSubscription.objects.create(emulator="finops", event_type="SalesOrderInvoicedBusinessEvent", url=inbox.url)
    connector = connector_of(finops_system)
    connector.deliver(
        DeliveryRequest(
            entity="SalesOrderHeadersV2",
            operation="upsert",
            payload={"OrderingCustomerAccountNumber": "DK01-IC"},
            key={"SalesOrderNumber": "SO-7"},
            idempotency_key="so-7",
            company="SE01",
        )
    )

    for operation in ("confirm", "postPackingSlip", "postInvoice"):
        connector.call_service(
            f"IcbSandboxServices/IcbSalesOrderService/{operation}", {"_dataAreaId": "SE01", "_salesOrderNumber": "SO-7"}
        )
    wait_until(lambda: len(inbox.received) == 1, timeout=15)

    event = inbox.received[0]["body"]
    assert event["BusinessEventId"] == "SalesOrderInvoicedBusinessEvent"
    assert (event["SalesOrderNumber"], event["LegalEntity"]) == ("SO-7", "SE01")
    assert event["InvoiceNumber"].startswith("CIV")


def test_throttling_is_honoured_no_request_before_retry_after(finops_system: System) -> None:
    # given room for two requests per 2 s: an upsert of a new record takes two (PATCH finds nothing, POST)
    finops.configure_service_protection(requests=2, window_seconds=2)
    connector = connector_of(finops_system)
    sent: list[str] = []
    connector.session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request.url))
    connector.fetch(entity="CustomersV3", key={"CustomerAccount": "none"}, company="DK01")

    with pytest.raises(errors.ThrottledError) as refused:
        connector.deliver(customer("T1"))
    with pytest.raises(errors.ThrottledError) as held_back:
        connector.deliver(customer("T2"))

    assert refused.value.status_code == 429
    assert "high resource utilization" in refused.value.message  # priority-based throttling (10.0.36)
    assert held_back.value.status_code is None
    assert len(sent) == 3
    time.sleep(connector.retry_after_remaining() + 0.05)
    assert connector.deliver(customer("T1")).created is True


def test_an_outage_is_transient(finops_system: System) -> None:
    connector = connector_of(finops_system)
    connector.access_token()
    set_faults("finops", down=True)

    with pytest.raises(errors.TransientError) as outage:
        connector.deliver(customer("O1"))

    assert (type(outage.value), outage.value.status_code) == (errors.TransientError, 503)


def test_test_connection_reports_token_reachability_and_permissions(
    finops_system: System, make_ms_system: Callable[..., System]
) -> None:
    denied = make_ms_system("finops", name="F&O denied", slug="fo-denied")

    ok = system_test_connection(system=finops_system)
    azuread.register_app(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, tenant=TENANT, denied=("finops",))
    refused = system_test_connection(system=denied)

    assert ok.ok, ok.summary()
    assert [s.name for s in ok.steps] == ["token", "reachability", "permissions (CustomersV3)"]
    assert "can read CustomersV3 in every company" in ok.summary()
    assert not refused.ok
    assert "not registered as a user" in refused.summary()


def odata_error(inner: str = "", kind: str = "", message: str = "An error has occurred.") -> str:
    body: dict = {"code": "", "message": message}
    if inner:
        body["innererror"] = {"message": inner, "type": kind}
    return json.dumps({"error": body})


WRITE_EXCEPTION = "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException"
XPP_FAULT = json.dumps(
    {
        "Message": "An exception occured when invoking the operation - Item x does not exist.",
        "ExceptionType": "XppServicesException",
    }
)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (429, odata_error(message="Number of concurrent requests exceeded the limit of 52."), errors.ThrottledError),
        (412, odata_error("ETag mismatch"), errors.ConflictError),
        (
            400,
            odata_error("Write failed for table row of type 'X'. Infolog: Error: bad.", WRITE_EXCEPTION),
            errors.RejectedError,
        ),
        (
            500,
            odata_error("Write failed for table row of type 'X'. Infolog: Error: bad.", WRITE_EXCEPTION),
            errors.RejectedError,
        ),
        (500, odata_error("Infolog: Error: Record already exists.", WRITE_EXCEPTION), errors.DuplicateError),
        (500, XPP_FAULT, errors.RejectedError),
        (500, odata_error(), errors.TransientError),
        (503, "", errors.TransientError),
        (401, "", errors.AuthError),
        (403, odata_error(message="not registered"), errors.AuthError),
        (404, odata_error(message="No HTTP resource was found"), errors.RejectedError),
    ],
)
def test_each_fo_answer_is_classified_once(status: int, body: str, expected: type) -> None:
    from integrations.systems.finops.connector import classify

    failure = classify("F&O", status, {"Retry-After": "3"}, body, "POST CustomersV3")

    assert type(failure) is expected
    assert failure.status_code == status
    if expected is errors.ThrottledError:
        assert failure.retry_after == 3


def test_an_injected_throttle_carries_the_servers_retry_after(finops_system: System) -> None:
    connector = connector_of(finops_system)
    connector.access_token()
    set_faults("finops", throttle_rate=1.0, retry_after_seconds=3)

    with pytest.raises(errors.ThrottledError) as throttled:
        connector.deliver(customer("F1"))

    assert throttled.value.retry_after == 3
    assert "high resource utilization" in throttled.value.message
