"""The F&O emulator: data entities by dataAreaId, custom services, business events out, throttling."""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import import_module

from sandbox import finops
from sandbox.common.faults import set_faults
from sandbox.models import EmulatorRecord, EmulatorSubscription
from tests.conftest import wait_until
from tests.connectors.microsoft_support import Inbox, MsClient, fixture_json, fixture_text

pytest_plugins = ["tests.connectors.microsoft_support"]

DATA = "/sandbox/finops/data"
SERVICES = "/sandbox/finops/api/services"


def customer(fo: MsClient, company: str, account: str, cross_company: bool = True) -> dict:
    query = "?cross-company=true" if cross_company else ""
    response = fo.call(
        "POST",
        f"{DATA}/CustomersV3{query}",
        json={"dataAreaId": company, "CustomerAccount": account, "CustomerGroupId": "10", "OrganizationName": account},
    )
    assert response.status_code == 201, response.text
    return response.json()


def sales_order(fo: MsClient, company: str = "se01", number: str = "SO-1") -> None:
    for entity, body in (
        (
            "SalesOrderHeadersV2",
            {"SalesOrderNumber": number, "OrderingCustomerAccountNumber": "DK01-IC", "DefaultShippingSiteId": "1"},
        ),
        (
            "SalesOrderLines",
            {"SalesOrderNumber": number, "ItemNumber": "A0001", "OrderedSalesQuantity": 4, "SalesPrice": 12.5},
        ),
    ):
        response = fo.call("POST", f"{DATA}/{entity}?cross-company=true", json={"dataAreaId": company, **body})
        assert response.status_code == 201, response.text


def test_reads_see_the_default_company_unless_cross_company(fo: MsClient) -> None:
    customer(fo, "usmf", "US-001")
    customer(fo, "SE01", "SE-001")

    default = fo.call("GET", f"{DATA}/CustomersV3").json()["value"]
    everywhere = fo.call("GET", f"{DATA}/CustomersV3?cross-company=true").json()["value"]
    by_key = fo.call("GET", f"{DATA}/CustomersV3(dataAreaId='SE01',CustomerAccount='SE-001')")
    by_key_cross = fo.call("GET", f"{DATA}/CustomersV3(dataAreaId='SE01',CustomerAccount='SE-001')?cross-company=true")

    assert [c["CustomerAccount"] for c in default] == ["US-001"]
    assert sorted(c["dataAreaId"] for c in everywhere) == ["se01", "usmf"]
    assert by_key.status_code == 404
    assert by_key_cross.json()["CustomerAccount"] == "SE-001"
    assert re.fullmatch(r'W/"[A-Za-z0-9+/=]+"', by_key_cross.json()["@odata.etag"])


def test_without_cross_company_a_post_lands_in_the_default_company(fo: MsClient) -> None:
    created = customer(fo, "se01", "C-1", cross_company=False)

    assert created["dataAreaId"] == "usmf"


def test_filter_and_select_on_an_entity(fo: MsClient) -> None:
    for n in range(3):
        customer(fo, "se01", f"C-{n}")

    response = fo.call(
        "GET",
        f"{DATA}/CustomersV3",
        params={
            "cross-company": "true",
            "$filter": "CustomerAccount ne 'C-1' and dataAreaId eq 'se01'",
            "$select": "CustomerAccount",
        },
    )

    assert [set(r) for r in response.json()["value"]] == [{"@odata.etag", "CustomerAccount"}] * 2
    assert [r["CustomerAccount"] for r in response.json()["value"]] == ["C-0", "C-2"]


def test_patch_with_a_stale_etag_is_412_and_a_missing_key_is_404(fo: MsClient) -> None:
    etag = customer(fo, "se01", "C-9")["@odata.etag"]
    url = f"{DATA}/CustomersV3(dataAreaId='se01',CustomerAccount='C-9')?cross-company=true"
    fo.call("PATCH", url, json={"OrganizationName": "v2"})

    stale = fo.call("PATCH", url, json={"OrganizationName": "v3"}, headers={"If-Match": etag})
    missing = fo.call("PATCH", url.replace("C-9", "nope"), json={"OrganizationName": "x"})

    assert stale.status_code == 412
    assert "ETag" in stale.json()["error"]["innererror"]["message"]
    assert missing.status_code == 404
    assert fo.call("GET", url).json()["OrganizationName"] == "v2"


