"""Deletes end to end: a record deleted in Sales is deleted, blocked or deactivated at F&O and S/4.

Sales users delete rows in the Dataverse emulator, whose Delete webhook steps (installed with the
templates) post the RemoteExecutionContext to the hub; a poll flow reads deletions from change
tracking ($deletedEntity). A real worker carries them; the emulators are the targets.
"""

from __future__ import annotations

import uuid

import pytest

from integrations.models import Flow, Message, RecordLink
from integrations.pipeline.ingest import message_ingest
from integrations.pipeline.prepare import content_hash
from integrations.polling.poll import flow_poll
from integrations.protocols.transport import DeliveryRequest
from integrations.scenarios import traffic
from integrations.scenarios.install import templates_install
from sandbox import dataverse
from sandbox.common.faults import clear_faults
from sandbox.models import EmulatorRecord, EmulatorSubscription
from tests.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
Status = Message.Status
ACCOUNTS = "p2c-accounts-sales-to-fo"
O2C_ACCOUNTS, O2C_ORDERS = "o2c-accounts-d365-to-s4", "o2c-orders-d365-to-s4"


@pytest.fixture
def o2c(live_server):
    templates_install(name="order_to_cash", base_url=live_server.url)
    Flow.objects.all().update(retry_policy={"max_attempts": 15, "backoff": {"1": 1}, "jitter": 0})
    yield {flow.slug: flow for flow in Flow.objects.select_related("source", "target")}
    clear_faults()
    dataverse.reset()


def sales_account(flow: Flow, number: str, name: str) -> str:
    return traffic.dataverse_record(
        system=flow.source,
        entity_set="accounts",
        key={"accountnumber": number},
        values={"accountnumber": number, "name": name},
    )


def sales_delete(flow: Flow, entity_set: str, record_id: str) -> None:
    """A Sales user deletes the row; Dataverse's Delete step posts the event to the hub."""
    traffic.sales_user(flow.source).deliver(
        DeliveryRequest(
            entity=entity_set,
            operation="delete",
            payload={},
            key={},
            idempotency_key=str(uuid.uuid4()),
            target_key=record_id,
        )
    )


def delete_delivered(slug: str) -> bool:
    return Message.objects.filter(flow__slug=slug, payload_in__event="Delete", status=Status.DELIVERED).exists()


def fo_customer(number: str) -> EmulatorRecord:
    return EmulatorRecord.objects.get(emulator="finops", entity="CustomersV3", company="se01", key=number)


@pytest.mark.parametrize(
    ("policy", "deleted", "on_hold"),
    [
        (None, False, "All"),  # the template's: block, the customer is put on hold
        ({"action": "delete"}, True, None),
        ({"action": "deactivate", "set": {"OnHoldStatus": "Never"}}, False, "Never"),
    ],
)
def test_sales_account_deleted_is_deleted_blocked_or_deactivated_at_fo_per_flow_policy(
    start_worker, p2c_flows, policy, deleted, on_hold
):
    flow = p2c_flows[ACCOUNTS]
    if policy is not None:
        Flow.objects.filter(pk=flow.pk).update(options={**flow.options, "on_delete": policy})
    start_worker()
    account_id = sales_account(flow, "C-300001", "Contoso Deleted")
    wait_until(lambda: Message.objects.filter(flow__slug=ACCOUNTS, status=Status.DELIVERED).exists())

    sales_delete(flow, "accounts", account_id)
    wait_until(lambda: delete_delivered(ACCOUNTS), sweep=True)

    message = Message.objects.get(flow__slug=ACCOUNTS, payload_in__event="Delete")
    customer = fo_customer("C-300001")
    assert customer.deleted is deleted
    assert customer.data.get("OnHoldStatus") == on_hold
    assert customer.data["OrganizationName"] == "Contoso Deleted"  # never an upsert of the pre-image
    assert message.target_record_key == "dataAreaId='se01',CustomerAccount='C-300001'"
    link = RecordLink.objects.get(flow__slug=ACCOUNTS, source_key=account_id)
    assert link.content_hash == content_hash(message.payload_out)  # the link records the delete
    assert message.payload_out["@delete"] == (policy or {"action": "block"})["action"]


