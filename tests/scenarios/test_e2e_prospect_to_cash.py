"""Prospect to cash end to end: Sales (Dataverse emulator) ↔ F&O emulator, with a real worker.

Sales users write to the Dataverse emulator, whose registered webhook steps (installed with the
template) post the RemoteExecutionContext to the hub; F&O users' edits go through F&O's own API.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from integrations.models import Message, RecordLink
from integrations.pipeline.operator import message_resolve_conflict
from integrations.polling.poll import flow_poll
from integrations.protocols.transport import DeliveryRequest
from integrations.scenarios import traffic
from integrations.scenarios.templates.prospect_to_cash import COUNTRY_NAMES, UOM_IDS
from integrations.systems import get_connector
from sandbox.models import EmulatorRecord, EmulatorSubscription
from tests.conftest import fixture_path, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
Status = Message.Status
ACCOUNTS = "p2c-accounts-sales-to-fo"
CREDIT = "p2c-customers-fo-to-sales"


@pytest.fixture
def flows(p2c_flows):
    return p2c_flows


def sales_account(flows, number: str, name: str, **values) -> str:
    """A Sales user saves an account; Dataverse's webhook step posts it to the hub."""
    return traffic.dataverse_record(
        system=flows[ACCOUNTS].source,
        entity_set="accounts",
        key={"accountnumber": number},
        values={"accountnumber": number, "name": name, **values},
    )


def fo_customer(number: str) -> EmulatorRecord:
    return EmulatorRecord.objects.get(emulator="finops", entity="CustomersV3", company="se01", key=number)


def delivered(slug: str, count: int = 1) -> bool:
    return Message.objects.filter(flow__slug=slug, status=Status.DELIVERED).count() >= count


def test_sales_account_becomes_an_fo_customer_and_the_deep_link_opens_it(start_worker, flows, admin_client):
    start_worker()

    account_id = sales_account(flows, "C-100001", "Contoso Malmö", address1_city="Malmö")
    wait_until(lambda: delivered(ACCOUNTS))

    customer = fo_customer("C-100001").data
    assert (customer["OrganizationName"], customer["CustomerGroupId"], customer["AddressCity"]) == (
        "Contoso Malmö",
        "30",
        "Malmö",
    )
    link = RecordLink.objects.get(flow__slug=ACCOUNTS, source_key=account_id)
    assert link.target_key == "dataAreaId='se01',CustomerAccount='C-100001'"
    response = admin_client.get(f"/api/deeplink/{ACCOUNTS}/{account_id}")
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == "/sandbox/finops/"
    assert parse_qs(location.query) == {"cmp": ["SE01"], "mi": ["CustTable"], "CustAccount": ["C-100001"]}


def test_redelivered_webhook_creates_no_second_message_or_customer(start_worker, flows):
    start_worker()
    account_id = sales_account(flows, "C-100002", "Fabrikam")
    wait_until(lambda: delivered(ACCOUNTS))
    first = Message.objects.get(flow__slug=ACCOUNTS)

    # Dataverse sends the same step execution again (its own retry after a timeout on its side).
    [sent] = EmulatorRecord.objects.filter(emulator="dataverse", entity="$webhook", data__id=account_id)
    step = EmulatorSubscription.objects.get(pk=sent.data["subscription"])
    answer = requests.post(
        step.url, data=json.dumps(sent.data["body"]), headers={**sent.data["headers"], **step.headers}, timeout=10
    )

    assert sent.data["state"] == "succeeded"
    assert answer.status_code == 200
    assert answer.json() == {"message_id": first.pk, "duplicate": True}
    assert Message.objects.filter(flow__slug=ACCOUNTS).count() == 1
    assert EmulatorRecord.objects.filter(emulator="finops", entity="CustomersV3", key="C-100002").count() == 1


