"""The F&O emulator as documented: lightweight business events without lines, and sales order lines that need
their site (a mandatory inventory dimension), given on the line or defaulted from the order header."""

from __future__ import annotations

import pytest
from django.db import transaction

from sandbox import finops
from sandbox.models import EmulatorSubscription
from tests.conftest import wait_until
from tests.connectors.microsoft_support import Inbox, MsClient

pytest_plugins = ["tests.connectors.microsoft_support"]

DATA = "/sandbox/finops/data"
ORDER_SERVICE = "/sandbox/finops/api/services/IcbSandboxServices/IcbSalesOrderService"
CONTRACT = {"BusinessEventId", "ControlNumber", "EventId", "EventTime", "MajorVersion", "MinorVersion"}


def post(fo: MsClient, entity: str, body: dict) -> object:
    return fo.call("POST", f"{DATA}/{entity}?cross-company=true", json={"dataAreaId": "se01", **body})


def header(fo: MsClient, number: str, **fields: str) -> None:
    response = post(
        fo, "SalesOrderHeadersV2", {"SalesOrderNumber": number, "OrderingCustomerAccountNumber": "C-1"} | fields
    )
    assert response.status_code == 201, response.text


def test_packing_slip_event_carries_the_contract_and_identifiers_but_no_lines(
    fo: MsClient, inbox: Inbox, finops_items: None
) -> None:
    """Business events overview: events are "lightweight and nimble", not "intended to carry large payloads".

    Business events developer documentation: the contract's data members are the event's own scalar fields.
    """
    EmulatorSubscription.objects.create(emulator="finops", url=inbox.url)
    header(fo, "SO-1", DefaultShippingSiteId="1")
    for item in ("A0001", "A0002"):
        response = post(
            fo, "SalesOrderLines", {"SalesOrderNumber": "SO-1", "ItemNumber": item, "OrderedSalesQuantity": 2}
        )
        assert response.status_code == 201, response.text

    response = fo.call(
        "POST", f"{ORDER_SERVICE}/postPackingSlip", json={"_dataAreaId": "se01", "_salesOrderNumber": "SO-1"}
    )
    assert response.status_code == 200, response.text
    wait_until(lambda: len(inbox.received) == 1, timeout=15)

    event = inbox.received[0]["body"]
    assert CONTRACT <= set(event)
    assert (event["SalesOrderNumber"], event["BusinessEventLegalEntity"]) == ("SO-1", "SE01")
    assert event["PackingSlipNumber"].startswith("PS")
    assert "Lines" not in event
    # Nothing in the event is a record set: at most the header's list of parent subjects (text).
    assert all(isinstance(v, str) for v in event["ParentContextRecordSubjects"])
    assert not [name for name, value in event.items() if isinstance(value, dict)]


@pytest.mark.django_db
def test_an_event_field_that_holds_lines_is_refused() -> None:
    """Business events developer documentation: a contract holds scalar data members, never a line set."""
    with transaction.atomic(), pytest.raises(ValueError, match="Lines is not a scalar contract field"):
        finops.business_event("PurchaseOrderConfirmedBusinessEvent", "se01", {"Lines": [{"ItemNumber": "A0001"}]})


def test_a_sales_order_line_without_a_site_is_refused(fo: MsClient) -> None:
    """Sales order lines V2; "Statement posting errors due to unavailable inventory or update conflicts": Site is a
    mandatory inventory dimension, "Inventory dimension Site is mandatory and must consequently be specified."."""
    header(fo, "SO-2")  # no default site on the order

    response = post(
        fo, "SalesOrderLines", {"SalesOrderNumber": "SO-2", "ItemNumber": "A0001", "OrderedSalesQuantity": 1}
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == "An error has occurred."
    assert error["innererror"]["message"] == (
        "Write failed for table row of type 'SalesOrderLineEntity'. "
        "Infolog: Error: Inventory dimension Site is mandatory and must consequently be specified."
    )
    assert error["innererror"]["type"].endswith("AxODataWriteException")
    lines = fo.call("GET", f"{DATA}/SalesOrderLines?cross-company=true").json()["value"]
    assert lines == []


def test_a_sales_order_line_takes_its_site_and_warehouse_from_the_header(fo: MsClient, finops_items: None) -> None:
    """Sales order lines V2: a line is created after its header, whose defaults it takes when it names none."""
    header(fo, "SO-3", DefaultShippingSiteId="1", DefaultShippingWarehouseId="11")

    defaulted = post(fo, "SalesOrderLines", {"SalesOrderNumber": "SO-3", "ItemNumber": "A0001"})
    own = post(fo, "SalesOrderLines", {"SalesOrderNumber": "SO-3", "ItemNumber": "A0002", "ShippingSiteId": "2"})

    assert (defaulted.status_code, own.status_code) == (201, 201)
    assert (defaulted.json()["ShippingSiteId"], defaulted.json()["ShippingWarehouseId"]) == ("1", "11")
    assert own.json()["ShippingSiteId"] == "2"
