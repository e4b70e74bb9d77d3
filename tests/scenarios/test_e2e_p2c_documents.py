"""Prospect to cash, the documents around the account: contacts and quotes Sales → F&O, and order holds in
F&O ↔ tasks in Sales. A real worker; Sales users write to the Dataverse emulator, which sends its webhooks;
F&O users work through F&O's API and services, which raise business events.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests

from integrations.models import Message, RecordLink
from integrations.protocols.transport import DeliveryRequest
from integrations.selectors.chains import chain_for
from integrations.systems import get_connector
from sandbox.common.faults import set_faults
from sandbox.models import EmulatorRecord
from tests.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
Status = Message.Status
ACCOUNTS = "p2c-accounts-sales-to-fo"
CONTACTS = "p2c-contacts-sales-to-fo"
QUOTES = "p2c-quotes-sales-to-fo"
HOLDS = "p2c-holds-fo-to-sales-tasks"
TASKS = "p2c-tasks-sales-to-fo-holds"


@pytest.fixture
def flows(p2c_flows):
    return p2c_flows


def sales_user_saves(flows, entity_set: str, key: dict[str, Any], values: dict[str, Any], operation="upsert") -> str:
    """A Sales user saves a record in Dataverse; Dataverse's registered steps send the webhooks."""
    result = get_connector(flows[ACCOUNTS].source).deliver(
        DeliveryRequest(
            entity=entity_set, operation=operation, payload=values, key=key, idempotency_key=str(uuid.uuid4())
        )
    )
    return result.target_key


def account(flows, number: str, name: str) -> str:
    account_id = sales_user_saves(flows, "accounts", {"accountnumber": number}, {"accountnumber": number, "name": name})
    wait_until(lambda: delivered(ACCOUNTS))
    return account_id


def delivered(slug: str, count: int = 1) -> bool:
    return Message.objects.filter(flow__slug=slug, status=Status.DELIVERED).count() >= count


def fo_rows(entity: str, **data: Any) -> list[dict[str, Any]]:
    rows = EmulatorRecord.objects.filter(
        emulator="finops", entity=entity, company="se01", deleted=False, **{f"data__{k}": v for k, v in data.items()}
    )
    # Line ids are numbered at random: lines in their order on the document.
    return sorted((row.data for row in rows), key=lambda r: (r.get("LineCreationSequenceNumber") or 0, str(r)))


def test_contacts_reach_fo_as_contact_persons_of_their_accounts_customer(start_worker, flows):
    start_worker()
    account_id = account(flows, "C-300001", "Contoso Lund")

    sales_user_saves(
        flows,
        "contacts",
        {"emailaddress1": "anna.berg@contoso.example"},
        {
            "firstname": "Anna",
            "lastname": "Berg",
            "emailaddress1": "anna.berg@contoso.example",
            "jobtitle": "Buyer",
            "parentcustomerid_account@odata.bind": f"/accounts({account_id})",
        },
    )
    # A contact with no account is carried too, just not associated with a customer.
    sales_user_saves(
        flows,
        "contacts",
        {"emailaddress1": "solo@example.com"},
        {"lastname": "Solo", "emailaddress1": "solo@example.com"},
    )
    wait_until(lambda: delivered(CONTACTS, 2))

    [anna] = fo_rows("ContactPersonsV2", LastName="Berg")
    assert (anna["ContactPersonName"], anna["JobTitle"]) == ("Anna Berg", "Buyer")
    assert (anna["AssociatedContactType"], anna["AssociatedContactNumber"]) == ("Customer", "C-300001")
    assert len(anna["ContactPersonId"]) <= 20
    [solo] = fo_rows("ContactPersonsV2", LastName="Solo")
    assert "AssociatedContactNumber" not in solo
    link = RecordLink.objects.get(flow__slug=CONTACTS, target_key__contains=anna["ContactPersonId"])
    assert link.target_key == f"dataAreaId='se01',ContactPersonId='{anna['ContactPersonId']}'"


def test_a_truncated_contact_read_back_keeps_its_account_and_becomes_that_customers_contact(start_worker, flows):
    """Over 256 KB Dataverse sends the webhook without the record; the hub reads the row back, and its
    lookup must be the EntityReference a webhook carries (attributes.parentcustomerid, not only
    _parentcustomerid_value), or the contact would reach F&O as nobody's contact person."""
    start_worker()
    account_id = account(flows, "C-300009", "Contoso Malmö")

    sales_user_saves(
        flows,
        "contacts",
        {"emailaddress1": "big@contoso.example"},
        {
            "lastname": "Big",
            "emailaddress1": "big@contoso.example",
            "description": "x" * 300_000,
            "parentcustomerid_account@odata.bind": f"/accounts({account_id})",
        },
    )
    wait_until(lambda: delivered(CONTACTS))

    message = Message.objects.get(flow__slug=CONTACTS)
    assert message.headers["completed_from_source"] is True
    assert message.payload_fetched["attributes"]["parentcustomerid"] == {
        "LogicalName": "account", "Id": account_id, "Name": "Contoso Malmö"
    }  # fmt: skip
    [big] = fo_rows("ContactPersonsV2", LastName="Big")
    assert (big["AssociatedContactType"], big["AssociatedContactNumber"]) == ("Customer", "C-300009")


