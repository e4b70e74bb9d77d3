"""Record keys in the target's normal form (no echo loop) and partial events completed by read-back.

Prospect to cash against the live Dataverse and F&O emulators, with a real worker.
"""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from django.apps import apps

from integrations.models import Message, RecordLink
from integrations.polling.poll import flow_poll
from integrations.scenarios import traffic
from integrations.systems import canonical_key, get_connector
from sandbox.dataverse import context as webhooks
from sandbox.models import EmulatorRecord
from tests.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
Status = Message.Status
ACCOUNTS = "p2c-accounts-sales-to-fo"
CREDIT = "p2c-customers-fo-to-sales"


def sales_account(flows, number: str, name: str, **values) -> str:
    return traffic.dataverse_record(
        system=flows[ACCOUNTS].source,
        entity_set="accounts",
        key={"accountnumber": number},
        values={"accountnumber": number, "name": name, **values},
    )


def delivered(slug: str, count: int = 1) -> bool:
    return Message.objects.filter(flow__slug=slug, status=Status.DELIVERED).count() >= count


def fo_customer(number: str) -> EmulatorRecord:
    return EmulatorRecord.objects.get(emulator="finops", entity="CustomersV3", company="se01", key=number)


def credit_change(flows, number: str) -> Message | None:
    """F&O's change feed hands the customer's row to the credit flow (as beat runs the poll)."""
    flow_poll(flow=flows[CREDIT])
    key = f"dataAreaId='se01',CustomerAccount='{number}'"
    return Message.objects.filter(flow__slug=CREDIT, source_record_key=key).order_by("-pk").first()


def test_fo_reports_of_our_create_and_of_our_update_are_echoes_and_nothing_loops_back(start_worker, p2c_flows):
    start_worker()
    sales_account(p2c_flows, "C-400001", "Litware")
    wait_until(lambda: delivered(ACCOUNTS))
    key = "dataAreaId='se01',CustomerAccount='C-400001'"
    assert RecordLink.objects.get(flow__slug=ACCOUNTS).target_key == key
    after_create = credit_change(p2c_flows, "C-400001")
    wait_until(lambda: Message.objects.filter(pk=after_create.pk, status=Status.SKIPPED).exists())

    # An update: F&O answers a PATCH with no body, so the key comes from the mapping (dataAreaId 'SE01').
    sales_account(p2c_flows, "C-400001", "Litware Nordic")
    wait_until(lambda: delivered(ACCOUNTS, 2))
    assert fo_customer("C-400001").data["OrganizationName"] == "Litware Nordic"
    assert RecordLink.objects.get(flow__slug=ACCOUNTS).target_key == key  # the form F&O answers with
    after_update = credit_change(p2c_flows, "C-400001")
    assert after_update.pk != after_create.pk
    wait_until(lambda: Message.objects.filter(pk=after_update.pk, status=Status.SKIPPED).exists())

    after_update.refresh_from_db()
    assert after_update.last_error.startswith(f"Echo of our write by flow '{ACCOUNTS}'")
    assert not Message.objects.filter(flow__slug=CREDIT, status=Status.DELIVERED).exists()  # nothing back to Sales
    assert Message.objects.filter(flow__slug=ACCOUNTS).count() == 2  # and so nothing loops


def test_reconciliation_compares_key_fields_in_the_targets_normal_form(start_worker, p2c_flows):
    from monitoring.services.reconciliation import reconciliation_run

    start_worker()
    sales_account(p2c_flows, "C-400004", "Proseware")
    wait_until(lambda: delivered(ACCOUNTS))
    assert Message.objects.get(flow__slug=ACCOUNTS).payload_out["dataAreaId"] == "SE01"  # F&O answers 'se01'

    run = reconciliation_run(flow=p2c_flows[ACCOUNTS])

    assert (run.checked, run.matched, run.different) == (1, 1, 0)


