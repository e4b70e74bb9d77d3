"""Creates without a natural key, retried after a lost answer, write one record at each target.

The sandbox fault slow_after_commit_ms makes the emulator commit the write and answer after the
hub's timeout: the first try fails as a timeout although the record is there. The retry must find
it by the reference the target keeps (F&O options.reference_field, S/4 PurchaseOrderByCustomer, a
Dataverse primary key derived from the message) and write no second one.
"""

from __future__ import annotations

import pytest

from integrations.models import Attempt, Flow, Message, System
from integrations.pipeline.ingest import message_ingest
from integrations.protocols.transport import DeliveryRequest
from integrations.scenarios.install import templates_install
from sandbox import dataverse
from sandbox.common.faults import clear_faults, set_faults
from sandbox.models import EmulatorRecord
from tests.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
Status = Message.Status
RETRY = {"max_attempts": 6, "backoff": {"1": 1}, "jitter": 0}


@pytest.fixture
def hub(live_server):
    templates_install(name="prospect_to_cash", base_url=live_server.url)
    templates_install(name="order_to_cash", base_url=live_server.url)
    yield
    clear_faults()
    dataverse.reset()


def keyless_flow(*, slug: str, source: System, target: System, entity: str, mapping: dict, **values) -> Flow:
    """A create flow whose target numbers the record: no key values to upsert by."""
    target.timeout_seconds = 1  # shorter than the emulator's late answer
    target.save()
    return Flow.objects.create(
        slug=slug,
        name=slug,
        entity="order",
        source=source,
        target=target,
        target_entity=entity,
        target_operation="create",
        mapping_spec={"fields": mapping},
        retry_policy=RETRY,
        **values,
    )


def deliver_after_a_lost_answer(flow: Flow, emulator: str, start_worker) -> Message:
    set_faults(emulator, slow_after_commit_ms=2500)
    message, _ = message_ingest(
        flow=flow, payload={"event": "Create", "attributes": {"ref": "web-1"}}, idempotency_key=f"{flow.slug}:1"
    )
    start_worker()
    wait_until(lambda: Message.objects.filter(pk=message.pk, status=Status.DELIVERED).exists(), sweep=True)
    message.refresh_from_db()
    outcomes = list(Attempt.objects.filter(message=message).order_by("number").values_list("outcome", flat=True))
    assert outcomes[0] == Attempt.Outcome.RETRY  # the first try timed out although the record was written
    assert outcomes[-1] == Attempt.Outcome.DUPLICATE  # the retry found it
    return message


def test_fo_numbered_sales_order_retried_after_a_timeout_is_found_by_its_reference(start_worker, hub):
    accounts = Flow.objects.get(slug="p2c-accounts-sales-to-fo")
    flow = keyless_flow(
        slug="web-orders-to-fo",
        source=accounts.source,
        target=accounts.target,
        entity="SalesOrderHeadersV2",
        mapping={
            "dataAreaId": {"context": "target_company", "required": True},
            "OrderingCustomerAccountNumber": {"const": "C-1"},
        },
        company_link=accounts.company_link,
        target_key_fields=["SalesOrderNumber"],  # F&O numbers it: the mapping leaves it out
        options={"reference_field": "CustomersOrderReference"},
    )

    message = deliver_after_a_lost_answer(flow, "finops", start_worker)

    reference = request_of(message).reference
    [order] = EmulatorRecord.objects.filter(emulator="finops", entity="SalesOrderHeadersV2", deleted=False)
    assert order.data["CustomersOrderReference"] == reference
    assert message.target_record_key == f"dataAreaId='se01',SalesOrderNumber='{order.data['SalesOrderNumber']}'"


def test_s4_sales_order_retried_after_a_timeout_is_found_by_purchase_order_by_customer(start_worker, hub):
    orders = Flow.objects.get(slug="o2c-orders-d365-to-s4")
    flow = keyless_flow(
        slug="web-orders-to-s4",
        source=orders.source,
        target=orders.target,
        entity="API_SALES_ORDER_SRV/A_SalesOrder",
        mapping={
            "SalesOrderType": {"const": "OR"},
            "SalesOrganization": {"const": "1710"},
            "DistributionChannel": {"const": "10"},
            "OrganizationDivision": {"const": "00"},
            "SoldToParty": {"const": "17100001"},
        },
        target_key_fields=[],
        options={"reference_field": "PurchaseOrderByCustomer"},
    )

    message = deliver_after_a_lost_answer(flow, "s4hana", start_worker)

    [order] = EmulatorRecord.objects.filter(emulator="s4hana", entity="API_SALES_ORDER_SRV/A_SalesOrder")
    assert order.data["PurchaseOrderByCustomer"] == request_of(message).reference
    assert message.target_record_key == order.data["SalesOrder"]


def test_dataverse_row_retried_after_a_timeout_is_found_by_its_client_generated_id(start_worker, hub):
    orders = Flow.objects.get(slug="o2c-orders-d365-to-s4")
    flow = keyless_flow(
        slug="s4-notes-to-dataverse",
        source=orders.target,
        target=orders.source,
        entity="accounts",
        mapping={"name": {"const": "Created once"}},
        target_key_fields=[],
        options={},
    )

    message = deliver_after_a_lost_answer(flow, "dataverse", start_worker)

    [row] = EmulatorRecord.objects.filter(emulator="dataverse", entity="accounts", deleted=False)
    assert row.data["name"] == "Created once"
    assert row.key == request_of(message).client_id == message.target_record_key


def request_of(message: Message) -> DeliveryRequest:
    """The reference names the hub derives for this message (flow + idempotency key)."""
    return DeliveryRequest(
        entity="",
        operation="create",
        payload={},
        key={},
        idempotency_key=message.idempotency_key,
        flow=message.flow.slug,
    )