def quote_lines(*lines: tuple[str, int, float]) -> list[dict[str, Any]]:
    """Quote lines as quotedetail rows for a deep insert: write-in products carrying the item number."""
    return [
        {"productdescription": item, "isproductoverridden": True, "quantity": qty, "priceperunit": price}
        for item, qty, price in lines
    ]


def quote_line_id(quote_id: str, item: str) -> str:
    return EmulatorRecord.objects.get(
        emulator="dataverse",
        entity="quotedetails",
        deleted=False,
        data___quoteid_value=quote_id,
        data__productdescription=item,
    ).key


def test_a_quote_goes_to_fo_header_first_then_its_lines_and_a_revision_updates_the_lines(
    start_worker, flows, finops_items
):
    start_worker()
    account_id = account(flows, "C-300002", "Fabrikam Malmö")
    quote = {
        "quotenumber": "QUO-01001",
        "name": "Spring restock",
        "customerid_account@odata.bind": f"/accounts({account_id})",
    }
    # One POST with the lines nested (a deep insert): the quote's Create webhook finds its lines there.
    details = quote_lines(("A0001", 10, 12.5), ("B0110", 2, 64.0))
    quote_id = sales_user_saves(flows, "quotes", {}, {**quote, "quote_details": details}, operation="create")
    wait_until(lambda: delivered(QUOTES))

    [header] = fo_rows("SalesQuotationHeadersV2", SalesQuotationNumber="QUO-01001")
    assert (header["RequestingCustomerAccountNumber"], header["QuotationName"]) == ("C-300002", "Spring restock")
    assert "SalesQuotationLines" not in header
    lines = fo_rows("SalesQuotationLines", SalesQuotationNumber="QUO-01001")
    # Dataverse returns rows in primary id order, not in the order they were added: compare as a set.
    assert sorted((r["ItemNumber"], r["RequestedSalesQuantity"]) for r in lines) == [("A0001", 10), ("B0110", 2)]

    # The customer wants 25 of the first item and none of the second: the Sales user deletes one line row,
    # changes the other, then saves the quote (its Update webhook).
    sales = get_connector(flows[ACCOUNTS].source)
    sales.request("DELETE", f"{sales.api}/quotedetails({quote_line_id(quote_id, 'B0110')})")
    sales.request("PATCH", f"{sales.api}/quotedetails({quote_line_id(quote_id, 'A0001')})", json={"quantity": 25})
    sales_user_saves(flows, "quotes", {"quotenumber": "QUO-01001"}, {**quote, "name": "Spring restock, revised"})
    wait_until(lambda: delivered(QUOTES, 2))

    lines = fo_rows("SalesQuotationLines", SalesQuotationNumber="QUO-01001")
    assert [(r["ItemNumber"], r["RequestedSalesQuantity"]) for r in lines] == [("A0001", 25)]
    assert len(fo_rows("SalesQuotationHeadersV2", SalesQuotationNumber="QUO-01001")) == 1


def fo_order_on_hold(flows, number: str, hold_code: str = "Credit") -> dict[str, Any]:
    """An F&O order exists, then an F&O user puts it on hold (F&O raises SalesOrderHoldPlacedBusinessEvent)."""
    fo = get_connector(flows[TASKS].target)
    fo.deliver(
        DeliveryRequest(
            entity="SalesOrderHeadersV2",
            operation="upsert",
            payload={"OrderingCustomerAccountNumber": "C-400001"},
            key={"SalesOrderNumber": number},
            idempotency_key=number,
            company="SE01",
        )
    )
    return fo.call_service(
        "IcbSandboxServices/IcbSalesOrderService/placeHold",
        {"_dataAreaId": "se01", "_salesOrderNumber": number, "_holdCode": hold_code, "_holdReason": "Credit check"},
    )


def task_of(number: str, hold_code: str = "Credit") -> EmulatorRecord:
    return EmulatorRecord.objects.get(
        emulator="dataverse", entity="tasks", data__icb_externalkey=f"SE01|{number}|{hold_code}"
    )


def hold(number: str, hold_code: str = "Credit") -> dict[str, Any]:
    [row] = fo_rows("SalesOrderHolds", SalesOrderNumber=number, HoldCode=hold_code)
    return row


def complete_task(flows, number: str, hold_code: str = "Credit") -> None:
    sales_user_saves(
        flows,
        "tasks",
        {"icb_externalkey": f"SE01|{number}|{hold_code}"},
        {"statecode": 1, "statuscode": 5},
        operation="update",
    )