def test_a_record_restored_after_its_delete_is_written_again_not_taken_as_unchanged(start_worker, p2c_flows):
    flow = p2c_flows[ACCOUNTS]
    Flow.objects.filter(pk=flow.pk).update(options={**flow.options, "on_delete": {"action": "delete"}})
    start_worker()
    account_id = sales_account(flow, "C-300002", "Fabrikam Restored")
    wait_until(lambda: Message.objects.filter(flow__slug=ACCOUNTS, status=Status.DELIVERED).exists())
    created = Message.objects.get(flow__slug=ACCOUNTS, status=Status.DELIVERED)
    sales_delete(flow, "accounts", account_id)
    wait_until(lambda: delete_delivered(ACCOUNTS), sweep=True)
    assert fo_customer("C-300002").deleted is True

    # Dataverse restores the row (same id, same content): its Create comes again under a new key.
    restored, _ = message_ingest(
        flow=Flow.objects.get(pk=flow.pk),
        payload=created.payload_in,
        idempotency_key=f"{created.idempotency_key}:restored",
        source_record_key=account_id,
    )
    wait_until(lambda: Message.objects.filter(pk=restored.pk, status=Status.DELIVERED).exists(), sweep=True)
    assert fo_customer("C-300002").deleted is False


def test_a_delete_of_a_record_never_written_is_skipped_and_calls_nobody(start_worker, p2c_flows):
    flow = p2c_flows[ACCOUNTS]
    start_worker()
    message, _ = message_ingest(
        flow=flow,
        payload={"event": "Delete", "entity": "account", "id": str(uuid.uuid4()), "attributes": {}},
        idempotency_key="account:never:Delete",
        source_record_key=str(uuid.uuid4()),
    )
    wait_until(lambda: Message.objects.filter(pk=message.pk, status=Status.SKIPPED).exists())
    message.refresh_from_db()
    assert "never wrote it" in message.last_error
    assert message.attempts == 0


def test_d365_order_deleted_deletes_the_s4_order_and_a_deleted_account_blocks_its_business_partner(start_worker, o2c):
    start_worker()
    report = traffic.sales_orders(count=1, template="order_to_cash", seed=11)
    assert report.failed == []
    wait_until(lambda: Message.objects.filter(flow__slug=O2C_ORDERS, status=Status.DELIVERED).exists(), sweep=True)
    order_link = RecordLink.objects.get(flow__slug=O2C_ORDERS)
    account_link = RecordLink.objects.get(flow__slug=O2C_ACCOUNTS)
    s4_order = EmulatorRecord.objects.get(
        emulator="s4hana", entity="API_SALES_ORDER_SRV/A_SalesOrder", data__SalesOrder=order_link.target_key
    )
    assert s4_order.deleted is False

    sales_delete(o2c[O2C_ORDERS], "salesorders", order_link.source_key)
    wait_until(lambda: delete_delivered(O2C_ORDERS), sweep=True)
    s4_order.refresh_from_db()
    assert s4_order.deleted is True  # the flow's policy: delete (A_SalesOrder is deletable)

    sales_delete(o2c[O2C_ACCOUNTS], "accounts", account_link.source_key)
    wait_until(lambda: delete_delivered(O2C_ACCOUNTS), sweep=True)
    partner = EmulatorRecord.objects.get(
        emulator="s4hana",
        entity="API_BUSINESS_PARTNER/A_BusinessPartner",
        data__BusinessPartner=account_link.target_key,
    )
    # API_BUSINESS_PARTNER refuses DELETE of a partner: the flow's policy blocks it instead.
    assert (partner.deleted, partner.data["BusinessPartnerIsBlocked"]) == (False, True)


def test_a_deletion_read_from_change_tracking_is_carried_like_a_delete_step(start_worker, p2c_flows):
    template = p2c_flows[ACCOUNTS]
    EmulatorSubscription.objects.filter(emulator="dataverse").delete()  # no webhooks: change tracking only
    tracked = Flow.objects.create(
        slug="ct-accounts-to-fo",
        name="Accounts by change tracking",
        entity="account",
        source=template.source,
        target=template.target,
        company_link=template.company_link,
        trigger=Flow.Trigger.POLL,
        target_entity="CustomersV3",
        target_operation="upsert",
        target_key_fields=["dataAreaId", "CustomerAccount"],
        mapping_spec=template.mapping_spec,
        retry_policy=template.retry_policy,
        options={
            "poll": {"entity": "accounts", "key": ["accountid"]},
            "echo_of": [],
            "on_delete": {"action": "delete"},
        },
    )
    start_worker()
    account_id = sales_account(template, "C-300003", "Tailspin Tracked")
    flow_poll(flow=tracked)  # the initial load starts change tracking
    wait_until(lambda: Message.objects.filter(flow=tracked, status=Status.DELIVERED).exists())
    assert fo_customer("C-300003").deleted is False

    sales_delete(template, "accounts", account_id)
    result = flow_poll(flow=tracked)  # the delta link answers the deletion as $deletedEntity

    assert result.messages_created == 1
    wait_until(lambda: delete_delivered("ct-accounts-to-fo"), sweep=True)
    message = Message.objects.get(flow=tracked, payload_in__event="Delete")
    assert message.source_record_key == account_id
    assert fo_customer("C-300003").deleted is True
    assert flow_poll(flow=tracked).messages_created == 0  # nothing read twice
