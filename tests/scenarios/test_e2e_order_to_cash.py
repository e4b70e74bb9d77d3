"""Order to cash end to end: D365 (Dataverse emulator) ↔ S/4HANA emulator, with a real worker.

Accounts become business partners (and S/4's events about them are recognised as our own echo),
a D365 order becomes one S/4 deep insert with items through value maps and the conditional order
type, and S/4's delivery and billing documents come back to the D365 order's chain.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest
import requests

from integrations.models import Flow, Message, RecordLink
from integrations.protocols.transport import DeliveryRequest
from integrations.scenarios import traffic
from integrations.scenarios.install import templates_install
from integrations.scenarios.templates.builders import SANDBOX_UOMS
from integrations.selectors.chains import chain_for
from integrations.systems import get_connector
from sandbox import dataverse
from sandbox.common.faults import clear_faults, set_faults
from sandbox.models import EmulatorRecord, EmulatorSubscription
from sandbox.s4hana.pricing import PRICE_CONDITIONS
from tests.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
Status = Message.Status
ACCOUNTS, BP_BACK = "o2c-accounts-d365-to-s4", "o2c-bp-s4-to-d365"
ORDERS, DELIVERIES, BILLING = "o2c-orders-d365-to-s4", "o2c-deliveries-s4-to-d365", "o2c-billing-s4-to-d365"


@pytest.fixture
def hub(live_server):
    templates_install(name="order_to_cash", base_url=live_server.url)
    Flow.objects.all().update(retry_policy={"max_attempts": 15, "backoff": {"1": 1}, "jitter": 0})
    yield live_server.url
    clear_faults()
    dataverse.reset()  # no webhook of this test may still be on its way when the next one starts


def done(slug: str, status: str = Status.DELIVERED, count: int = 1) -> bool:
    return Message.objects.filter(flow__slug=slug, status=status).count() >= count


def s4_document(hub: str, operation: str, sales_order: str) -> None:
    """Post the follow-on document in S/4 (delivery with goods issue, billing), as a clerk would."""
    response = requests.post(
        f"{hub}/sandbox/s4hana/emulator/{operation}", json={"SalesOrder": sales_order}, auth=("ICBRIDGE", "sandbox")
    )
    assert response.status_code < 300, response.text


def test_d365_order_reaches_s4_and_its_delivery_and_billing_come_back_as_one_chain(start_worker, hub):
    start_worker()

    report = traffic.sales_orders(count=1, template="order_to_cash", seed=3)
    assert report.failed == []
    wait_until(lambda: done(ORDERS), sweep=True)  # the order may overtake its account: retried

    order_message = Message.objects.get(flow__slug=ORDERS)
    sales_order = order_message.target_record_key
    order = get_connector(order_message.flow.target).fetch(
        entity="API_SALES_ORDER_SRV/A_SalesOrder", key={"SalesOrder": sales_order}
    )
    bp = RecordLink.objects.get(flow__slug=ACCOUNTS).target_key
    assert order["SoldToParty"] == bp
    assert order["PurchaseOrderByCustomer"] == report.created[0]
    assert order["SalesOrderType"] == ("ZOR" if float(order["TotalNetAmount"] or 0) > 50000 else "OR")
    items = EmulatorRecord.objects.filter(
        emulator="s4hana", entity__endswith="A_SalesOrderItem", data__SalesOrder=sales_order
    )
    assert items.exists()
    assert {item.data["RequestedQuantityUnit"] for item in items} <= {"PC", "BOX", "KG", "M"}
    # S/4 prices the items from its condition records (sandbox.s4hana.pricing); the hub sends no amounts.
    d365_order_id = EmulatorRecord.objects.get(
        emulator="dataverse", entity="salesorders", data__ordernumber=report.created[0]
    ).key
    lines = [
        row.data
        for row in EmulatorRecord.objects.filter(
            emulator="dataverse", entity="salesorderdetails", data___salesorderid_value=d365_order_id
        )
    ]
    assert len(lines) == items.count()
    expected = sum(PRICE_CONDITIONS[line["productdescription"]] * Decimal(str(line["quantity"])) for line in lines)
    assert expected > 0
    assert Decimal(order["TotalNetAmount"]) == expected
    assert sum(Decimal(item.data["NetAmount"]) for item in items) == expected

    s4_document(hub, "outbound-deliveries", sales_order)
    wait_until(lambda: done(DELIVERIES))
    s4_document(hub, "billing-documents", sales_order)
    wait_until(lambda: done(BILLING))
    # Our update of the D365 order with its delivery fires its salesorder webhook: skipped as our echo.
    wait_until(lambda: done(ORDERS, Status.SKIPPED))
    echo = Message.objects.get(flow__slug=ORDERS, status=Status.SKIPPED)
    assert echo.last_error.startswith(f"Echo of our write by flow '{DELIVERIES}'")
    assert echo.payload_in["attributes"]["icb_deliverydocument"].startswith("8")
    assert Message.objects.filter(flow__slug=ORDERS).count() == 2

    d365_order = EmulatorRecord.objects.get(
        emulator="dataverse", entity="salesorders", data__ordernumber=report.created[0]
    )
    assert d365_order.data["icb_deliverydocument"].startswith("8")
    invoice = EmulatorRecord.objects.get(emulator="dataverse", entity="invoices")
    assert invoice.data["icb_salesordernumber"] == report.created[0]
    assert invoice.data["icb_accountingdocument"]
    assert Decimal(str(invoice.data["totalamount"])) == expected  # the billing document's TotalNetAmount
    chain = chain_for(order_message.correlation_id)
    assert [(step.flow.slug, step.state) for step in chain.steps] == [
        (ORDERS, "delivered"),
        (DELIVERIES, "delivered"),
        (BILLING, "delivered"),
    ]
    assert chain.state == "complete"


def test_an_order_with_two_detail_rows_reaches_s4_with_both_items(start_worker, hub):
    """The order's webhook names only the order; the flow reads its salesorderdetail rows (options.fetch) and
    S/4 gets one item per row, with the unit through the value map."""
    start_worker()
    sales = Flow.objects.select_related("source").get(slug=ACCOUNTS).source
    account_id = traffic.dataverse_record(
        system=sales,
        entity_set="accounts",
        key={"accountnumber": "C-777001"},
        values={"accountnumber": "C-777001", "name": "Adatum Lund"},
    )
    wait_until(lambda: done(ACCOUNTS))
    lines = [
        {"productdescription": "A0001", "quantity": 4, "uomid@odata.bind": f"/uoms({SANDBOX_UOMS['pcs']})"},
        {"productdescription": "B0110", "quantity": 2, "uomid@odata.bind": f"/uoms({SANDBOX_UOMS['box']})"},
    ]
    order = {
        "ordernumber": "ORD-777001",
        "name": "Two lines",
        "customerid_account@odata.bind": f"/accounts({account_id})",
        "order_details": [{**line, "isproductoverridden": True} for line in lines],
    }
    traffic.dataverse_record(system=sales, entity_set="salesorders", key={}, values=order)
    wait_until(lambda: done(ORDERS))

    sales_order = Message.objects.get(flow__slug=ORDERS).target_record_key
    items = EmulatorRecord.objects.filter(
        emulator="s4hana", entity__endswith="A_SalesOrderItem", data__SalesOrder=sales_order
    )
    assert sorted(
        (i.data["Material"], Decimal(str(i.data["RequestedQuantity"])), i.data["RequestedQuantityUnit"]) for i in items
    ) == [("A0001", Decimal(4), "PC"), ("B0110", Decimal(2), "BOX")]
    expected = PRICE_CONDITIONS["A0001"] * 4 + PRICE_CONDITIONS["B0110"] * 2
    assert sum(Decimal(item.data["NetAmount"]) for item in items) == expected


def test_business_partner_event_caused_by_our_write_is_skipped_as_echo(start_worker, hub):
    start_worker()

    traffic.sales_orders(count=1, template="order_to_cash", seed=4)
    wait_until(lambda: done(BP_BACK, Status.SKIPPED))

    echo = Message.objects.get(flow__slug=BP_BACK)
    assert echo.last_error.startswith(f"Echo of our write by flow '{ACCOUNTS}'")
    assert (
        not EmulatorRecord.objects.filter(emulator="dataverse", entity="accounts")
        .exclude(data__accountnumber=RecordLink.objects.get(flow__slug=ACCOUNTS).target_key)
        .exists()
    )


def test_s4_outage_in_the_middle_of_the_chain_completes_after_recovery(start_worker, hub):
    start_worker()
    traffic.sales_orders(count=1, template="order_to_cash", seed=5)
    wait_until(lambda: done(ORDERS), sweep=True)
    sales_order = Message.objects.get(flow__slug=ORDERS).target_record_key
    s4_document(hub, "outbound-deliveries", sales_order)
    set_faults("s4hana", down=True)  # the delivery event is in; reading the delivery fails

    wait_until(lambda: done(DELIVERIES, Status.RETRYING))
    set_faults("s4hana", down=False)
    wait_until(lambda: done(DELIVERIES), sweep=True)

    delivery = Message.objects.get(flow__slug=DELIVERIES)
    assert delivery.correlation_id == Message.objects.get(flow__slug=ORDERS, status=Status.DELIVERED).correlation_id
    assert "retry" in delivery.attempt_set.values_list("outcome", flat=True)


def test_an_s4_partner_written_into_d365_comes_back_by_webhook_as_an_echo_and_a_sales_edit_goes_to_s4(
    start_worker, hub
):
    start_worker()
    flows = {flow.slug: flow for flow in Flow.objects.select_related("source", "target")}
    # An S/4 user creates a business partner; S/4's event brings it to D365 as an account
    get_connector(flows[BP_BACK].source).deliver(
        DeliveryRequest(
            entity="API_BUSINESS_PARTNER/A_BusinessPartner",
            operation="create",
            payload={"BusinessPartner": "1000777", "BusinessPartnerCategory": "2", "OrganizationBPName1": "Proseware"},
            key={},
            idempotency_key=str(uuid.uuid4()),
        )
    )
    wait_until(lambda: done(BP_BACK))
    account = EmulatorRecord.objects.get(emulator="dataverse", entity="accounts", data__accountnumber="1000777")

    # Dataverse's webhook about our write reaches the account flow, which skips it as our echo
    wait_until(lambda: done(ACCOUNTS, Status.SKIPPED))
    echo = Message.objects.get(flow__slug=ACCOUNTS)
    assert echo.last_error.startswith(f"Echo of our write by flow '{BP_BACK}'")
    assert (echo.source_record_key, echo.headers["x-ms-dynamics-request-name"]) == (account.key, "Create")

    # A Sales user renames the account: carried to S/4 (D365 owns accounts), whose event is our echo in turn
    traffic.dataverse_record(
        system=flows[ACCOUNTS].source,
        entity_set="accounts",
        key={"accountnumber": "1000777"},
        values={"name": "Proseware Inc"},
    )
    wait_until(lambda: done(ACCOUNTS))
    bp = get_connector(flows[BP_BACK].source).fetch(
        entity="API_BUSINESS_PARTNER/A_BusinessPartner", key={"BusinessPartner": "1000777"}
    )
    assert bp["OrganizationBPName1"] == "Proseware Inc"
    wait_until(lambda: done(BP_BACK, Status.SKIPPED))
    assert Message.objects.get(flow__slug=BP_BACK, status=Status.SKIPPED).last_error.startswith(
        f"Echo of our write by flow '{ACCOUNTS}'"
    )
    assert Message.objects.filter(flow__slug=ACCOUNTS).count() == 2
    assert EmulatorRecord.objects.get(pk=account.pk).data["name"] == "Proseware Inc"


def test_redelivered_sales_webhook_and_s4_event_create_no_second_record_anywhere(start_worker, hub):
    start_worker()
    report = traffic.sales_orders(count=1, template="order_to_cash", seed=5)
    wait_until(lambda: done(ORDERS), sweep=True)
    order_message = Message.objects.get(flow__slug=ORDERS, status=Status.DELIVERED)
    s4_document(hub, "outbound-deliveries", order_message.target_record_key)
    s4_document(hub, "billing-documents", order_message.target_record_key)
    wait_until(lambda: done(BILLING))

    # Dataverse sends the order's step execution again; S/4's Event Mesh redelivers the billing event.
    [sent] = EmulatorRecord.objects.filter(
        emulator="dataverse", entity="$webhook", data__id=order_message.source_record_key, data__message="Create"
    )
    step = EmulatorSubscription.objects.get(pk=sent.data["subscription"])
    webhook = requests.post(
        step.url, data=json.dumps(sent.data["body"]), headers={**sent.data["headers"], **step.headers}, timeout=10
    )
    billing = Message.objects.get(flow__slug=BILLING)
    event = requests.post(
        f"{hub}/api/events/sap/{BILLING}",
        json=billing.payload_in,
        headers={"Content-Type": "application/cloudevents+json"},
        timeout=10,
    )

    assert webhook.json() == {"message_id": order_message.pk, "duplicate": True}
    assert event.json()["duplicate"] is True
    assert Message.objects.filter(flow__slug=BILLING).count() == 1
    orders_in_s4 = EmulatorRecord.objects.filter(
        emulator="s4hana", entity__endswith="A_SalesOrder", data__PurchaseOrderByCustomer=report.created[0]
    )
    assert orders_in_s4.count() == 1
    assert EmulatorRecord.objects.filter(emulator="dataverse", entity="invoices").count() == 1


def test_an_initial_load_of_the_business_partner_flow_brings_existing_partners_to_d365(start_worker, hub):
    """S/4 events carry only the key and the flow fetches the partner (options.fetch): a load lists the
    partners and stores each as the event naming it, so the fetch and the mapping run as for a live event."""
    from integrations.bulk import load
    from tests.bulk.test_initial_load import run_pages

    flows = {flow.slug: flow for flow in Flow.objects.select_related("source", "target")}
    EmulatorSubscription.objects.update(enabled=False)  # partners that exist before go-live: no event
    for number, name in (("1000881", "Litware"), ("1000882", "Tailspin")):
        get_connector(flows[BP_BACK].source).deliver(
            DeliveryRequest(
                entity="API_BUSINESS_PARTNER/A_BusinessPartner",
                operation="create",
                key={},
                payload={"BusinessPartner": number, "BusinessPartnerCategory": "2", "OrganizationBPName1": name},
                idempotency_key=str(uuid.uuid4()),
            )  # fmt: skip
        )
    EmulatorSubscription.objects.update(enabled=True)
    start_worker()

    run = run_pages(
        load.load_start(flow=flows[BP_BACK])  # the entity and key are those its fetch rule reads
    )
    wait_until(lambda: done(BP_BACK, count=2))

    assert (run.written, run.failed) == (2, 0)
    names = {
        record.data["accountnumber"]: record.data["name"]
        for record in EmulatorRecord.objects.filter(emulator="dataverse", entity="accounts")
    }
    assert (names["1000881"], names["1000882"]) == ("Litware", "Tailspin")
    loaded = Message.objects.filter(flow__slug=BP_BACK).first()
    assert loaded.payload_in["data"] == {"BusinessPartner": loaded.source_record_key}


def test_a_partner_s4_never_announced_is_found_by_reconciliation_and_repaired(start_worker, hub):
    """The shipped flow names no entity to list: its first fetch rule reads A_BusinessPartner by the event's
    data.BusinessPartner, so reconciliation's source pass lists that entity, keyed as the events key it."""
    from monitoring.services import reconciliation

    flow = Flow.objects.select_related("source", "target").get(slug=BP_BACK)
    EmulatorSubscription.objects.update(enabled=False)  # an event lost on its way: the hub never heard of it
    get_connector(flow.source).deliver(
        DeliveryRequest(
            entity="API_BUSINESS_PARTNER/A_BusinessPartner",
            operation="create",
            key={},
            payload={"BusinessPartner": "1000991", "BusinessPartnerCategory": "2", "OrganizationBPName1": "Proseware"},
            idempotency_key=str(uuid.uuid4()),
        )  # fmt: skip
    )
    EmulatorSubscription.objects.update(enabled=True)

    run = reconciliation.reconciliation_run(flow=flow)
    missing = run.discrepancies.get()
    assert run.totals["source_pass"]["entity"] == "API_BUSINESS_PARTNER/A_BusinessPartner"
    assert (missing.kind, missing.source_key) == ("missing_from_hub", "1000991")

    start_worker()
    assert reconciliation.discrepancies_repair(discrepancies=run.discrepancies.all(), actor=None) == 1
    wait_until(lambda: done(BP_BACK))

    account = EmulatorRecord.objects.get(emulator="dataverse", entity="accounts", data__accountnumber="1000991")
    assert account.data["name"] == "Proseware"
    again = reconciliation.reconciliation_run(flow=flow)
    assert (again.checked, again.matched, again.discrepancies_count) == (1, 1, 0)
