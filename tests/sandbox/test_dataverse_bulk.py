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


def _count_calls(monkeypatch, module, name: str) -> list[tuple]:
    """Calls of module.name made while serving (the TLS server runs in this process, in a thread)."""
    calls: list[tuple] = []
    original = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


def test_upsert_multiple_finds_its_rows_with_one_read_per_alternate_key(dv: MsClient, monkeypatch) -> None:
    """The targets' rows and the duplicate checks come from one read of the key's values, not a scan per target."""
    from sandbox.dataverse import store

    for n in range(5):
        dv.call("POST", f"{API}/accounts", json={"name": f"Old {n}", "accountnumber": f"R{n}"})
    targets = [
        {"@odata.type": ACCOUNT, "@odata.id": f"accounts(accountnumber='R{n}')", "name": f"New {n}"} for n in range(30)
    ]
    reads = _count_calls(monkeypatch, store, "live")

    response = dv.call("POST", f"{API}/accounts/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": targets})

    assert response.status_code == 204, response.text
    assert len(reads) == 1  # was three per target: find, the duplicate check, find again for the id
    assert live("accounts").count() == 30
    assert live("accounts").get(data__accountnumber="R3").data["name"] == "New 3"


def test_upsert_multiple_naming_one_key_twice_writes_one_row(dv: MsClient) -> None:
    """The second target finds the row the first one created in the same request (the request's index)."""
    targets = [
        {"@odata.type": ACCOUNT, "@odata.id": "accounts(accountnumber='D1')", "name": "First"},
        {"@odata.type": ACCOUNT, "@odata.id": "accounts(accountnumber='D1')", "name": "Second"},
    ]

    response = dv.call("POST", f"{API}/accounts/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": targets})

    assert response.status_code == 204, response.text
    assert live("accounts").get(data__accountnumber="D1").data["name"] == "Second"


def test_upsert_multiple_refuses_an_alternate_key_another_row_holds(dv: MsClient) -> None:
    """An alternate key is unique: a target creating a second row with the same accountnumber fails them all."""
    dv.call("POST", f"{API}/accounts", json={"name": "Holder", "accountnumber": "K1"})
    targets = [
        {"@odata.type": ACCOUNT, "@odata.id": "accounts(accountnumber='K2')", "name": "Other"},
        {
            "@odata.type": ACCOUNT,
            "accountid": "00000000-0000-0000-0000-00000000000a",
            "name": "Taken",
            "accountnumber": "K1",
        },
    ]

    response = dv.call("POST", f"{API}/accounts/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": targets})

    assert response.status_code == 412, response.text
    assert response.json()["error"]["code"] == "0x80040237"
    assert live("accounts").count() == 1


def test_a_read_back_by_keys_is_narrowed_in_sql_and_compares_text_case_insensitively(dv: MsClient, monkeypatch) -> None:
    """$filter of `key eq 'x'` terms is answered from the named rows; Dataverse compares strings case-insensitively."""
    from sandbox.dataverse import query

    for n in range(4):
        dv.call("POST", f"{API}/accounts", json={"name": f"Row {n}", "accountnumber": f"AB{n}"})
    narrowed = _count_calls(monkeypatch, query, "equal_rows")
    expression = "(accountnumber eq 'ab1') or (accountnumber eq 'AB3') or (accountnumber eq 'none')"

    response = dv.call("GET", f"{API}/accounts", params={"$filter": expression, "$select": "accountnumber"})

    assert response.status_code == 200, response.text
    assert sorted(row["accountnumber"] for row in response.json()["value"]) == ["AB1", "AB3"]
    assert narrowed == [([[("accountnumber", "ab1")], [("accountnumber", "AB3")], [("accountnumber", "none")]],)]
