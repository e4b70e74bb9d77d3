"""Reconciliation's source pass: records at the source that never reached the hub are found and repaired."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from integrations.models import Message, RecordLink, System
from integrations.pipeline import deliver as pipeline
from integrations.protocols.transport import DeliveryRequest
from integrations.systems import get_connector
from monitoring.models import Discrepancy, ReconciliationSchedule
from monitoring.services import reconciliation
from sandbox.models import RecorderRecord

pytest_plugins = ["tests.connectors.microsoft_support"]
pytestmark = pytest.mark.django_db(transaction=True)
ORDERS = "API_SALES_ORDER_SRV/A_SalesOrder"


@pytest.fixture
def s4_flow(make_system, make_flow, recorder_system, live_server):
    """S/4 sales orders to the recorder; reconciliation lists the S/4 entity keyed by SalesOrder."""
    s4 = make_system(
        kind=System.Kind.S4HANA,
        base_url=f"{live_server.url}/sandbox/s4hana/sap/opu/odata/sap",
        auth_type=System.AuthType.BASIC,
        client_id="ICBRIDGE",
        secret="sandbox",
    )
    flow = make_flow(source=s4, target=recorder_system, target_key_fields=["SalesOrder"])
    reconciliation.schedule_save(
        schedule=ReconciliationSchedule(flow=flow, source_entity=ORDERS, source_key_field="SalesOrder")
    )
    return flow


def create_at_source(flow, number: int, *, reference: bool = True) -> None:
    """An S/4 user creates a sales order (with the customer's reference PO-<number>): no event reaches the hub."""
    get_connector(flow.source).deliver(
        DeliveryRequest(
            entity=ORDERS,
            operation="create",
            payload={
                "SalesOrderType": "OR",
                "SalesOrganization": "1710",
                "DistributionChannel": "10",
                "OrganizationDivision": "00",
                "SoldToParty": "17100001",
                **({"PurchaseOrderByCustomer": f"PO-{number}"} if reference else {}),
            },
            key={},
            idempotency_key=f"so-{number}",
        )
    )


def deliver_all(flow) -> None:
    for message in Message.objects.filter(flow=flow, status=Message.Status.RECEIVED):
        pipeline.message_process(message_id=message.pk)


def test_a_record_created_at_the_source_is_reported_repaired_once_and_then_clean(s4_flow, capsys):
    create_at_source(s4_flow, 1)

    with pytest.raises(SystemExit) as exited:
        call_command("reconcile", "--flow", s4_flow.slug)
    run = s4_flow.reconciliation_runs.first()
    missing = Discrepancy.objects.get(run=run)

    assert exited.value.code == 1
    assert "1 never reached the hub" in capsys.readouterr().out
    assert (run.missing_from_hub, missing.kind, missing.get_kind_display()) == (
        1,
        "missing_from_hub",
        "Never reached the hub",
    )
    key = missing.source_key  # S/4's normal form: the single key's value, as its events carry it
    assert key
    assert "=" not in key

    with pytest.raises(SystemExit) as exited:  # repairs queued: the record is not delivered yet
        call_command("reconcile", "--flow", s4_flow.slug, "--repair")
    assert exited.value.code == 1
    again = reconciliation.discrepancies_repair(
        discrepancies=Discrepancy.objects.filter(kind="missing_from_hub"), actor=None, reason="twice"
    )
    deliver_all(s4_flow)

    assert again == 2  # both runs' discrepancies name the same message
    assert Message.objects.filter(flow=s4_flow).count() == 1
    assert RecordLink.objects.get(flow=s4_flow).source_key == key
    assert RecorderRecord.objects.filter(entity="orders").count() == 1
    call_command("reconcile", "--flow", s4_flow.slug)  # no SystemExit: clean
    assert "1 checked, 1 matched" in capsys.readouterr().out


def test_a_record_the_flows_filter_skips_is_not_reported(s4_flow):
    s4_flow.options = {**(s4_flow.options or {}), "only_when": {"PurchaseOrderByCustomer": ["PO-1"]}}
    s4_flow.save()
    create_at_source(s4_flow, 1)
    create_at_source(s4_flow, 2)

    run = reconciliation.reconciliation_run(flow=s4_flow)

    assert run.missing_from_hub == 1
    assert run.discrepancies.get().source_values["record"]["PurchaseOrderByCustomer"] == "PO-1"
    assert run.totals["source_pass"]["skipped_by_filter"] == 1


def test_a_message_in_flight_is_not_reported(s4_flow):
    create_at_source(s4_flow, 1)
    first = reconciliation.reconciliation_run(flow=s4_flow)
    reconciliation.discrepancies_repair(discrepancies=first.discrepancies.all(), actor=None)  # queued, not delivered

    run = reconciliation.reconciliation_run(flow=s4_flow)

    assert (run.checked, run.missing_from_hub) == (0, 0)


def test_a_source_that_cannot_be_listed_is_not_checkable_with_the_reason(recorder_flow, capsys):
    call_command("reconcile", "--flow", recorder_flow.slug)

    run = recorder_flow.reconciliation_runs.get()
    out = capsys.readouterr().out
    assert run.totals["source_pass"]["checked"] is False
    # An event-driven flow names no entity and key to list (schedule source_entity/source_key_field, options.poll).
    assert "the source cannot be listed" in run.totals["source_pass"]["reason"]
    assert "source key fields" in run.totals["source_pass"]["reason"]
    assert f"{recorder_flow.slug}: source not checkable for missing records" in out
    assert "0 difference(s)" in out


def test_source_keys_are_stored_in_the_source_kinds_normal_form(make_flow, make_system):
    from integrations.pipeline.ingest import message_ingest

    dataverse = make_flow(source=make_system(kind=System.Kind.DATAVERSE))
    s4 = make_flow(source=make_system(kind=System.Kind.S4HANA))
    guid = "B5A4C1D2-0000-4000-8000-000000000001"

    webhook, _ = message_ingest(flow=dataverse, payload={}, idempotency_key="a", source_record_key="{" + guid + "}")
    loaded, _ = message_ingest(flow=dataverse, payload={}, idempotency_key="b", source_record_key=f"accountid='{guid}'")
    s4_load, _ = message_ingest(flow=s4, payload={}, idempotency_key="c", source_record_key="SalesOrder='17'")

    assert webhook.source_record_key == loaded.source_record_key == guid.lower()
    assert s4_load.source_record_key == "17"


def test_a_link_whose_last_message_deleted_the_record_is_not_counted_as_matched(recorder_flow):
    from tests.monitoring.conftest import deliver_order

    message = deliver_order(recorder_flow, "SO-1", Amount=1)
    # What prepare stores for a carried Delete (options.on_delete): the payload is the Delete marker.
    Message.objects.filter(pk=message.pk).update(payload_out={"@delete": True, "OrderNumber": "SO-1"})

    run = reconciliation.reconciliation_run(flow=recorder_flow)

    assert (run.checked, run.matched, run.discrepancies_count, run.totals["deleted"]) == (1, 0, 0, 1)


def test_a_dataverse_flow_is_listed_by_its_tables_definition(make_flow, dataverse_system, recorder_system):
    """A Dataverse webhook flow names only its table's logical name; the table's definition gives its entity set
    and primary id column ("Query table definitions using the Web API": EntitySetName, PrimaryIdAttribute), so
    the source pass lists accounts with no key configured, in the form a webhook keys them (the bare id)."""
    flow = make_flow(source=dataverse_system, target=recorder_system, entity="account")
    get_connector(dataverse_system).deliver(
        DeliveryRequest(
            entity="accounts",
            operation="upsert",
            payload={"name": "Made in Sales"},
            key={"accountnumber": "NEVER-1"},
            idempotency_key="never-1",
        )  # fmt: skip
    )

    run = reconciliation.reconciliation_run(flow=flow)

    missing = run.discrepancies.get(kind="missing_from_hub")
    record = missing.source_values["record"]  # as a webhook's Update carries it: the flows map attributes.*
    assert run.totals["source_pass"]["checked"] is True
    assert (record["event"], record["entity"], record["attributes"]["accountnumber"]) == (
        "Update",
        "account",
        "NEVER-1",
    )
    assert missing.source_key == record["id"] == record["attributes"]["accountid"]


def test_a_listed_record_without_its_key_is_counted_and_the_rest_still_checked(s4_flow, capsys):
    schedule = ReconciliationSchedule.objects.get(flow=s4_flow)
    schedule.source_key_field = "PurchaseOrderByCustomer"  # a key some orders lack
    schedule.save()
    create_at_source(s4_flow, 1)
    create_at_source(s4_flow, 2, reference=False)

    with pytest.raises(SystemExit) as exited:
        call_command("reconcile", "--flow", s4_flow.slug)

    run = s4_flow.reconciliation_runs.first()
    source_pass = run.totals["source_pass"]
    assert exited.value.code == 1
    assert (source_pass["listed"], source_pass["unkeyed"], run.missing_from_hub) == (2, 1, 1)
    assert "without key field(s) PurchaseOrderByCustomer" in source_pass["unkeyed_error"]
    assert f"{s4_flow.slug}: 1 source record(s) without their key" in capsys.readouterr().out
