"""Intercompany end to end: AX DK01 purchase order → F&O SE01 sales order → packing slip → AX receipt → invoice.

A real Celery worker, the live hub serving the AX and F&O emulators, the AX poller run as beat would.
"""

from __future__ import annotations

import pytest
import requests
from django.db import transaction

from integrations.models import CompanyLink, Flow, Message, RecordLink
from integrations.polling.poll import flow_poll
from integrations.scenarios import traffic
from integrations.scenarios.install import templates_install
from integrations.scenarios.templates.intercompany import LINK
from integrations.selectors.chains import chain_for
from integrations.systems import get_connector
from sandbox.common.faults import clear_faults, set_faults
from sandbox.models import EmulatorRecord
from tests.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
Status = Message.Status
PO_FLOW = "ic-dk01-po-to-se01-so"
PACKING_FLOW = "ic-se01-packingslip-to-dk01-receipt"
INVOICE_FLOW = "ic-se01-invoice-to-dk01-vendinvoice"


@pytest.fixture
def link(live_server) -> CompanyLink:
    templates_install(name="intercompany", base_url=live_server.url)
    # Tests wait seconds, not minutes, between attempts.
    Flow.objects.all().update(retry_policy={"max_attempts": 10, "backoff": {"1": 1}, "jitter": 0})
    link = CompanyLink.objects.select_related("system_a", "system_b").get(name=LINK)
    report = traffic.TrafficReport()
    traffic.intercompany_master_data(link=link, report=report)
    assert report.failed == []
    yield link
    clear_faults()


def ax_document(entity: str, key: str) -> dict:
    return EmulatorRecord.objects.get(emulator="ax2012", entity=entity, company="DK01", key=key).data


def fo_sales_order(number: str) -> dict:
    return EmulatorRecord.objects.get(emulator="finops", entity="SalesOrderHeadersV2", company="se01", key=number).data


def poll_orders() -> None:
    flow_poll(flow=Flow.objects.select_related("source", "company_link").get(slug=PO_FLOW))


def delivered(slug: str, count: int = 1) -> bool:
    return Message.objects.filter(flow__slug=slug, status=Status.DELIVERED).count() >= count


def fo_service(link: CompanyLink, operation: str, sales_order: str) -> dict:
    """Post a document on the F&O sales order, as an SE01 user would; F&O raises the business event."""
    return get_connector(link.system_b).call_service(
        f"IcbSandboxServices/IcbSalesOrderService/{operation}",
        {"_dataAreaId": link.company_b, "_salesOrderNumber": sales_order},
    )


def test_po_to_invoice_runs_as_one_chain_with_every_cross_reference(start_worker, link):
    start_worker()
    [po] = traffic.intercompany_orders(count=1, link=link, seed=7).created

    poll_orders()
    wait_until(lambda: delivered(PO_FLOW))
    order_link = RecordLink.objects.get(flow__slug=PO_FLOW, source_key=po)
    sales_order = f"DK01-{po}"
    assert order_link.target_key == f"dataAreaId='se01',SalesOrderNumber='{sales_order}'"
    header = fo_sales_order(sales_order)
    assert header["OrderingCustomerAccountNumber"] == "IC-DK01"
    assert header["CustomersOrderReference"] == po

    fo_service(link, "postPackingSlip", sales_order)
    wait_until(lambda: delivered(PACKING_FLOW))
    fo_service(link, "postInvoice", sales_order)
    wait_until(lambda: delivered(INVOICE_FLOW))

    receipt_key = RecordLink.objects.get(flow__slug=PACKING_FLOW).target_key
    invoice_key = RecordLink.objects.get(flow__slug=INVOICE_FLOW).target_key
    receipt = ax_document("ProductReceipt", receipt_key)
    assert receipt["fields"]["PurchId"] == po
    # The lines went to F&O's line entity after their header (no deep insert) and came back on the packing slip.
    fo_lines = EmulatorRecord.objects.filter(
        emulator="finops", entity="SalesOrderLines", company="se01", data__SalesOrderNumber=sales_order
    )
    ax_lines = ax_document("PurchaseOrder", po)["lines"]
    assert sorted(r.data["ItemNumber"] for r in fo_lines) == sorted(line["ItemId"] for line in ax_lines)
    assert sorted(line["ItemId"] for line in receipt["lines"]) == sorted(line["ItemId"] for line in ax_lines)
    # The packing slip event named the order, not its lines: the hub read them with OData after the event.
    packing = Message.objects.get(flow__slug=PACKING_FLOW)
    assert "Lines" not in packing.payload_in
    fetched = packing.payload_fetched["fetched"]["lines"]
    assert sorted(r["InventoryLotId"] for r in fetched) == sorted(r.key for r in fo_lines)
    # Every line has its site, from the order header (the company link's site; Site is mandatory in F&O).
    assert {r.data["ShippingSiteId"] for r in fo_lines} == {"1"}
    assert ax_document("VendVendInvoice", invoice_key)["fields"]["PurchId"] == po
    chain = chain_for(order_link.correlation_id)
    assert [(step.flow.slug, step.state) for step in chain.steps][:3] == [
        (PO_FLOW, "delivered"),
        (PACKING_FLOW, "delivered"),
        (INVOICE_FLOW, "delivered"),
    ]
    assert chain.state == "complete"
    chain_messages = Message.objects.filter(flow__slug__in=[PO_FLOW, PACKING_FLOW, INVOICE_FLOW])
    assert set(chain_messages.values_list("correlation_id", flat=True)) == {order_link.correlation_id}