def test_migration_rewrites_links_in_the_targets_normal_form(p2c_flows):
    from importlib import import_module

    link = RecordLink.objects.create(
        flow=p2c_flows[ACCOUNTS], source_key=str(uuid.uuid4()), target_key="dataAreaId='SE01',CustomerAccount='C-1'"
    )
    back = RecordLink.objects.create(
        flow=p2c_flows[CREDIT], source_key="x", target_key="{B5A4C3D2-0000-4000-8000-00000000ABCD}"
    )

    import_module("integrations.migrations._steps").normalise_link_keys(apps, None)

    link.refresh_from_db()
    back.refresh_from_db()
    assert link.target_key == "dataAreaId='se01',CustomerAccount='C-1'"
    assert back.target_key == "b5a4c3d2-0000-4000-8000-00000000abcd"
    assert canonical_key("finops", "dataAreaId='SE01',CustomerAccount='C%201'") == (
        "dataAreaId='se01',CustomerAccount='C%201'"
    )


def test_truncated_dataverse_event_is_completed_from_the_accounts_entity_set_and_delivered(start_worker, p2c_flows):
    start_worker()
    # Over 256 KB: Dataverse drops the Target and images and flags the post (x-ms-dynamics-msg-size-exceeded).
    account_id = sales_account(p2c_flows, "C-400002", "Fabrikam Big", description="x" * 300_000)
    wait_until(lambda: delivered(ACCOUNTS))

    message = Message.objects.get(flow__slug=ACCOUNTS)
    assert message.payload_in["attributes"] == {}  # the event came without the record
    assert message.headers["completed_from_source"] is True
    assert message.payload_fetched["attributes"]["accountid"] == account_id
    assert fo_customer("C-400002").data["OrganizationName"] == "Fabrikam Big"
    # read from the entity set Dataverse names for the table (EntityDefinitions), not from "account"
    assert get_connector(p2c_flows[ACCOUNTS].source).table("account") == ("accounts", "accountid")


def test_image_less_partial_update_is_completed_by_reading_the_record_and_delivered(start_worker, p2c_flows):
    start_worker()
    account_id = sales_account(p2c_flows, "C-400003", "Northwind", telephone1="+46 40 1")
    wait_until(lambda: delivered(ACCOUNTS))
    # A user changes the phone; Dataverse stores it, and a step registered without a PostImage sends only
    # the changed attribute (no name, which the mapping requires).
    row = EmulatorRecord.objects.get(emulator="dataverse", entity="accounts", key=account_id)
    row.data = {**row.data, "telephone1": "+46 40 2", "versionnumber": row.data["versionnumber"] + 1}
    row.save(update_fields=["data"])
    caller = webhooks.Caller(
        user_id=str(uuid.uuid4()),
        business_unit_id=str(uuid.uuid4()),
        organization_id=str(uuid.uuid4()),
        organization_name="icbridgesandbox",
        organization_host="localhost",
    )
    context = webhooks.remote_execution_context(
        message="Update",
        logical_name="account",
        record_id=account_id,
        target=webhooks.entity("account", account_id, {"accountid": account_id, "telephone1": "+46 40 2"}),
        caller=caller,
        correlation_id=str(uuid.uuid4()),
        step_id=str(uuid.uuid4()),
        operation_id=str(uuid.uuid4()),
    )
    url, headers = _webhook()
    answer = requests.post(url, data=json.dumps(context), headers=headers, timeout=10)
    assert answer.status_code == 202, answer.text

    partial = Message.objects.get(pk=answer.json()["message_id"])
    assert partial.headers["partial"] is True
    wait_until(lambda: Message.objects.filter(pk=partial.pk, status=Status.DELIVERED).exists())
    partial.refresh_from_db()
    assert partial.headers["completed_from_source"] is True
    assert partial.payload_out["OrganizationName"] == "Northwind"  # read from the record, not in the event
    assert fo_customer("C-400003").data["PrimaryContactPhone"] == "+46 40 2"


def _webhook() -> tuple[str, dict[str, str]]:
    """Where and how Dataverse's registered step for the account flow posts (its URL and key header)."""
    from sandbox.models import EmulatorSubscription

    step = EmulatorSubscription.objects.filter(emulator="dataverse", url__contains=ACCOUNTS).first()
    return step.url, {"Content-Type": "application/json", **(step.headers or {})}