def test_keys_compare_case_insensitively_as_in_fo_and_the_row_keeps_its_case(fo: MsClient, finops_items: None) -> None:
    """F&O runs on SQL Server with a case-insensitive collation ("Open Data Protocol (OData)"; a key is a
    unique index): CustomerAccount 'c-case' is the customer 'C-CASE' — read by it, and a second create is
    refused as "The record already exists." — while the row answers the case it was written in. A line
    naming its order and item in another case finds both."""
    customer(fo, "se01", "C-Case")
    sales_order(fo, number="SO-CASE")

    read = fo.call("GET", f"{DATA}/CustomersV3(dataAreaId='se01',CustomerAccount='c-case')?cross-company=true")
    again = fo.call(
        "POST",
        f"{DATA}/CustomersV3?cross-company=true",
        json={"dataAreaId": "se01", "CustomerAccount": "C-CASE", "CustomerGroupId": "10"},
    )
    line = fo.call(
        "POST",
        f"{DATA}/SalesOrderLines?cross-company=true",
        json={"dataAreaId": "se01", "SalesOrderNumber": "so-case", "ItemNumber": "a0001", "OrderedSalesQuantity": 1},
    )

    assert read.status_code == 200, read.text
    assert read.json()["CustomerAccount"] == "C-Case"
    assert again.status_code == 400
    assert "The record already exists." in again.json()["error"]["innererror"]["message"]
    assert (
        EmulatorRecord.objects.filter(
            emulator="finops", entity="CustomersV3", data__CustomerAccount__iexact="c-case"
        ).count()
        == 1
    )
    assert line.status_code == 201, line.text
    assert line.json()["ShippingSiteId"] == "1"  # the header's default: the order was found


def test_rows_stored_before_keys_were_folded_are_found_after_the_migration(fo: MsClient) -> None:
    """A sandbox database written before keys compared case-insensitively: its migration folds each F&O row's
    key (the row keeps its case); a row whose folded key another row holds already keeps its own."""
    from django.apps import apps

    fold = import_module("sandbox.migrations.0002_finops_keys_folded").fold_keys
    old = {"emulator": "finops", "entity": "CustomersV3", "company": "se01"}
    EmulatorRecord.objects.create(**old, key="C-Old", data={"dataAreaId": "se01", "CustomerAccount": "C-Old"})
    EmulatorRecord.objects.create(**old, key="C-TWIN", data={"dataAreaId": "se01", "CustomerAccount": "C-TWIN"})
    EmulatorRecord.objects.create(**old, key="c-twin", data={"dataAreaId": "se01", "CustomerAccount": "c-twin"})

    fold(apps, None)

    read = fo.call("GET", f"{DATA}/CustomersV3(dataAreaId='se01',CustomerAccount='c-old')?cross-company=true")
    assert read.status_code == 200, read.text
    assert read.json()["CustomerAccount"] == "C-Old"
    keys = set(EmulatorRecord.objects.filter(**old).values_list("key", flat=True))
    assert keys == {"C-OLD", "C-TWIN", "c-twin"}


