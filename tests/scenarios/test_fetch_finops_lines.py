"""F&O business events carry no lines: the hub reads them with OData after the event (options.fetch, many)."""

from __future__ import annotations

import pytest

from integrations.errors import MappingError
from integrations.models import Flow, Message, RecordLink
from integrations.pipeline.prepare import map_payload, message_fetch, message_prepare
from integrations.protocols.transport import DeliveryRequest
from integrations.scenarios.install import templates_install
from integrations.systems import get_connector
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)
PACKING_FLOW = "ic-se01-packingslip-to-dk01-receipt"
LINES = {"lines": {"field": "SalesOrderLines", "entity": "SalesOrderLines"}}


def fo_order(flow: Flow, company: str, number: str, items: list[str]) -> None:
    """A sales order with its lines in F&O, written as the order flow writes it (header, then lines)."""
    lines = [
        {"LineCreationSequenceNumber": n, "ItemNumber": item, "OrderedSalesQuantity": n * 2}
        for n, item in enumerate(items, start=1)
    ]
    header = {"OrderingCustomerAccountNumber": "IC-DK01", "DefaultShippingSiteId": "1", "SalesOrderLines": lines}
    get_connector(flow.target).deliver(
        DeliveryRequest(
            entity="SalesOrderHeadersV2",
            operation="upsert",
            payload=header,
            key={"SalesOrderNumber": number},
            idempotency_key=f"so-{company}-{number}",
            company=company,
            options=LINES,
        )
    )


def test_packing_slip_receipt_lines_are_the_orders_lines_read_after_the_event(live_server, finops_items):
    templates_install(name="intercompany", base_url=live_server.url)
    po_flow = Flow.objects.get(slug="ic-dk01-po-to-se01-so")
    fo_order(po_flow, "SE01", "DK01-PO7", ["A0001", "B0002"])
    fo_order(po_flow, "SE01", "DK01-PO8", ["C0003"])  # another order of the same company
    fo_order(po_flow, "USMF", "DK01-PO7", ["Z0009"])  # the same number in another company
    RecordLink.objects.create(
        flow=po_flow, source_key="PO7", target_key="dataAreaId='se01',SalesOrderNumber='DK01-PO7'", correlation_id="c7"
    )
    get_connector(po_flow.target).call_service(
        "IcbSandboxServices/IcbSalesOrderService/postPackingSlip",
        {"_dataAreaId": "se01", "_salesOrderNumber": "DK01-PO7"},
    )
    packing = Flow.objects.get(slug=PACKING_FLOW)
    wait_until(lambda: Message.objects.filter(flow=packing).exists(), timeout=10)
    message = Message.objects.get(flow=packing)

    receipt = map_payload(message, message_prepare(message=message).context)

    message.refresh_from_db()
    assert "Lines" not in message.payload_in  # the event stays as F&O sent it: no lines
    fetched = message.payload_fetched["fetched"]["lines"]
    assert sorted((r["dataAreaId"], r["SalesOrderNumber"], r["ItemNumber"]) for r in fetched) == [
        ("se01", "DK01-PO7", "A0001"),
        ("se01", "DK01-PO7", "B0002"),
    ]
    assert sorted((line["ItemId"], line["Qty"]) for line in receipt["VendPackingSlipTrans"]) == [
        ("A0001", "2"),
        ("B0002", "4"),
    ]
    assert receipt["PurchId"] == "PO7"


def test_an_event_without_the_company_fails_naming_where_it_was_looked_for(live_server, make_message):
    templates_install(name="intercompany", base_url=live_server.url)
    packing = Flow.objects.select_related("source").get(slug=PACKING_FLOW)
    message = make_message(
        packing, payload_in={"BusinessEventId": "SalesPackingSlipPostedBusinessEvent", "SalesOrderNumber": "S"}
    )

    with pytest.raises(MappingError, match="fetch lines: the event has no company at BusinessEventLegalEntity"):
        message_fetch(message=message)

    message.refresh_from_db()
    assert message.payload_fetched is None