def test_edit_on_both_sides_parks_a_conflict_with_both_versions(start_worker, flows):
    start_worker()
    sales_account(flows, "C-100003", "Northwind")
    wait_until(lambda: delivered(ACCOUNTS))
    fo = get_connector(flows[ACCOUNTS].target)
    # An F&O user changes the customer's name since our last write…
    fo.deliver(
        DeliveryRequest(
            entity="CustomersV3",
            operation="update",
            payload={"OrganizationName": "Northwind Traders AB"},
            key={"CustomerAccount": "C-100003"},
            idempotency_key=str(uuid.uuid4()),
            company="SE01",
        )
    )

    # …and a Sales user changes it too: Sales owns accounts, the policy says park it for an operator.
    sales_account(flows, "C-100003", "Northwind Nordic")
    wait_until(lambda: Message.objects.filter(flow__slug=ACCOUNTS, status=Status.CONFLICT).exists())

    parked = Message.objects.get(flow__slug=ACCOUNTS, status=Status.CONFLICT)
    assert parked.payload_out["OrganizationName"] == "Northwind Nordic"
    assert parked.target_snapshot["OrganizationName"] == "Northwind Traders AB"
    assert fo_customer("C-100003").data["OrganizationName"] == "Northwind Traders AB"  # nothing overwritten

    message_resolve_conflict(message=parked, actor=None, side="source", reason="Sales owns the name")
    wait_until(lambda: Message.objects.filter(pk=parked.pk, status=Status.DELIVERED).exists())
    assert fo_customer("C-100003").data["OrganizationName"] == "Northwind Nordic"


def credit_change(flows, number: str) -> Message:
    """F&O's change feed (the poll of CustomersV3, as beat runs it) hands the customer's row to the credit flow."""
    flow_poll(flow=flows[CREDIT])
    key = f"dataAreaId='se01',CustomerAccount='{number}'"
    return Message.objects.filter(flow__slug=CREDIT, source_record_key=key).latest("pk")


def test_our_own_write_coming_back_from_fo_is_skipped_as_an_echo_but_an_fo_edit_is_carried(start_worker, flows):
    start_worker()
    sales_account(flows, "C-100004", "Litware")
    wait_until(lambda: delivered(ACCOUNTS))

    echo = credit_change(flows, "C-100004")
    wait_until(lambda: Message.objects.filter(pk=echo.pk, status=Status.SKIPPED).exists())
    echo.refresh_from_db()
    assert echo.last_error.startswith("Echo of our write by flow 'p2c-accounts-sales-to-fo'")

    get_connector(flows[ACCOUNTS].target).deliver(
        DeliveryRequest(
            entity="CustomersV3",
            operation="update",
            payload={"CreditLimit": 25000},
            key={"CustomerAccount": "C-100004"},
            idempotency_key=str(uuid.uuid4()),
            company="SE01",
        )
    )
    edit = credit_change(flows, "C-100004")
    wait_until(lambda: Message.objects.filter(pk=edit.pk, status=Status.DELIVERED).exists())
    account = EmulatorRecord.objects.get(emulator="dataverse", entity="accounts", data__accountnumber="C-100004")
    assert account.data["creditlimit"] == 25000


def fo_credit_limit(flows, number: str, limit: int) -> None:
    """An F&O user changes the customer's credit limit (F&O owns the credit side)."""
    get_connector(flows[ACCOUNTS].target).deliver(
        DeliveryRequest(
            entity="CustomersV3",
            operation="update",
            payload={"CreditLimit": limit},
            key={"CustomerAccount": number},
            idempotency_key=str(uuid.uuid4()),
            company="SE01",
        )
    )