def test_an_fo_hold_becomes_a_sales_task_and_completing_the_task_clears_the_hold(start_worker, flows):
    start_worker()

    fo_order_on_hold(flows, "SO-H-1")
    wait_until(lambda: delivered(HOLDS))

    task = task_of("SO-H-1").data
    assert task["subject"] == "Order SO-H-1 on hold: Credit check"
    assert task["statecode"] == 0
    assert hold("SO-H-1")["IsCleared"] is False
    # Our own write of the task fires Dataverse's steps too: nothing of it reaches F&O.
    assert not Message.objects.filter(flow__slug=TASKS, status=Status.DELIVERED).exists()

    complete_task(flows, "SO-H-1")
    wait_until(lambda: delivered(TASKS))

    cleared = hold("SO-H-1")
    assert cleared["IsCleared"] is True
    assert cleared["ClearedBy"] == "icbridge (Sales task completed)"
    held = Message.objects.get(flow__slug=HOLDS)
    chain = chain_for(held.correlation_id)
    assert [(step.flow.slug, step.state) for step in chain.steps] == [(HOLDS, "delivered"), (TASKS, "delivered")]
    assert Message.objects.get(flow__slug=TASKS, status=Status.DELIVERED).correlation_id == held.correlation_id


def test_two_holds_on_one_order_are_two_records_two_tasks_and_each_task_clears_its_own_hold(start_worker, flows):
    """A hold is keyed by its order and hold code (the flow's record key pointers /SalesOrderNumber,/HoldCode):
    a second hold of the same order is a record of its own, not an update of the first one's task."""
    start_worker()
    fo_order_on_hold(flows, "SO-H-5", "Credit")
    wait_until(lambda: delivered(HOLDS))
    fo_order_on_hold(flows, "SO-H-5", "Pricing")
    wait_until(lambda: delivered(HOLDS, 2))

    assert task_of("SO-H-5", "Credit").key != task_of("SO-H-5", "Pricing").key
    assert set(RecordLink.objects.filter(flow__slug=HOLDS).values_list("source_key", flat=True)) == {
        "SO-H-5|Credit",
        "SO-H-5|Pricing",
    }
    complete_task(flows, "SO-H-5", "Pricing")
    wait_until(lambda: delivered(TASKS))

    assert hold("SO-H-5", "Pricing")["IsCleared"] is True
    assert hold("SO-H-5", "Credit")["IsCleared"] is False
    assert task_of("SO-H-5", "Credit").data["statecode"] == 0


def test_redelivered_hold_event_and_task_webhook_change_nothing_twice(start_worker, flows):
    start_worker()
    fo_order_on_hold(flows, "SO-H-2")
    wait_until(lambda: delivered(HOLDS))
    complete_task(flows, "SO-H-2")
    wait_until(lambda: delivered(TASKS))
    hub = flows[HOLDS].source.base_url.split("/sandbox/")[0]

    # F&O resends the hold event (same EventId) after a lost acknowledgement.
    event = Message.objects.get(flow__slug=HOLDS)
    again = requests.post(f"{hub}/api/events/finops/{HOLDS}", json=event.payload_in, timeout=10)

    assert again.json()["duplicate"] is True
    assert EmulatorRecord.objects.filter(emulator="dataverse", entity="tasks").count() == 1
    assert Message.objects.filter(flow__slug=TASKS, status=Status.DELIVERED).count() == 1
    assert hold("SO-H-2")["IsCleared"] is True


def test_fo_outage_while_clearing_a_hold_ends_with_the_hold_cleared_after_recovery(start_worker, flows):
    start_worker()
    fo_order_on_hold(flows, "SO-H-3")
    wait_until(lambda: delivered(HOLDS))
    set_faults("finops", down=True)

    complete_task(flows, "SO-H-3")
    wait_until(lambda: Message.objects.filter(flow__slug=TASKS, status=Status.RETRYING).exists())
    assert hold("SO-H-3")["IsCleared"] is False
    set_faults("finops", down=False)
    wait_until(lambda: delivered(TASKS), sweep=True)

    assert hold("SO-H-3")["IsCleared"] is True
    message = Message.objects.get(flow__slug=TASKS, status=Status.DELIVERED)
    assert "retry" in message.attempt_set.values_list("outcome", flat=True)
    assert chain_for(message.correlation_id).state == "complete"


def test_a_hold_whose_event_never_came_is_found_by_reconciliation_and_becomes_its_task(start_worker, flows):
    """The holds flow lists SalesOrderHolds (options.listing), each hold read as the hold-placed event that
    would have announced it and keyed as those events are (by SalesOrderNumber): a lost event is found."""
    from monitoring.services import reconciliation
    from sandbox.models import EmulatorSubscription

    EmulatorSubscription.objects.filter(emulator="finops").update(enabled=False)
    fo_order_on_hold(flows, "SO-H-9")
    EmulatorSubscription.objects.filter(emulator="finops").update(enabled=True)

    run = reconciliation.reconciliation_run(flow=flows[HOLDS])
    missing = run.discrepancies.get()
    assert (missing.kind, missing.source_key) == ("missing_from_hub", "SO-H-9|Credit")

    start_worker()
    reconciliation.discrepancies_repair(discrepancies=run.discrepancies.all(), actor=None)
    wait_until(lambda: delivered(HOLDS))

    task = task_of("SO-H-9").data
    assert (task["subject"], task["statecode"]) == ("Order SO-H-9 on hold: Credit check", 0)
    assert reconciliation.reconciliation_run(flow=flows[HOLDS]).totals["source_pass"]["missing_from_hub"] == 0
