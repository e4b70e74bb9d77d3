"""Key-only events (SAP CloudEvents): the documents they name are read from S/4 before mapping."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from integrations.errors import MappingError
from integrations.models import Flow, Message, RecordLink
from integrations.pipeline.operator import message_replay
from integrations.pipeline.prepare import mapping_context, message_fetch, message_prepare
from integrations.protocols.transport import DeliveryRequest
from integrations.scenarios.install import templates_install
from integrations.scenarios.payloads import message_payload
from integrations.systems import get_connector
from sandbox.models import EmulatorRecord
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def o2c(live_server):
    templates_install(name="order_to_cash", base_url=live_server.url)
    return {flow.slug: flow for flow in Flow.objects.select_related("source", "target")}


def s4_order(flow: Flow, reference: str) -> str:
    """A sales order in S/4, as our order flow would have created it."""
    result = get_connector(flow.target).deliver(
        DeliveryRequest(
            entity="API_SALES_ORDER_SRV/A_SalesOrder",
            operation="create",
            payload={
                "SalesOrderType": "OR",
                "SalesOrganization": "1710",
                "DistributionChannel": "10",
                "OrganizationDivision": "00",
                "SoldToParty": "17100001",  # a customer of the S/4 client (sandbox.s4hana.writes.DEMO_CUSTOMERS)
                "PurchaseOrderByCustomer": reference,
                "to_Item": [{"Material": "A0001", "RequestedQuantity": "2"}],
            },
            key={"PurchaseOrderByCustomer": reference},
            idempotency_key=str(uuid.uuid4()),
        )
    )
    return result.target_key


def delivery_event(live_server, sales_order: str) -> dict:
    response = requests.post(
        f"{live_server.url}/sandbox/s4hana/emulator/outbound-deliveries",
        json={"SalesOrder": sales_order},
        auth=("ICBRIDGE", "sandbox"),
        timeout=10,
    )
    assert response.status_code < 300, response.text
    header = EmulatorRecord.objects.filter(emulator="s4hana", entity__endswith="A_OutbDeliveryHeader").get()
    return {
        "type": "sap.s4.beh.outbounddelivery.v1.OutboundDelivery.Created.v1",
        "specversion": "1.0",
        "source": "/default/sap.s4.beh/S4DCLNT100",
        "id": str(uuid.uuid4()),
        "time": timezone.now().isoformat(),
        "data": {"OutboundDelivery": header.data["DeliveryDocument"]},
    }


def test_delivery_event_reads_delivery_item_and_order_and_finds_the_orders_chain(o2c, live_server):
    orders, deliveries = o2c["o2c-orders-d365-to-s4"], o2c["o2c-deliveries-s4-to-d365"]
    sales_order = s4_order(orders, "ORD-777001")
    RecordLink.objects.create(
        flow=orders, source_key="d365-order-guid", target_key=sales_order, correlation_id="order-chain"
    )
    event = delivery_event(live_server, sales_order)
    message = Message.objects.create(flow=deliveries, idempotency_key="e1", payload_in=event, correlation_id="e1")

    prepared = message_prepare(message=message)

    message.refresh_from_db()
    assert message.payload_in == event  # the event is kept as received; what was read is beside it
    fetched = message.payload_fetched["fetched"]
    assert fetched["item"]["ReferenceSDDocument"] == sales_order
    assert fetched["order"]["PurchaseOrderByCustomer"] == "ORD-777001"
    assert fetched["delivery"]["DeliveryDocument"] == event["data"]["OutboundDelivery"]
    assert prepared.context["chain"]["order"]["source_key"] == "d365-order-guid"
    assert message.correlation_id == "order-chain"


def test_a_replay_starts_from_the_event_as_received_and_reads_the_documents_again(o2c, live_server):
    # given a delivery event whose documents were read from S/4 before mapping
    orders, deliveries = o2c["o2c-orders-d365-to-s4"], o2c["o2c-deliveries-s4-to-d365"]
    sales_order = s4_order(orders, "ORD-777002")
    RecordLink.objects.create(flow=orders, source_key="d365-order-2", target_key=sales_order, correlation_id="c-2")
    event = delivery_event(live_server, sales_order)
    original = Message.objects.create(flow=deliveries, idempotency_key="e5", payload_in=event, correlation_id="e5")
    message_prepare(message=original)
    original.refresh_from_db()
    assert original.payload_fetched["fetched"]["item"]["ReferenceSDDocument"] == sales_order

    # when an operator replays it
    replay = message_replay(message=original, actor=None, reason="resend")

    # then the copy holds the stored original event, nothing fetched, and its prepare reads S/4 again
    replay.refresh_from_db()
    assert replay.payload_in == event
    assert replay.payload_fetched is None
    prepared = message_prepare(message=replay)
    replay.refresh_from_db()
    assert replay.payload_in == event
    assert replay.payload_fetched == original.payload_fetched
    assert prepared.context["chain"]["order"]["source_key"] == "d365-order-2"


def test_fetched_documents_are_kept_so_a_retry_reads_nothing_again(o2c, live_server):
    deliveries = o2c["o2c-deliveries-s4-to-d365"]
    already = {"delivery": {"DeliveryDocument": "8"}, "item": {"ReferenceSDDocument": "1"}, "order": {"X": 1}}
    message = Message.objects.create(
        flow=deliveries,
        idempotency_key="e2",
        payload_in={"data": {"OutboundDelivery": "8"}},
        payload_fetched={"fetched": already},
    )

    assert message_fetch(message=message) == already  # no S/4 call: the document does not exist there


def test_event_naming_a_document_s4_does_not_have_fails_with_the_key(o2c):
    deliveries = o2c["o2c-deliveries-s4-to-d365"]
    message = Message.objects.create(
        flow=deliveries, idempotency_key="e3", payload_in={"data": {"OutboundDelivery": "89999999"}}
    )

    with pytest.raises(MappingError, match="89999999"):
        message_fetch(message=message)


def test_echo_is_skipped_before_anything_is_read(o2c):
    accounts, back = o2c["o2c-accounts-d365-to-s4"], o2c["o2c-bp-s4-to-d365"]
    RecordLink.objects.create(flow=accounts, source_key="acc", target_key="C-42", synced_at=timezone.now())
    event = {
        "type": "sap.s4.beh.businesspartner.v1.BusinessPartner.Changed.v1",
        "time": (timezone.now() - timedelta(seconds=1)).isoformat(),
        "data": {"BusinessPartner": "C-42"},
    }
    message = Message.objects.create(flow=back, idempotency_key="e4", payload_in=event, source_record_key="C-42")

    prepared = message_prepare(message=message)

    assert prepared.skip_reason.startswith("Echo of our write by flow 'o2c-accounts-d365-to-s4'")
    message.refresh_from_db()
    assert "fetched" not in message.payload_in
    assert message.payload_fetched is None


def test_fo_packing_slip_event_maps_to_an_ax_product_receipt_of_the_po(live_server):
    from integrations import mapping

    templates_install(name="intercompany", base_url=live_server.url)
    po_flow = Flow.objects.get(slug="ic-dk01-po-to-se01-so")
    fo = get_connector(po_flow.target)
    fo.deliver(
        DeliveryRequest(
            entity="SalesOrderHeadersV2",
            operation="upsert",
            payload={"OrderingCustomerAccountNumber": "IC-DK01", "CustomersOrderReference": "PO000042"},
            key={"SalesOrderNumber": "DK01-PO000042"},
            idempotency_key="so-42",
            company="SE01",
        )
    )
    RecordLink.objects.create(
        flow=po_flow,
        source_key="PO000042",
        target_key="dataAreaId='se01',SalesOrderNumber='DK01-PO000042'",
        correlation_id="ic-chain-42",
    )

    # SE01 posts the packing slip; F&O pushes the business event to the hub's ingress.
    fo.call_service(
        "IcbSandboxServices/IcbSalesOrderService/postPackingSlip",
        {"_dataAreaId": "se01", "_salesOrderNumber": "DK01-PO000042"},
    )
    packing = Flow.objects.get(slug="ic-se01-packingslip-to-dk01-receipt")
    wait_until(lambda: Message.objects.filter(flow=packing).exists(), timeout=10)
    message = Message.objects.get(flow=packing)

    prepared = message_prepare(message=message)
    receipt = mapping.apply(
        spec=packing.mapping_spec,
        payload=message_payload(message),
        context={**mapping_context(packing), **prepared.context},
    )

    assert receipt["PurchId"] == "PO000042"
    assert receipt["OrderAccount"] == "IV-SE01"
    assert receipt["PackingSlipId"].startswith("SE01-PS")
    assert message.correlation_id == "ic-chain-42"
