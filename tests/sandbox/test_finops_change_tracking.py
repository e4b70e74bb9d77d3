"""The F&O emulator's change feed: no ModifiedDateTime on data entities, change tracking in data management.

Followed: "Enable change tracking for entities" (an incremental export holds only the records that changed;
without change tracking an entity "can only [get] a full export each time"), "Data management package REST
API" (ExportToPackage, GetExecutionSummaryStatus, GetExportedPackageUrl), "Recurring integrations" (dequeue of
an export job's package) and "Open Data Protocol (OData)" (an unknown property is a 400).
"""

from __future__ import annotations

import requests

from integrations.protocols import dmf
from sandbox import finops
from sandbox.finops.packages import change_tracking_enabled
from tests.connectors.microsoft_support import MsClient
from tests.sandbox.test_finops_emulator import customer

pytest_plugins = ["tests.connectors.microsoft_support"]

DATA = "/sandbox/finops/data"
ACTIONS = f"{DATA}/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities"


def export(fo: MsClient, project: str, company: str = "se01") -> dict[str, list[dict[str, str]]]:
    """ExportToPackage, then the package's rows per entity, as a client of the package API reads them."""
    body = {"definitionGroupId": project, "packageName": f"{project}.zip", "executionId": "", "reExecute": False,
            "legalEntityId": company}  # fmt: skip
    started = fo.call("POST", f"{ACTIONS}.ExportToPackage", json=body)
    assert started.status_code == 200, started.text
    execution_id = started.json()["value"]
    status = fo.call("POST", f"{ACTIONS}.GetExecutionSummaryStatus", json={"executionId": execution_id})
    assert status.json()["value"] == "Succeeded"
    url = fo.call("POST", f"{ACTIONS}.GetExportedPackageUrl", json={"executionId": execution_id}).json()["value"]
    package = requests.get(url, verify=fo.server.ca_bundle, timeout=10)
    return dmf.package_read(package.content)[1]


def accounts(rows: list[dict[str, str]]) -> list[str]:
    return sorted(row["CustomerAccount"] for row in rows)


def rename(fo: MsClient, company: str, account: str, name: str) -> None:
    response = fo.call(
        "PATCH",
        f"{DATA}/CustomersV3(dataAreaId='{company}',CustomerAccount='{account}')?cross-company=true",
        json={"OrganizationName": name},
    )
    assert response.status_code == 204, response.text


def test_entities_carry_no_modified_date_time_and_a_query_naming_it_is_refused(fo: MsClient) -> None:
    created = customer(fo, "se01", "SE-1")
    listed = fo.call("GET", f"{DATA}/CustomersV3?cross-company=true").json()["value"]
    by_key = fo.call("GET", f"{DATA}/CustomersV3(dataAreaId='se01',CustomerAccount='SE-1')?cross-company=true")

    answers = {
        option: fo.call("GET", f"{DATA}/CustomersV3?cross-company=true&{option}")
        for option in (
            "$filter=ModifiedDateTime gt 2026-01-01T00:00:00Z",
            "$filter=CustomerAccount eq 'SE-1' and ModifiedDateTime ge 2026-01-01T00:00:00Z",
            "$orderby=ModifiedDateTime desc",
            "$select=CustomerAccount,ModifiedDateTime",
        )
    }
    write = fo.call(
        "PATCH",
        f"{DATA}/CustomersV3(dataAreaId='se01',CustomerAccount='SE-1')?cross-company=true",
        json={"ModifiedDateTime": "2026-01-01T00:00:00Z"},
    )

    assert "ModifiedDateTime" not in created
    assert all("ModifiedDateTime" not in row for row in listed)
    assert "ModifiedDateTime" not in by_key.json()
    for option, answer in answers.items():
        assert answer.status_code == 400, option
        assert "Could not find a property named 'ModifiedDateTime'" in answer.json()["error"]["message"], option
    assert write.status_code == 400
    assert "does not exist" in write.json()["error"]["message"]