def test_redelivered_events_create_no_second_record_anywhere(start_worker, link):
    start_worker()
    [po] = traffic.intercompany_orders(count=1, link=link, seed=8).created
    poll_orders()
    poll_orders()  # the overlap window reads the same change again
    wait_until(lambda: delivered(PO_FLOW))
    sales_order = f"DK01-{po}"
    fo_service(link, "postPackingSlip", sales_order)
    wait_until(lambda: delivered(PACKING_FLOW))
    event = Message.objects.get(flow__slug=PACKING_FLOW)

    # F&O resends the same business event (same EventId), as it does after a lost acknowledgement.
    response = requests.post(
        f"{link.system_b.base_url.split('/sandbox/')[0]}/api/events/finops/{PACKING_FLOW}", json=event.payload_in
    )

    assert response.status_code == 200
    assert response.json()["duplicate"] is True
    assert Message.objects.filter(flow__slug=PO_FLOW).count() == 1
    assert Message.objects.filter(flow__slug=PACKING_FLOW).count() == 1
    headers = EmulatorRecord.objects.filter(emulator="finops", entity="SalesOrderHeadersV2", key=sales_order)
    assert headers.count() == 1
    assert EmulatorRecord.objects.filter(emulator="ax2012", entity="ProductReceipt").count() == 1


def test_ax_outage_in_the_middle_of_the_chain_completes_after_recovery(start_worker, link):
    start_worker()
    [po] = traffic.intercompany_orders(count=1, link=link, seed=9).created
    poll_orders()
    wait_until(lambda: delivered(PO_FLOW))
    set_faults("ax2012", down=True)

    fo_service(link, "postPackingSlip", f"DK01-{po}")
    wait_until(lambda: Message.objects.filter(flow__slug=PACKING_FLOW, status=Status.RETRYING).exists())
    set_faults("ax2012", down=False)
    wait_until(lambda: delivered(PACKING_FLOW), sweep=True)

    message = Message.objects.get(flow__slug=PACKING_FLOW)
    assert list(message.attempt_set.values_list("outcome", flat=True))[-1] == "delivered"
    assert "retry" in message.attempt_set.values_list("outcome", flat=True)
    receipt = RecordLink.objects.get(flow__slug=PACKING_FLOW)
    assert ax_document("ProductReceipt", receipt.target_key)["fields"]["PurchId"] == po
    assert chain_for(message.correlation_id).steps[1].state == "delivered"


def test_mirror_fo_purchase_order_becomes_an_ax_sales_order_for_se01(start_worker, link):
    from sandbox.finops import business_event
    from sandbox.finops.model import ENTITIES
    from sandbox.finops.store import write

    start_worker()
    # The PO's line is in F&O's line entity; the event names the PO only (business events carry no lines).
    line = {"PurchaseOrderNumber": "PO-SE-0042", "LineNumber": 1, "ItemNumber": "A0001"}
    line |= {"OrderedPurchaseQuantity": 12, "PurchaseUnitSymbol": "ea", "PurchasePrice": 12.5}
    write("PurchaseOrderLinesV2", ENTITIES["PurchaseOrderLinesV2"], "se01", None, line)
    with transaction.atomic():  # the emulator numbers its events (ControlNumber) under a row lock
        event = business_event(
            "PurchaseOrderConfirmedBusinessEvent",
            "se01",
            {
                "PurchaseOrderNumber": "PO-SE-0042",
                "OrderVendorAccountNumber": "IV-DK01",
                "CurrencyCode": "EUR",
                "RequestedDeliveryDate": "2026-12-01T12:00:00Z",
            },
        )
    hub = link.system_b.base_url.split("/sandbox/")[0]

    response = requests.post(f"{hub}/api/events/finops/ic-se01-po-to-dk01-so", json=event, timeout=10)
    wait_until(lambda: delivered("ic-se01-po-to-dk01-so"))

    assert response.status_code == 202
    sales_order = ax_document("SalesOrder", RecordLink.objects.get(flow__slug="ic-se01-po-to-dk01-so").target_key)
    assert sales_order["fields"]["CustAccount"] == "IC-SE01"
    assert sales_order["fields"]["PurchOrderFormNum"] == "PO-SE-0042"
    assert sales_order["lines"][0]["ItemId"] == "A0001"
    assert sales_order["lines"][0]["SalesUnit"] == "Pcs"


