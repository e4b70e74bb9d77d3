"""Saving mapping specs as versions, and what the pipeline records of them."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from integrations.models import AuditEntry, CompanyLink, MappingVersion, Message
from integrations.pipeline import deliver as pipeline
from integrations.pipeline.ingest import message_ingest
from integrations.pipeline.preview import mapping_preview
from integrations.services.mappings import flow_mapping_save

SPEC_V2 = {
    "fields": {"OrderNumber": "SalesOrderNumber", "Amount": {"path": "Amount", "type": "decimal", "precision": 2}}
}


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", password="x", is_staff=True)


def test_saving_a_spec_keeps_the_previous_version_with_who_and_when(make_flow, alice):
    flow = make_flow(mapping_spec={"fields": {"OrderNumber": "OrderNumber"}})

    version = flow_mapping_save(flow=flow, spec=SPEC_V2, actor=alice, comment="amount as decimal")

    flow.refresh_from_db()
    assert (flow.mapping_version, flow.mapping_spec) == (2, SPEC_V2)
    assert (version.version, version.created_by, version.comment) == (2, alice, "amount as decimal")
    previous = MappingVersion.objects.get(flow=flow, version=1)
    assert previous.spec == {"fields": {"OrderNumber": "OrderNumber"}}
    assert previous.comment == "in use before versioning"
    audit = AuditEntry.objects.get(action="mapping_save")
    assert (audit.actor_name, audit.object_id, audit.details["version"]) == ("alice", str(flow.pk), 2)


def test_each_save_adds_a_version_and_an_unchanged_save_adds_none(make_flow, alice):
    flow = make_flow()
    flow_mapping_save(flow=flow, spec=SPEC_V2, actor=alice)
    third = {"fields": {"OrderNumber": "SalesOrderNumber"}}

    flow_mapping_save(flow=flow, spec=third, actor=alice)
    again = flow_mapping_save(flow=flow, spec=third, actor=alice)

    assert list(flow.mapping_versions.values_list("version", flat=True)) == [3, 2, 1]
    assert again.version == 3
    assert flow.mapping_version == 3  # the caller's instance is updated too


def test_first_save_of_the_spec_already_in_use_records_it_without_a_bump(make_flow, alice):
    flow = make_flow(mapping_spec=SPEC_V2)

    version = flow_mapping_save(flow=flow, spec=SPEC_V2, actor=alice, comment="created")

    assert (version.version, version.created_by) == (1, alice)
    flow.refresh_from_db()
    assert flow.mapping_version == 1


def test_an_invalid_spec_is_refused_with_per_field_messages_and_nothing_is_saved(make_flow, alice):
    flow = make_flow()
    bad = {
        "fields": {
            "A": "=nosuch(x)",
            "B": {"path": "Lines[x]"},
            "C": {"path": "u", "lookup": {"map": "missing-map"}},
            "D": {"const": "abc", "type": "decimal"},
        }
    }

    with pytest.raises(ValidationError) as refused:
        flow_mapping_save(flow=flow, spec=bad, actor=alice)

    messages = refused.value.messages
    assert [m.split(":")[0] for m in messages] == ["field 'A'", "field 'B'", "field 'D'"]
    assert "unknown function nosuch()" in messages[0]
    assert not MappingVersion.objects.filter(flow=flow).exists()
    assert not AuditEntry.objects.exists()


def test_a_missing_value_map_is_refused_naming_the_field(make_flow, alice):
    flow = make_flow()

    with pytest.raises(ValidationError) as refused:
        flow_mapping_save(
            flow=flow,
            spec={"fields": {"Lines": {"each": "L", "fields": {"Unit": {"path": "u", "lookup": "uom"}}}}},
            actor=alice,
        )

    assert refused.value.messages == ["field 'Lines[].Unit': value map 'uom' does not exist"]


def test_preview_uses_the_company_link_context_and_sends_nothing(make_flow, make_system):
    source, target = make_system(), make_system()
    link = CompanyLink.objects.create(
        name="DK01-SE01",
        system_a=source,
        company_a="DK01",
        system_b=target,
        company_b="SE01",
        customer_in_b_for_a="IC-DK01",
    )
    flow = make_flow(source=source, target=target, company_link=link)
    draft = {
        "fields": {"dataAreaId": "$ctx.target_company", "Customer": "$ctx.target_customer_for_source", "Id": "PurchId"}
    }

    preview = mapping_preview(flow=flow, payload={"PurchId": "PO-1"}, spec=draft)
    failed = mapping_preview(
        flow=flow, payload={"PurchId": "PO-1"}, spec={"fields": {"X": {"path": "PurchId", "type": "integer"}}}
    )

    assert preview.as_dict() == {"output": {"dataAreaId": "SE01", "Customer": "IC-DK01", "Id": "PO-1"}}
    assert failed.as_dict() == {"errors": ["field 'X': 'PO-1' is not a number (source 'PurchId', value 'PO-1')"]}
    assert not Message.objects.exists()


# --- the pipeline -------------------------------------------------------------------------------


def _ingest(flow, payload):
    message, _ = message_ingest(flow=flow, payload=payload, idempotency_key=f"evt-{payload.get('SalesOrderNumber')}")
    return message


def test_a_transformed_message_records_the_mapping_version_that_made_it(make_flow, alice):
    flow = make_flow()
    flow_mapping_save(flow=flow, spec=SPEC_V2, actor=alice)
    message = _ingest(flow, {"SalesOrderNumber": "SO-1", "Amount": 10.5})

    # The target (a recorder on a closed port) is down: the mapped payload is stored with its version anyway.
    pipeline.message_process(message_id=message.pk)

    message.refresh_from_db()
    assert message.status == Message.Status.RETRYING
    assert message.payload_out == {"OrderNumber": "SO-1", "Amount": "10.50"}
    assert message.mapping_version == 2


def test_a_failing_transform_parks_the_message_as_failed_with_field_path_and_value(make_flow, alice):
    flow = make_flow()
    spec = {
        "fields": {
            "OrderNumber": "SalesOrderNumber",
            "Items": {"each": "Lines", "fields": {"Qty": {"path": "Qty", "type": "decimal", "precision": 2}}},
        }
    }
    flow_mapping_save(flow=flow, spec=spec, actor=alice)
    message = _ingest(flow, {"SalesOrderNumber": "SO-2", "Lines": [{"Qty": 1}, {"Qty": "two"}]})

    pipeline.message_process(message_id=message.pk)

    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.last_error == "field 'Items[1].Qty': 'two' is not a number (source 'Qty', value 'two')"
    assert message.last_error_class == "errors.MappingError"
    assert "Traceback" not in message.last_error
    assert message.mapping_version == 2
    assert message.payload_out is None
