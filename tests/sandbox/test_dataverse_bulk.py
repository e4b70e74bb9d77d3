"""Bulk operation messages on the Dataverse emulator: CreateMultiple, UpdateMultiple, UpsertMultiple."""

from __future__ import annotations

from sandbox import dataverse
from sandbox.dataverse.store import live
from tests.connectors.microsoft_support import MsClient

pytest_plugins = ["tests.connectors.microsoft_support"]

API = "/sandbox/dataverse/api/data/v9.2"
ACCOUNT = "Microsoft.Dynamics.CRM.account"


def test_create_multiple_answers_the_ids_of_the_created_rows(dv: MsClient) -> None:
    """Use bulk operation messages; CreateMultipleResponse ComplexType: 200 with {"Ids": [...]}."""
    targets = [{"@odata.type": ACCOUNT, "name": f"Bulk {n}", "accountnumber": f"B{n}"} for n in range(3)]

    response = dv.call("POST", f"{API}/accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": targets})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"].endswith("$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse")
    assert sorted(live("accounts").values_list("key", flat=True)) == sorted(body["Ids"])
    assert len(body["Ids"]) == 3


def test_a_bulk_target_without_odata_type_is_refused_and_nothing_is_written(dv: MsClient) -> None:
    """UpsertMultiple Action: "You must specify the @odata.type annotation with every item in the Targets"."""
    targets = [{"@odata.type": ACCOUNT, "name": "Typed", "accountnumber": "T1"}, {"name": "Untyped"}]

    response = dv.call("POST", f"{API}/accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": targets})

    assert response.status_code == 400
    assert "@odata.type" in response.json()["error"]["message"]
    assert live("accounts").exists() is False


def test_one_failing_target_rolls_the_whole_bulk_request_back(dv: MsClient) -> None:
    """Use bulk operation messages: on standard tables the operation fails as a whole when one target fails."""
    targets = [
        {"@odata.type": ACCOUNT, "name": "Good", "accountnumber": "G1"},
        {"@odata.type": ACCOUNT, "accountnumber": "G2"},  # name is required
    ]

    response = dv.call("POST", f"{API}/accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": targets})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x80040203"
    assert live("accounts").exists() is False


def test_upsert_multiple_creates_and_updates_by_alternate_key_and_answers_204(dv: MsClient) -> None:
    """UpsertMultiple Action: targets named by "@odata.id": "<set>(<alternate key>)"; 204 No Content."""
    dv.call("POST", f"{API}/accounts", json={"name": "Old name", "accountnumber": "U1"})
    targets = [
        {"@odata.type": ACCOUNT, "@odata.id": "accounts(accountnumber='U1')", "name": "New name"},
        {"@odata.type": ACCOUNT, "@odata.id": "accounts(accountnumber='U2')", "name": "Second"},
    ]

    response = dv.call("POST", f"{API}/accounts/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": targets})

    assert response.status_code == 204, response.text
    rows = {r.data["accountnumber"]: r.data["name"] for r in live("accounts")}
    assert rows == {"U1": "New name", "U2": "Second"}


def test_update_multiple_refuses_a_row_that_does_not_exist(dv: MsClient) -> None:
    """Use bulk operation messages: UpdateMultiple updates existing rows only (404, nothing changed)."""
    dv.call("POST", f"{API}/accounts", json={"name": "Kept", "accountnumber": "K1"})
    kept = live("accounts").get().key
    targets = [
        {"@odata.type": ACCOUNT, "accountid": kept, "name": "Changed"},
        {"@odata.type": ACCOUNT, "accountid": "00000000-0000-0000-0000-0000000000aa", "name": "Ghost"},
    ]

    response = dv.call("POST", f"{API}/accounts/Microsoft.Dynamics.CRM.UpdateMultiple", json={"Targets": targets})

    assert response.status_code == 404
    assert live("accounts").get().data["name"] == "Kept"
    assert live("accounts").count() == 1


def test_a_bulk_request_counts_as_one_request_against_service_protection(dv: MsClient) -> None:
    """Service protection API limits: the number of requests counts HTTP requests, a bulk message is one."""
    dataverse.configure_service_protection(requests=2)
    targets = [{"@odata.type": ACCOUNT, "name": f"Many {n}"} for n in range(10)]

    first = dv.call("POST", f"{API}/accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": targets})
    second = dv.call("POST", f"{API}/accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": targets})
    third = dv.call("POST", f"{API}/accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": targets})

    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    assert live("accounts").count() == 20