def test_our_credit_write_into_sales_comes_back_by_webhook_as_an_echo_and_a_later_sales_edit_is_carried(
    start_worker, flows
):
    start_worker()
    account_id = sales_account(flows, "C-100005", "Wingtip")
    wait_until(lambda: delivered(ACCOUNTS))
    fo_credit_limit(flows, "C-100005", 40000)
    credit = credit_change(flows, "C-100005")
    wait_until(lambda: Message.objects.filter(pk=credit.pk, status=Status.DELIVERED).exists())

    # Dataverse's webhook step reports our update of the account; the account flow skips it as our echo
    wait_until(lambda: Message.objects.filter(flow__slug=ACCOUNTS, status=Status.SKIPPED).exists())
    echo = Message.objects.get(flow__slug=ACCOUNTS, status=Status.SKIPPED)
    assert echo.last_error.startswith(f"Echo of our write by flow '{CREDIT}'")
    assert (echo.source_record_key, echo.headers["x-ms-dynamics-request-name"]) == (account_id, "Update")
    assert echo.payload_in["attributes"]["creditlimit"] == 40000
    assert fo_customer("C-100005").data["OrganizationName"] == "Wingtip"  # nothing went back to F&O

    # A Sales user then renames the account: a change of their own, carried. F&O changed the customer since
    # our last write there, so the account flow parks it (Sales owns accounts; the template parks conflicts).
    sales_account(flows, "C-100005", "Wingtip Nordic")
    wait_until(lambda: Message.objects.filter(flow__slug=ACCOUNTS, status=Status.CONFLICT).exists())
    edit = Message.objects.get(flow__slug=ACCOUNTS, status=Status.CONFLICT)
    assert edit.source_version > echo.source_version  # a later row version than the one we wrote
    assert (edit.payload_out["OrganizationName"], edit.payload_out["CreditLimit"]) == ("Wingtip Nordic", 40000)
    message_resolve_conflict(message=edit, actor=None, side="source", reason="Sales renamed it")
    wait_until(lambda: Message.objects.filter(pk=edit.pk, status=Status.DELIVERED).exists())
    customer = fo_customer("C-100005").data
    assert (customer["OrganizationName"], customer["CreditLimit"]) == ("Wingtip Nordic", 40000)

    # …and F&O's change feed then reports our write of the rename: an echo too. Nothing loops.
    version = EmulatorRecord.objects.get(emulator="dataverse", entity="accounts", key=account_id).version
    again = credit_change(flows, "C-100005")
    wait_until(lambda: Message.objects.filter(pk=again.pk, status=Status.SKIPPED).exists())
    assert Message.objects.filter(flow__slug=ACCOUNTS).count() == 3
    assert Message.objects.filter(flow__slug=CREDIT, status=Status.DELIVERED).count() == 1
    assert EmulatorRecord.objects.get(emulator="dataverse", entity="accounts", key=account_id).version == version


def test_webhook_without_the_key_header_is_refused_and_stores_nothing(flows):
    response = requests.post(
        f"{flows[ACCOUNTS].target.base_url.split('/sandbox/')[0]}/api/webhooks/dataverse/{ACCOUNTS}",
        data=fixture_path("dataverse/webhook-contact-update-remoteexecutioncontext.json").read_bytes(),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )

    assert response.status_code == 401
    assert not Message.objects.exists()


def test_sales_order_goes_to_fo_for_the_customer_its_account_became(start_worker, flows):
    start_worker()

    report = traffic.sales_orders(count=1, template="prospect_to_cash", seed=11)
    assert report.failed == []
    wait_until(lambda: delivered("p2c-orders-sales-to-fo"), sweep=True)  # may overtake its account: retried

    [order_number] = report.created
    customer = RecordLink.objects.get(flow__slug=ACCOUNTS).target_key  # dataAreaId='se01',CustomerAccount='C-…'
    header = EmulatorRecord.objects.get(emulator="finops", entity="SalesOrderHeadersV2", key=order_number).data
    assert f"CustomerAccount='{header['OrderingCustomerAccountNumber']}'" in customer
    assert header["CustomersOrderReference"] == f"Web order {order_number.removeprefix('ORD-')}"
    # The order's salesorderdetail rows (write-in products) are the F&O order's lines.
    order_id = EmulatorRecord.objects.get(emulator="dataverse", entity="salesorders").key
    details = EmulatorRecord.objects.filter(
        emulator="dataverse", entity="salesorderdetails", data___salesorderid_value=order_id
    )
    fo_lines = EmulatorRecord.objects.filter(emulator="finops", entity="SalesOrderLines")
    assert details.exists()
    assert sorted((d.data["productdescription"], d.data["quantity"]) for d in details) == sorted(
        (line.data["ItemNumber"], line.data["OrderedSalesQuantity"]) for line in fo_lines
    )
    # Sales holds the country as text ("Denmark"); F&O refuses names, the template sends the ISO code.
    [account] = EmulatorRecord.objects.filter(emulator="dataverse", entity="accounts")
    [fo_customer] = EmulatorRecord.objects.filter(emulator="finops", entity="CustomersV3")
    assert len(account.data["address1_country"]) > 2
    assert fo_customer.data["AddressCountryRegionISOCode"] == COUNTRY_NAMES[account.data["address1_country"]]
    assert fo_customer.data["SalesCurrencyCode"] == "SEK"