def test_an_invoice_whose_event_never_came_is_found_by_reconciliation_and_repaired(start_worker, link):
    """Business events are not guaranteed to arrive (an endpoint down past F&O's retries): the invoice flow
    lists SalesInvoiceHeadersV2 (options.listing), keyed as its events are, and repairs with the row read
    as the SalesOrderInvoicedBusinessEvent that would have announced it, so the chain continues."""
    from monitoring.services import reconciliation
    from sandbox.models import EmulatorSubscription

    start_worker()
    [po] = traffic.intercompany_orders(count=1, link=link, seed=11).created
    poll_orders()
    wait_until(lambda: delivered(PO_FLOW))
    sales_order = f"DK01-{po}"
    EmulatorSubscription.objects.filter(emulator="finops").update(enabled=False)
    invoice = fo_service(link, "postInvoice", sales_order)["DocumentNumber"]
    EmulatorSubscription.objects.filter(emulator="finops").update(enabled=True)
    flow = Flow.objects.select_related("source", "target", "company_link").get(slug=INVOICE_FLOW)

    run = reconciliation.reconciliation_run(flow=flow)
    missing = run.discrepancies.get()
    assert run.totals["source_pass"]["entity"] == "SalesInvoiceHeadersV2"
    assert (missing.kind, missing.source_key) == ("missing_from_hub", invoice)  # the event's key: InvoiceNumber
    event = missing.source_values["record"]
    assert (event["LegalEntity"], event["SalesOrderNumber"], event["CustomerAccount"]) == (
        "SE01",
        sales_order,
        "IC-DK01",
    )

    assert reconciliation.discrepancies_repair(discrepancies=run.discrepancies.all(), actor=None) == 1
    wait_until(lambda: delivered(INVOICE_FLOW))

    vendor_invoice = ax_document("VendVendInvoice", RecordLink.objects.get(flow__slug=INVOICE_FLOW).target_key)
    assert (vendor_invoice["fields"]["Num"], vendor_invoice["fields"]["PurchId"]) == (invoice, po)
    again = reconciliation.reconciliation_run(flow=flow)
    assert (again.checked, again.matched, again.discrepancies_count) == (1, 1, 0)
    assert again.totals["source_pass"]["missing_from_hub"] == 0


def test_an_ax_purchase_order_not_yet_polled_is_found_by_the_source_pass_in_the_polls_key_form(link):
    """The AX flow names only its AIF service: the service's document key (PurchId) keys the listing (find
    with AifDocumentPaging), in the form getChangedKeys names it, so once polled the order is no longer missing."""
    from monitoring.services import reconciliation

    [po] = traffic.intercompany_orders(count=1, link=link, seed=13).created
    flow = Flow.objects.select_related("source", "target", "company_link").get(slug=PO_FLOW)

    run = reconciliation.reconciliation_run(flow=flow)
    assert run.totals["source_pass"]["entity"] == "PurchaseOrderService"
    assert list(run.discrepancies.values_list("kind", "source_key")) == [("missing_from_hub", po)]

    poll_orders()
    again = reconciliation.reconciliation_run(flow=flow)
    assert again.totals["source_pass"]["missing_from_hub"] == 0
    assert Message.objects.get(flow=flow).source_record_key == po


def test_initial_loads_of_the_ax_and_invoice_flows_read_the_company_links_companies(link):
    """AIF runs each call in one company and F&O numbers invoices per legal entity: a load of these flows reads
    the company link's source company (DK01, SE01), as their poll and events do, not every company."""
    from integrations.bulk import load
    from tests.bulk.test_initial_load import run_pages

    [po] = traffic.intercompany_orders(count=1, link=link, seed=17).created
    flows = {flow.slug: flow for flow in Flow.objects.select_related("source", "company_link")}

    run = run_pages(load.load_start(flow=flows[PO_FLOW]))
    invoices = load.load_start(flow=flows[INVOICE_FLOW])

    assert (run.state, run.failed, run.filters["company"]) == ("done", 0, "DK01")
    assert Message.objects.filter(flow=flows[PO_FLOW], source_record_key=po).exists()
    assert invoices.filters["company"] == "SE01"