def test_a_line_needs_its_order_and_errors_use_the_odata_shape(fo: MsClient) -> None:
    response = fo.call(
        "POST",
        f"{DATA}/SalesOrderLines?cross-company=true",
        json={"dataAreaId": "se01", "SalesOrderNumber": "none", "ItemNumber": "A0001"},
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == "An error has occurred."
    assert error["innererror"]["message"].startswith("Write failed for table row of type 'SalesOrderLineEntity'.")
    assert error["innererror"]["type"].endswith("AxODataWriteException")


def test_business_events_are_pushed_with_the_real_envelope(fo: MsClient, inbox: Inbox, finops_items: None) -> None:
    # given a subscription and an intercompany sales order
    EmulatorSubscription.objects.create(emulator="finops", url=inbox.url, headers={"X-Key": "k1"})
    sales_order(fo)
    params = {"_dataAreaId": "SE01", "_salesOrderNumber": "SO-1"}

    # when the order is confirmed, shipped and invoiced
    for operation in ("confirm", "postPackingSlip", "postInvoice"):
        response = fo.call("POST", f"{SERVICES}/IcbSandboxServices/IcbSalesOrderService/{operation}", json=params)
        assert response.status_code == 200, response.text
    wait_until(lambda: len(inbox.received) == 3, timeout=15)

    # then three envelopes, each with the standard fields of the captured sample and its own
    captured = fixture_json("finops/event-BusinessEventsAlertEvent__captured.json")
    standard = {"BusinessEventId", "ControlNumber", "EventId", "EventTime", "MajorVersion", "MinorVersion"}
    assert standard <= set(captured)
    events = sorted((r["body"] for r in inbox.received), key=lambda e: e["ControlNumber"])
    assert [e["BusinessEventId"] for e in events] == [
        "SalesOrderConfirmedBusinessEvent",
        "SalesPackingSlipPostedBusinessEvent",
        "SalesOrderInvoicedBusinessEvent",
    ]
    for event in events:
        assert standard | {"BusinessEventLegalEntity", "SalesOrderNumber", "LegalEntity"} <= set(event)
        assert re.fullmatch(r"/Date\(\d{13}\)/", event["EventTime"])
        assert re.fullmatch(r"[0-9A-F-]{36}", event["EventId"])
        assert (event["BusinessEventLegalEntity"], event["LegalEntity"], event["SalesOrderNumber"]) == (
            "SE01",
            "SE01",
            "SO-1",
        )
    assert events[1]["PackingSlipNumber"].startswith("PS")
    assert events[2]["InvoiceNumber"].startswith("CIV")
    assert events[2]["InvoiceAmount"] == 50.0
    assert {r["headers"]["X-Key"] for r in inbox.received} == {"k1"}
    invoice = fo.call("GET", f"{DATA}/SalesInvoiceHeadersV2?cross-company=true").json()["value"]
    assert [(i["InvoiceNumber"], i["SalesOrderNumber"]) for i in invoice] == [(events[2]["InvoiceNumber"], "SO-1")]
    header = fo.call("GET", f"{DATA}/SalesOrderHeadersV2(dataAreaId='se01',SalesOrderNumber='SO-1')?cross-company=true")
    assert header.json()["SalesOrderStatus"] == "Invoiced"


class _Slow(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        time.sleep(3)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def test_a_slow_subscriber_does_not_hold_the_request(fo: MsClient, finops_items: None) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        EmulatorSubscription.objects.create(emulator="finops", url=f"http://127.0.0.1:{server.server_address[1]}/")
        sales_order(fo)

        started = time.monotonic()
        response = fo.call(
            "POST",
            f"{SERVICES}/IcbSandboxServices/IcbSalesOrderService/confirm",
            json={"_dataAreaId": "se01", "_salesOrderNumber": "SO-1"},
        )
        elapsed = time.monotonic() - started

        assert response.status_code == 200
        assert elapsed < 2
        event = EmulatorRecord.objects.get(emulator="finops", entity="$event")
        wait_until(lambda: event.__class__.objects.get(pk=event.pk).data["deliveries"], timeout=10)
        assert EmulatorRecord.objects.get(pk=event.pk).data["deliveries"][0]["status"] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_availability_service_answers_quantity_and_price(fo: MsClient) -> None:
    fo.call(
        "POST",
        f"{DATA}/ReleasedProductsV2?cross-company=true",
        json={"dataAreaId": "se01", "ItemNumber": "A0001", "SalesPrice": 12.5},
    )
    for warehouse, quantity in (("11", 3), ("12", 4)):
        fo.call(
            "POST",
            f"{DATA}/WarehousesOnHandV2?cross-company=true",
            json={
                "dataAreaId": "se01",
                "ItemNumber": "A0001",
                "InventorySiteId": "1",
                "InventoryWarehouseId": warehouse,
                "AvailableOnHandQuantity": quantity,
            },
        )
    url = f"{SERVICES}/IcbAvailabilityServices/IcbAvailabilityService/checkAvailability"

    enough = fo.call("POST", url, json={"_dataAreaId": "SE01", "_itemNumber": "A0001", "_quantity": 6}).json()
    short = fo.call("POST", url, json={"_dataAreaId": "SE01", "_itemNumber": "A0001", "_quantity": 8}).json()
    unknown = fo.call("POST", url, json={"_dataAreaId": "SE01", "_itemNumber": "nope", "_quantity": 1})
    listing = fo.call("GET", f"{SERVICES}/IcbAvailabilityServices/IcbAvailabilityService").json()

    assert (enough["AvailableQuantity"], enough["IsAvailable"], enough["NetAmount"]) == (7.0, True, 75.0)
    assert short["IsAvailable"] is False
    assert unknown.status_code == 500
    assert unknown.json()["ExceptionType"] == "XppServicesException"
    assert "Item number nope does not exist" in unknown.json()["Message"]
    assert listing == {"Operations": [{"Name": "checkAvailability"}]}


def test_under_load_the_answer_is_429_with_retry_after_and_the_documented_message(fo: MsClient) -> None:
    finops.configure_service_protection(requests=2, window_seconds=30)

    answers = [fo.call("GET", f"{DATA}/CustomersV3") for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 30
    # Since 10.0.36 F&O throttles on resource use, not per user (Priority-based throttling): its message.
    documented = re.search(
        r"\| Resource-based .*? \| `([^`]+)` \|", fixture_text("finops/service-protection-429-messages.md")
    ).group(1)
    assert answers[2].json()["error"]["message"] == documented


def test_an_outage_answers_503_and_reset_empties_the_store(fo: MsClient) -> None:
    customer(fo, "se01", "C-1")
    set_faults("finops", down=True)

    down = fo.call("GET", f"{DATA}/CustomersV3")
    set_faults("finops", down=False)
    finops.reset()
    finops.configure(default_company="usmf")

    assert down.status_code == 503
    assert set(down.json()["error"]) == {"code", "message"}
    assert fo.call("GET", f"{DATA}/CustomersV3?cross-company=true").json()["value"] == []


def test_lines_inside_a_header_are_refused_as_fo_takes_no_deep_insert(fo: MsClient) -> None:
    response = fo.call(
        "POST",
        f"{DATA}/SalesQuotationHeadersV2?cross-company=true",
        json={
            "dataAreaId": "se01",
            "SalesQuotationNumber": "Q-1",
            "RequestingCustomerAccountNumber": "C-1",
            "SalesQuotationLines": [{"ItemNumber": "A0001", "RequestedSalesQuantity": 1}],
        },
    )
    orphan = fo.call(
        "POST",
        f"{DATA}/SalesQuotationLines?cross-company=true",
        json={"dataAreaId": "se01", "SalesQuotationNumber": "Q-1", "ItemNumber": "A0001"},
    )

    assert response.status_code == 400
    assert "'SalesQuotationLines'" in response.json()["error"]["message"]
    assert "deep insert" in response.json()["error"]["message"]
    assert "Sales quotation Q-1 does not exist" in orphan.json()["error"]["innererror"]["message"]
    assert not EmulatorRecord.objects.filter(emulator="finops", entity__startswith="SalesQuotation").exists()


def test_a_hold_raises_its_event_and_clearing_it_is_idempotent(fo: MsClient, inbox: Inbox, finops_items: None) -> None:
    EmulatorSubscription.objects.create(
        emulator="finops", event_type="SalesOrderHoldPlacedBusinessEvent", url=inbox.url
    )
    sales_order(fo)
    hold = {"_dataAreaId": "SE01", "_salesOrderNumber": "SO-1", "_holdCode": "Credit"}

    placed = fo.call(
        "POST", f"{SERVICES}/IcbSandboxServices/IcbSalesOrderService/placeHold", json={**hold, "_holdReason": "Limit"}
    )
    twice = fo.call("POST", f"{SERVICES}/IcbSandboxServices/IcbSalesOrderService/placeHold", json=hold)
    clear = f"{SERVICES}/IcbOrderHoldServices/IcbOrderHoldService/clearHold"
    first = fo.call("POST", clear, json={**hold, "_clearedBy": "ops"})
    second = fo.call("POST", clear, json={**hold, "_clearedBy": "someone else"})
    unknown = fo.call("POST", clear, json={**hold, "_holdCode": "Fraud"})
    wait_until(lambda: len(inbox.received) == 1, timeout=15)

    assert placed.status_code == 200, placed.text
    assert twice.status_code == 500
    assert twice.json()["ExceptionMessage"] == "Sales order SO-1 is already on hold Credit."
    assert (first.json()["AlreadyCleared"], second.json()["AlreadyCleared"]) == (False, True)
    assert second.json()["ClearedBy"] == "ops"
    assert unknown.json()["ExceptionMessage"] == "Sales order SO-1 has no hold Fraud."
    event = inbox.received[0]["body"]
    assert (event["BusinessEventId"], event["SalesOrderNumber"], event["HoldCode"], event["HoldReason"]) == (
        "SalesOrderHoldPlacedBusinessEvent",
        "SO-1",
        "Credit",
        "Limit",
    )
    row = fo.call(
        "GET", f"{DATA}/SalesOrderHolds(dataAreaId='se01',SalesOrderNumber='SO-1',HoldCode='Credit')?cross-company=true"
    )
    assert row.json()["IsCleared"] is True
    order = fo.call(
        "GET", f"{DATA}/SalesOrderHeadersV2(dataAreaId='se01',SalesOrderNumber='SO-1')?cross-company=true"
    ).json()
    assert order["OrderHoldCode"] == ""