def test_fo_invoice_becomes_a_read_only_copy_in_sales_and_intercompany_ones_do_not(start_worker, flows):
    start_worker()
    fo = get_connector(flows[ACCOUNTS].target)
    for number, customer in (("SO-P2C-1", "C-200001"), ("SO-IC-1", "IC-DK01")):
        fo.deliver(
            DeliveryRequest(
                entity="SalesOrderHeadersV2",
                operation="upsert",
                payload={"OrderingCustomerAccountNumber": customer},
                key={"SalesOrderNumber": number},
                idempotency_key=number,
                company="SE01",
            )
        )
        # SE01 invoices the order; F&O raises SalesOrderInvoicedBusinessEvent.
        fo.call_service(
            "IcbSandboxServices/IcbSalesOrderService/postInvoice", {"_dataAreaId": "se01", "_salesOrderNumber": number}
        )

    wait_until(lambda: delivered("p2c-invoices-fo-to-sales"))
    wait_until(lambda: Message.objects.filter(flow__slug="p2c-invoices-fo-to-sales", status=Status.SKIPPED).exists())

    [invoice] = EmulatorRecord.objects.filter(emulator="dataverse", entity="invoices")
    assert invoice.data["icb_customeraccount"] == "C-200001"
    assert invoice.data["icb_readonly"] is True
    assert invoice.data["name"].startswith("F&O invoice CIV")
    skipped = Message.objects.get(flow__slug="p2c-invoices-fo-to-sales", status=Status.SKIPPED)
    assert "CustomerAccount is 'IC-DK01'" in skipped.last_error


def fo_released_product(flows, item: str, price: float) -> None:
    """An F&O user creates or changes a released product in SE01."""
    get_connector(flows["p2c-products-fo-to-sales"].source).deliver(
        DeliveryRequest(
            entity="ReleasedProductsV2",
            operation="upsert",
            payload={"ProductName": f"Demo {item}", "SalesPrice": price, "SalesUnitSymbol": "ea"},
            key={"ItemNumber": item},
            idempotency_key=str(uuid.uuid4()),
            company="SE01",
        )
    )


def test_fo_products_reach_sales_incrementally(start_worker, flows):
    """Through the change-tracked export of the template's data project (no ModifiedDateTime at F&O)."""
    start_worker()
    for item, price in (("A0001", 12.5), ("B0110", 64.0)):
        fo_released_product(flows, item, price)

    flow_poll(flow=flows["p2c-products-fo-to-sales"])
    wait_until(lambda: delivered("p2c-products-fo-to-sales", 2))

    products = EmulatorRecord.objects.filter(emulator="dataverse", entity="products")
    assert {(p.data["productnumber"], p.data["name"], p.data["price"]) for p in products} == {
        ("A0001", "Demo A0001", 12.5),
        ("B0110", "Demo B0110", 64.0),
    }
    # The unit is a lookup, bound to its uom row (Dataverse refuses it as text) and read back as _<name>_value.
    assert {p.data["_defaultuomid_value"] for p in products} == {UOM_IDS["ea"].removeprefix("/uoms(").rstrip(")")}
    assert flow_poll(flow=flows["p2c-products-fo-to-sales"]).messages_created == 0  # nothing new since

    # An F&O user changes one price: the next export holds that product alone, and Sales gets the new price.
    fo_released_product(flows, "B0110", 59.0)
    changed = flow_poll(flow=flows["p2c-products-fo-to-sales"])
    wait_until(lambda: delivered("p2c-products-fo-to-sales", 3))
    assert changed.messages_created == 1
    assert (
        EmulatorRecord.objects.get(emulator="dataverse", entity="products", data__productnumber="B0110").data["price"]
        == 59.0
    )
    assert EmulatorRecord.objects.filter(emulator="dataverse", entity="products").count() == 2


