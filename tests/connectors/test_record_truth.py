"""Connectors' deletes, key normal forms and table lookups, against the emulators over real HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from integrations import errors
from integrations.bulk.load import record_identity
from integrations.flow_options import options_problems
from integrations.models import System
from integrations.protocols.transport import DeliveryRequest
from integrations.systems import canonical_key, canonical_value, get_connector
from integrations.systems.finops.keys import format_key, parse_key
from sandbox.models import EmulatorRecord

pytest_plugins = ["tests.connectors.microsoft_support"]


def request(entity: str, operation: str, *, options: dict[str, Any] | None = None, **values: Any) -> DeliveryRequest:
    values.setdefault("payload", {})
    values.setdefault("key", {})
    return DeliveryRequest(
        entity=entity, operation=operation, idempotency_key=str(uuid.uuid4()), options=options or {}, **values
    )


def test_key_normal_forms_are_the_forms_the_targets_answer_with():
    assert (
        canonical_key("finops", "dataAreaId='SE01',CustomerAccount='C-1'") == "dataAreaId='se01',CustomerAccount='C-1'"
    )
    assert canonical_key("finops", "dataAreaId=%27SE01%27,SalesOrderNumber=%27SO%201%27") == (
        "dataAreaId='se01',SalesOrderNumber='SO%201'"
    )
    assert parse_key("(dataAreaId='se01',Name='O''Brien',LineNumber=3)") == {
        "dataAreaId": "se01",
        "Name": "O'Brien",
        "LineNumber": 3,
    }
    assert format_key("SE01", {"dataAreaId": "SE01", "CustomerAccount": "C-1"}) == (
        "dataAreaId='se01',CustomerAccount='C-1'"
    )
    guid = "B5A4C3D2-0000-4000-8000-00000000ABCD"
    assert canonical_key("dataverse", "{" + guid + "}") == guid.lower()
    assert canonical_key("dataverse", "accountnumber='A1'") == "accountnumber='A1'"
    assert canonical_key("s4hana", "'0000001'") == "0000001"
    assert canonical_key("s4hana", "SalesOrder='1',SalesOrderItem='10'") == "SalesOrder='1',SalesOrderItem='10'"
    assert canonical_value("finops", "dataAreaId", "SE01") == "se01"
    assert canonical_value("finops", "CustomerAccount", "C-1") == "C-1"
    # AX names a document by its key field's value, in a poll as in a load's predicate; a bare key that
    # contains "=" is still a bare key, not a predicate of a field named A.
    assert canonical_key("ax2012", "dataAreaId='dk01',AccountNum='C-1'") == canonical_key("ax2012", "C-1") == "C-1"
    assert canonical_key("ax2012", "SalesId='SO''7'") == "SO'7"
    assert canonical_key("ax2012", "A=1") == "A=1"
    assert canonical_key("ax2012", "dataAreaId='dk01',RecId=5637144577") == canonical_key("ax2012", "5637144577")
    assert canonical_key("ax2012", "5637144577") == "5637144577"
    # A loaded row's key names its values as literals (a quote doubled), so its normal form is the value.
    row = {"AccountNum": "O'Neil", "RecId": 5637144577, "dataAreaId": "DK01"}
    assert record_identity(entity="Customer", key=("AccountNum",), row=row, kind="ax2012")[0] == "O'Neil"
    assert record_identity(entity="Customer", key=("RecId",), row=row, kind="ax2012")[0] == "5637144577"
    assert record_identity(entity="CustomersV3", key=("AccountNum",), row=row)[0] == (
        "dataAreaId='dk01',AccountNum='O''Neil'"
    )
    assert canonical_key("recorder", "ABC") == "ABC"  # a kind without a key form keeps its keys


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"on_delete": {"action": "block"}}, "options.on_delete.set: required for action 'block'"),
        ({"on_delete": {"action": "delete", "set": {"a": 1}}}, "options.on_delete.set: only block and deactivate"),
        ({"on_delete": {"action": "erase"}}, "options.on_delete.action: expected one of delete, block"),
        ({"on_delete": {"action": "block", "set": {"a": [1]}}}, "options.on_delete.set.a: expected a value"),
        ({"reference_field": 3}, "options.reference_field: expected a string"),
    ],
)
def test_delete_policy_and_reference_field_are_checked_naming_the_key(options, problem):
    assert any(found.startswith(problem) for found in options_problems(options)), options_problems(options)


def test_dataverse_deletes_or_deactivates_a_row_by_its_id_and_a_row_gone_already_is_done(dataverse_system: System):
    connector = get_connector(dataverse_system)
    first = connector.deliver(request("accounts", "upsert", payload={"name": "A"}, key={"accountnumber": "D-1"}))
    second = connector.deliver(request("accounts", "upsert", payload={"name": "B"}, key={"accountnumber": "D-2"}))
    deactivate = {"on_delete": {"action": "deactivate", "set": {"statecode": 1, "statuscode": 2}}}

    deleted = connector.deliver(request("accounts", "delete", target_key=first.target_key.upper()))
    again = connector.deliver(request("accounts", "delete", target_key=first.target_key))
    inactive = connector.deliver(request("accounts", "delete", target_key=second.target_key, options=deactivate))

    assert (deleted.status_code, again.status_code) == (204, 404)
    assert deleted.target_key == first.target_key  # the normal form: lower case
    assert EmulatorRecord.objects.get(emulator="dataverse", key=first.target_key).deleted is True
    row = EmulatorRecord.objects.get(emulator="dataverse", key=second.target_key)
    assert (row.deleted, row.data["statecode"], row.data["statuscode"]) == (False, 1, 2)
    assert inactive.target_key == second.target_key


def test_dataverse_table_names_come_from_entity_definitions_once(dataverse_system: System):
    connector = get_connector(dataverse_system)
    sent: list[str] = []
    connector.session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request.url))

    assert connector.table("task") == ("tasks", "activityid")
    assert connector.table("task") == ("tasks", "activityid")
    assert len([url for url in sent if "EntityDefinitions" in url]) == 1


def test_fo_delete_and_block_address_the_record_by_its_linked_key(finops_system: System):
    connector = get_connector(finops_system)
    for number in ("F-1", "F-2"):
        connector.deliver(
            request(
                "CustomersV3",
                "upsert",
                payload={"OrganizationName": number, "CustomerGroupId": "30"},
                key={"CustomerAccount": number},
                company="SE01",
            )
        )
    block = {"on_delete": {"action": "block", "set": {"OnHoldStatus": "All"}}}

    gone = connector.deliver(request("CustomersV3", "delete", target_key="dataAreaId='SE01',CustomerAccount='F-1'"))
    held = connector.deliver(
        request("CustomersV3", "delete", target_key="dataAreaId='se01',CustomerAccount='F-2'", options=block)
    )

    assert gone.target_key == "dataAreaId='se01',CustomerAccount='F-1'"
    customers = {r.key: r for r in EmulatorRecord.objects.filter(emulator="finops", entity="CustomersV3")}
    assert customers["F-1"].deleted is True
    assert (customers["F-2"].deleted, customers["F-2"].data["OnHoldStatus"]) == (False, "All")
    assert held.etag


@pytest.fixture
def s4_system(make_system, live_server) -> System:
    return make_system(
        name="S/4",
        slug="s4",
        kind=System.Kind.S4HANA,
        base_url=f"{live_server.url}/sandbox/s4hana/sap/opu/odata/sap",
        auth_type=System.AuthType.BASIC,
        client_id="ICBRIDGE",
        secret="sandbox",
        timeout_seconds=5,
    )


@pytest.mark.django_db(transaction=True)
def test_s4_refuses_deleting_a_business_partner_as_sap_does_and_a_block_is_a_patch(s4_system: System):
    connector = get_connector(s4_system)
    partner = connector.deliver(
        request(
            "API_BUSINESS_PARTNER/A_BusinessPartner",
            "create",
            payload={"BusinessPartnerCategory": "2", "OrganizationBPName1": "Contoso"},
        )
    )
    block = {"on_delete": {"action": "block", "set": {"BusinessPartnerIsBlocked": True}}}

    with pytest.raises(errors.RejectedError, match="not allowed"):
        connector.deliver(request("API_BUSINESS_PARTNER/A_BusinessPartner", "delete", target_key=partner.target_key))
    connector.deliver(
        request("API_BUSINESS_PARTNER/A_BusinessPartner", "delete", target_key=partner.target_key, options=block)
    )

    row = EmulatorRecord.objects.get(
        emulator="s4hana", entity="API_BUSINESS_PARTNER/A_BusinessPartner", data__BusinessPartner=partner.target_key
    )
    assert (row.deleted, row.data["BusinessPartnerIsBlocked"]) == (False, True)