def test_an_incremental_export_of_a_change_tracked_entity_holds_only_what_changed_since_the_last(fo: MsClient):
    for account in ("SE-1", "SE-2", "SE-3"):
        customer(fo, "se01", account)
    customer(fo, "dk01", "DK-1")
    finops.change_tracking("CustomersV3")
    finops.data_project("CustomerChanges", entities=["CustomersV3"], incremental=True)

    first = export(fo, "CustomerChanges")
    unchanged = export(fo, "CustomerChanges")
    rename(fo, "se01", "SE-2", "Renamed")
    customer(fo, "se01", "SE-4")
    rename(fo, "dk01", "DK-1", "Other company")
    changed = export(fo, "CustomerChanges")
    after = export(fo, "CustomerChanges")
    other_company = export(fo, "CustomerChanges", company="dk01")

    assert accounts(first["CustomersV3"]) == ["SE-1", "SE-2", "SE-3"]  # the first export is the full set
    assert unchanged["CustomersV3"] == []
    assert accounts(changed["CustomersV3"]) == ["SE-2", "SE-4"]
    assert {r["CustomerAccount"]: r["OrganizationName"] for r in changed["CustomersV3"]}["SE-2"] == "Renamed"
    assert after["CustomersV3"] == []
    assert accounts(other_company["CustomersV3"]) == ["DK-1"]  # its own first export, in its legal entity
    assert all("ModifiedDateTime" not in row for row in first["CustomersV3"])


def test_without_change_tracking_or_incremental_push_every_export_is_the_full_set(fo: MsClient):
    customer(fo, "se01", "SE-1")
    customer(fo, "se01", "SE-2")
    finops.data_project("Untracked", entities=["CustomersV3"], incremental=True)  # no change tracking on it
    finops.data_project("FullPush", entities=["CustomersV3"])
    finops.change_tracking("ReleasedProductsV2")  # another entity's tracking changes nothing here

    untracked = [accounts(export(fo, "Untracked")["CustomersV3"]) for _ in range(2)]
    finops.change_tracking("CustomersV3")
    full_push = [accounts(export(fo, "FullPush")["CustomersV3"]) for _ in range(2)]

    assert untracked == [["SE-1", "SE-2"], ["SE-1", "SE-2"]]
    assert full_push == [["SE-1", "SE-2"], ["SE-1", "SE-2"]]


def test_change_tracking_disabled_and_enabled_again_starts_with_a_full_export(fo: MsClient):
    customer(fo, "se01", "SE-1")
    finops.change_tracking("CustomersV3")
    finops.data_project("CustomerChanges", entities=["CustomersV3"], incremental=True)
    export(fo, "CustomerChanges")

    finops.change_tracking("CustomersV3", enabled=False)
    finops.change_tracking("CustomersV3")

    assert accounts(export(fo, "CustomerChanges")["CustomersV3"]) == ["SE-1"]


def test_a_recurring_export_job_queues_only_the_changes_since_its_previous_package(fo: MsClient):
    customer(fo, "se01", "SE-1")
    finops.change_tracking("CustomersV3")
    finops.data_project("CustomerFeed", entities=["CustomersV3"], incremental=True)
    finops.recurring_job("7d1e0a55-1111-4c2b-9e0f-000000000001", project="CustomerFeed", company="SE01")
    activity = "/sandbox/finops/api/connector/{}/7d1e0a55-1111-4c2b-9e0f-000000000001"
    packages = []
    for change in ("SE-2", "SE-3"):
        finops.recurring_export_run("7d1e0a55-1111-4c2b-9e0f-000000000001", f"{fo.server.url}/sandbox/finops")
        dequeued = fo.call("GET", activity.format("dequeue")).json()
        package = requests.get(dequeued["DownloadLocation"], verify=fo.server.ca_bundle, timeout=10)
        packages.append(accounts(dmf.package_read(package.content)[1]["CustomersV3"]))
        assert fo.call("POST", activity.format("ack"), json=dequeued).status_code == 200
        customer(fo, "se01", change)

    assert packages == [["SE-1"], ["SE-2"]]


def test_change_tracking_is_set_through_the_control_api(admin_client, client):
    url = "/sandbox/finops/control/change-tracking/CustomersV3"

    anonymous = client.put(url)
    before = admin_client.get(url).json()
    put = admin_client.put(url)
    after = admin_client.get(url).json()
    unknown = admin_client.put("/sandbox/finops/control/change-tracking/NoSuchEntity")
    deleted = admin_client.delete(url)

    assert anonymous.status_code in (401, 403)
    assert (before["enabled"], put.status_code, after["enabled"]) == (False, 200, True)
    assert unknown.status_code == 404
    assert deleted.status_code == 204
    assert change_tracking_enabled("CustomersV3") is False