def test_an_initial_load_of_the_accounts_flow_makes_every_existing_account_an_fo_customer(start_worker, flows):
    """Accounts that exist before go-live (no webhook fired for them) are loaded with nothing configured: the
    table's definition names the entity set and key, and each row is stored as a webhook's Update would be,
    so the shipped mapping (attributes.*) carries it to F&O."""
    from integrations.bulk import load
    from tests.bulk.test_initial_load import run_pages

    EmulatorSubscription.objects.update(enabled=False)
    for n in range(3):
        sales_account(flows, f"C-2000{n}", f"Before go-live {n}", address1_city="Aarhus")
    EmulatorSubscription.objects.update(enabled=True)
    assert not Message.objects.filter(flow__slug=ACCOUNTS).exists()
    start_worker()

    run = run_pages(load.load_start(flow=flows[ACCOUNTS]))
    wait_until(lambda: delivered(ACCOUNTS, 3))

    assert (run.entity, run.written, run.failed) == ("accounts", 3, 0)
    assert [fo_customer(f"C-2000{n}").data["OrganizationName"] for n in range(3)] == [
        f"Before go-live {n}" for n in range(3)
    ]
    assert not Message.objects.filter(flow__slug=ACCOUNTS).exclude(status=Status.DELIVERED).exists()


def test_a_sales_order_of_catalogue_products_reaches_fo_with_their_item_numbers(start_worker, flows):
    """F&O's products reach the Sales catalogue; a Sales user's order lines name those products (productid,
    not a write-in description), and the order flow reads each line's product number with $expand."""
    start_worker()
    report = traffic.TrafficReport()
    traffic.finops_items(connector=get_connector(flows["p2c-orders-sales-to-fo"].target), company="SE01", report=report)
    flow_poll(flow=flows["p2c-products-fo-to-sales"])
    wait_until(lambda: delivered("p2c-products-fo-to-sales", len(traffic.ITEMS)))

    orders = traffic.sales_orders(count=1, template="prospect_to_cash", seed=12)
    wait_until(lambda: delivered("p2c-orders-sales-to-fo"), sweep=True)

    assert (report.failed, orders.failed) == ([], [])
    products = {
        r.key: r.data["productnumber"] for r in EmulatorRecord.objects.filter(emulator="dataverse", entity="products")
    }
    details = EmulatorRecord.objects.filter(emulator="dataverse", entity="salesorderdetails")
    assert details.exists()
    assert all("productdescription" not in d.data for d in details)  # catalogue lines, no write-in
    fo_lines = EmulatorRecord.objects.filter(emulator="finops", entity="SalesOrderLines")
    assert sorted((products[d.data["_productid_value"]], d.data["quantity"]) for d in details) == sorted(
        (line.data["ItemNumber"], line.data["OrderedSalesQuantity"]) for line in fo_lines
    )


def test_an_initial_load_of_the_orders_flow_carries_orders_that_exist_before_go_live(start_worker, flows):
    """A listed order names its account as _customerid_value; a webhook carries it as an EntityReference
    (attributes.customerid), which the order flow's customer link reads: a loaded row is stored that way."""
    from integrations.bulk import load
    from tests.bulk.test_initial_load import run_pages

    EmulatorSubscription.objects.update(enabled=False)
    orders = traffic.sales_orders(count=2, template="prospect_to_cash", seed=21)
    EmulatorSubscription.objects.update(enabled=True)
    start_worker()

    run_pages(load.load_start(flow=flows[ACCOUNTS]))
    wait_until(lambda: delivered(ACCOUNTS, 2))
    run = run_pages(load.load_start(flow=flows["p2c-orders-sales-to-fo"]))
    wait_until(lambda: delivered("p2c-orders-sales-to-fo", 2), sweep=True)

    assert (orders.failed, run.written, run.failed) == ([], 2, 0)
    loaded = Message.objects.filter(flow__slug="p2c-orders-sales-to-fo").first()
    assert loaded.payload_in["attributes"]["customerid"]["Id"]
    assert "_customerid_value" not in loaded.payload_in["attributes"]
    headers = EmulatorRecord.objects.filter(emulator="finops", entity="SalesOrderHeadersV2")
    assert sorted(h.key for h in headers) == sorted(orders.created)
