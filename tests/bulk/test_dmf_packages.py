"""F&O Data management against the emulator: package export and import, recurring integrations, a package load."""

from __future__ import annotations

import io
import time
import zipfile

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from lxml import etree

from integrations import errors
from integrations.bulk import load
from integrations.models import LoadRun, Message, System
from integrations.protocols import dmf
from integrations.protocols.transport import DeliveryRequest
from integrations.systems import get_connector
from sandbox import finops
from sandbox.finops import packages as sandbox_packages
from sandbox.finops.store import rows
from sandbox.models import EmulatorRecord
from tests.bulk.conftest import seed_customers
from tests.bulk.test_initial_load import run_pages

pytest_plugins = ["tests.connectors.microsoft_support"]
pytestmark = pytest.mark.django_db(transaction=True)
NS = "{http://schemas.datacontract.org/2004/07/Microsoft.Dynamics.AX.Framework.Tools.DataManagement.Serialization}"
ACTIVITY = "6f1a5d3e-0b7c-4f7e-9a55-2d1c0f4b8e11"


def test_an_export_package_is_a_zip_in_the_documented_layout(finops_system: System):
    seed_customers(5)
    seed_customers(2, company="dk01")
    finops.data_project("CustomerExport", entities=["CustomersV3"])
    packages = get_connector(finops_system).packages

    execution_id = packages.export(project="CustomerExport", company="SE01")
    assert packages.wait(execution_id) == "Succeeded"
    archive = zipfile.ZipFile(io.BytesIO(packages.download(packages.exported_url(execution_id))))

    # "a package manifest, a package header, and any additional files for the data entities" (MS Learn)
    assert set(archive.namelist()) == {"Manifest.xml", "PackageHeader.xml", "CustomersV3.csv"}
    manifest = etree.fromstring(archive.read("Manifest.xml"))
    assert manifest.tag == f"{NS}DataManagementPackageManifest"
    assert manifest.findtext(f"{NS}DefinitionGroupName") == "CustomerExport"
    assert [e.findtext(f"{NS}SourceFilePath") for e in manifest.iter(f"{NS}DataManagementPackageEntityData")] == [
        "CustomersV3.csv"
    ]
    assert etree.fromstring(archive.read("PackageHeader.xml")).tag == f"{NS}DataManagementPackageHeader"
    lines = archive.read("CustomersV3.csv").decode("utf-8-sig").splitlines()
    assert len(lines) == 6  # a header row and the company's five customers
    assert "CustomerAccount" in lines[0]


def test_an_import_package_writes_its_rows_and_reports_the_refused_ones(finops_system: System):
    finops.data_project("CustomerImport", entities=["CustomersV3"], direction="import")
    package = dmf.package_build(
        definition_group="CustomerImport",
        entities={
            "CustomersV3": [
                {"CustomerAccount": "N1", "OrganizationName": "New 1", "CustomerGroupId": "10"},
                {"CustomerAccount": "N2", "OrganizationName": "New 2", "CustomerGroupId": "10"},
                {"CustomerAccount": "N3", "OrganizationName": "No group"},
            ]
        },
    )
    packages = get_connector(finops_system).packages

    execution_id = packages.import_package(package=package, project="CustomerImport", company="DK01")

    assert packages.wait(execution_id) == "PartiallySucceeded"
    assert [(e["Row"], e["Entity"]) for e in packages.execution_errors(execution_id)] == [(3, "CustomersV3")]
    assert set(rows("CustomersV3").filter(company="dk01").values_list("key", flat=True)) == {"N1", "N2"}


def test_an_unknown_data_project_or_execution_is_refused(finops_system: System):
    packages = get_connector(finops_system).packages

    with pytest.raises(errors.RejectedError, match="does not exist"):
        packages.export(project="NoSuchProject", company="SE01")
    with pytest.raises(errors.RejectedError, match="does not exist"):
        packages.execution_errors("no-such-execution")
    assert packages.status("no-such-execution") == "Unknown"


def test_recurring_integrations_enqueue_dequeue_and_ack(finops_system: System):
    seed_customers(3)
    finops.data_project("CustomerSync", entities=["CustomersV3"])
    finops.recurring_job(ACTIVITY, project="CustomerSync", company="SE01")
    packages = get_connector(finops_system).packages
    inbound = dmf.package_build(
        definition_group="CustomerSync",
        entities={"CustomersV3": [{"CustomerAccount": "R1", "OrganizationName": "Queued", "CustomerGroupId": "10"}]},
    )

    message_id = packages.enqueue(activity_id=ACTIVITY, package=inbound, entity="Customers V3", company="SE01")
    assert packages.message_status(message_id) == "Processed"
    assert rows("CustomersV3").filter(company="se01", key="R1").exists()

    assert packages.dequeue(activity_id=ACTIVITY) is None  # nothing exported yet
    finops.recurring_export_run(ACTIVITY, f"{finops_system.base_url}")
    dequeued = packages.dequeue(activity_id=ACTIVITY)
    assert set(dequeued) >= {"CorrelationId", "PopReceipt", "DownloadLocation"}
    assert packages.dequeue(activity_id=ACTIVITY) is None  # handed out: not again before its ack
    _, entities = dmf.package_read(packages.download(dequeued["DownloadLocation"]))
    assert {r["CustomerAccount"] for r in entities["CustomersV3"]} == {"C00000", "C00001", "C00002", "R1"}

    packages.ack(activity_id=ACTIVITY, dequeued=dequeued)
    with pytest.raises(errors.RejectedError):
        packages.ack(activity_id=ACTIVITY, dequeued=dequeued)  # acknowledged once; it is gone
    with pytest.raises(errors.RejectedError, match="not found"):
        packages.dequeue(activity_id="00000000-0000-0000-0000-000000000000")


def test_an_initial_load_can_read_an_export_package(load_flow):
    seed_customers(11)
    finops.data_project("CustomerExport", entities=["CustomersV3"])
    load_flow.options = {**load_flow.options, "transport": "package", "package_project": "CustomerExport"}
    load_flow.save()

    run = run_pages(load.load_start(flow=load_flow, company="SE01", page_size=4))

    assert (run.state, run.read, run.written, run.pages) == (LoadRun.State.DONE, 11, 11, 3)
    assert run.cursor == ""
    first = Message.objects.get(source_record_key="dataAreaId='se01',CustomerAccount='C00000'")
    assert first.payload_in["OrganizationName"] == "Customer 0"


def test_a_package_flow_delivers_a_batch_as_one_import_and_refuses_only_the_bad_row(finops_system: System):
    finops.data_project("CustomerImport", entities=["CustomersV3"], direction="import")
    options = {"transport": "package", "package_project": "CustomerImport"}

    def customer(account: str, **fields: str) -> DeliveryRequest:
        return DeliveryRequest(entity="CustomersV3", operation="upsert", key={"CustomerAccount": account},
                               payload={"OrganizationName": account, **fields}, idempotency_key=f"c-{account}",
                               company="SE01", options=options)  # fmt: skip

    results = get_connector(finops_system).deliver_many(
        [customer("P1", CustomerGroupId="10"), customer("P2"), customer("P3", CustomerGroupId="20")]
    )

    assert [r.target_key for r in (results[0], results[2])] == [
        "dataAreaId='se01',CustomerAccount='P1'",
        "dataAreaId='se01',CustomerAccount='P3'",
    ]
    assert isinstance(results[1], errors.RejectedError)
    assert "row 2" in results[1].message
    assert set(rows("CustomersV3").filter(company="se01").values_list("key", flat=True)) == {"P1", "P3"}


def test_an_import_updates_existing_rows_recreates_deleted_ones_and_change_tracking_exports_what_it_wrote(
    finops_system: System,
):
    seed_customers(3)  # C00000..C00002 in se01, group 10
    connector = get_connector(finops_system)
    connector.request(
        "DELETE", f"{connector.data}/CustomersV3(dataAreaId='se01',CustomerAccount='C00002')?cross-company=true"
    )
    existing = f"{connector.data}/CustomersV3(dataAreaId='se01',CustomerAccount='C00000')?cross-company=true"
    connector.request("PATCH", existing, json={"SalesCurrencyCode": "EUR"})
    finops.change_tracking("CustomersV3")
    finops.data_project("CustomerChanges", entities=["CustomersV3"], incremental=True)
    finops.data_project("CustomerImport", entities=["CustomersV3"], direction="import")
    packages = connector.packages
    first = packages.export_rows(project="CustomerChanges", company="SE01")["CustomersV3"]
    assert sorted(r["CustomerAccount"] for r in first) == ["C00000", "C00001"]  # the first export: every row
    before = rows("CustomersV3").get(company="se01", key="C00000")
    package = dmf.package_build(
        definition_group="CustomerImport",
        entities={
            "CustomersV3": [
                # existing: its currency, which the row does not name, is kept
                {"CustomerAccount": "C00000", "OrganizationName": "Renamed", "CustomerGroupId": "10"},
                {"CustomerAccount": "N1", "OrganizationName": "New 1", "CustomerGroupId": "20"},
                {"CustomerAccount": "N2", "OrganizationName": "No group"},  # refused: CustomerGroupId required
                {"CustomerAccount": "C00002", "OrganizationName": "Back", "CustomerGroupId": "30"},  # deleted before
                {"CustomerAccount": "N1", "OrganizationName": "New 1 again", "CustomerGroupId": "20"},  # later wins
                {
                    "CustomerAccount": "N3",
                    "OrganizationName": "Euro",
                    "CustomerGroupId": "10",
                    "SalesCurrencyCode": "Euro",
                },  # refused: a currency by name  # fmt: skip
            ]
        },
    )

    execution_id = packages.import_package(package=package, project="CustomerImport", company="SE01")

    assert packages.wait(execution_id) == "PartiallySucceeded"
    refused = packages.execution_errors(execution_id)
    assert [(e["Entity"], e["Row"]) for e in refused] == [("CustomersV3", 3), ("CustomersV3", 6)]
    assert "CustomerGroupId" in refused[0]["Message"]
    assert "Euro" in refused[1]["Message"]
    execution = EmulatorRecord.objects.get(emulator="finops", entity="$dmf_execution", key=execution_id)
    assert execution.data["written"] == 4  # rows 1, 2, 4 and 5 (two of them the same key)
    stored = {r.key: r for r in rows("CustomersV3").filter(company="se01")}
    assert set(stored) == {"C00000", "C00001", "C00002", "N1"}
    assert stored["C00000"].data == {**before.data, "OrganizationName": "Renamed"}
    assert before.data["SalesCurrencyCode"] == "EUR"
    assert stored["C00000"].version != before.version
    assert stored["C00000"].change_seq > before.change_seq
    assert stored["C00002"].data == {"CustomerAccount": "C00002", "OrganizationName": "Back",
                                     "CustomerGroupId": "30", "dataAreaId": "se01"}  # fmt: skip
    assert stored["N1"].data["OrganizationName"] == "New 1 again"
    # Change tracking sends what the import wrote, and only that, with the next incremental export.
    changed = packages.export_rows(project="CustomerChanges", company="SE01")["CustomersV3"]
    assert {r["CustomerAccount"]: r["OrganizationName"] for r in changed} == {
        "C00000": "Renamed", "C00002": "Back", "N1": "New 1 again"}  # fmt: skip
    # The same package again collapses on its keys: nothing new, the same rows refused.
    again = packages.import_package(package=package, project="CustomerImport", company="SE01")
    assert packages.wait(again) == "PartiallySucceeded"
    assert rows("CustomersV3").filter(company="se01").count() == 4


def test_an_import_reads_and_writes_an_entity_with_a_fixed_number_of_queries(finops_system: System):
    seed_customers(5)

    def queries_for(count: int) -> int:
        package = dmf.package_build(
            definition_group="CustomerImport",
            entities={"CustomersV3": [{"CustomerAccount": f"C{n:05d}", "OrganizationName": f"Imported {n}",
                                       "CustomerGroupId": "10"} for n in range(count)]},
        )  # fmt: skip
        with CaptureQueriesContext(connection) as queries:
            written, errors_ = sandbox_packages._import(package, "se01")
        assert (written, errors_) == (count, [])
        return len(queries.captured_queries)

    # Half of the first package's rows exist; every row of the second is new or imported before.
    assert queries_for(10) == queries_for(60)
    assert rows("CustomersV3").filter(company="se01", data__OrganizationName__startswith="Imported").count() == 60


def test_a_long_running_execution_is_polled_less_often_and_never_past_the_deliverys_deadline(
    finops_system: System, monkeypatch
):
    """F&O runs an import or export as a batch job ("Data management package REST API":
    GetExecutionSummaryStatus answers NotRun/Executing until it ends), so the connector polls its status:
    the pause doubles up to 15 s, and inside a delivery the wait ends before the delivery's deadline."""
    from types import SimpleNamespace

    from integrations.systems.finops import packages as hub_packages

    pauses: list[float] = []
    clock = [0.0]

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        clock[0] += seconds

    # The module's clock and its view of the delivery's deadline, not the process's.
    monkeypatch.setattr(hub_packages, "time", SimpleNamespace(monotonic=lambda: clock[0], sleep=sleep))
    monkeypatch.setattr(hub_packages, "deadline", SimpleNamespace(remaining=lambda: None))
    answers = iter(["NotRun", "Executing", "Executing", "Executing", "Executing", "Executing", "Succeeded"])
    monkeypatch.setattr(hub_packages.DataPackages, "status", lambda self, execution_id: next(answers))
    packages = hub_packages.DataPackages(get_connector(finops_system))

    assert packages.wait("exec-1") == "Succeeded"
    assert pauses == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0]

    clock[0], pauses[:] = 0.0, []
    monkeypatch.setattr(hub_packages, "deadline", SimpleNamespace(remaining=lambda: 10.0 - clock[0]))
    monkeypatch.setattr(hub_packages.DataPackages, "status", lambda self, execution_id: "Executing")
    with pytest.raises(errors.TransientError, match="still Executing"):
        packages.wait("exec-2")
    assert sum(pauses) <= 10.0 - hub_packages.STATUS_CALL_SECONDS


def test_an_execution_runs_as_a_batch_job_executing_until_it_ends(finops_system: System):
    """Data management package REST API: ExportToPackage / ImportFromPackage start a batch job and answer its
    execution id; GetExecutionSummaryStatus says Executing until the job ends, and only then are the rows
    written (an import) or the package there (an export: GetExportedPackageUrl is empty before)."""
    finops.configure(job_seconds=1.0)
    finops.data_project("CustomerImport", entities=["CustomersV3"], direction="import")
    finops.data_project("CustomerExport", entities=["CustomersV3"])
    package = dmf.package_build(
        definition_group="CustomerImport",
        entities={"CustomersV3": [{"CustomerAccount": "J1", "OrganizationName": "Job 1", "CustomerGroupId": "10"}]},
    )
    packages = get_connector(finops_system).packages

    imported = packages.import_package(package=package, project="CustomerImport", company="SE01")
    exported = packages.export(project="CustomerExport", company="SE01")
    during = (packages.status(imported), packages.status(exported), packages.exported_url(exported))
    written_during = rows("CustomersV3").filter(company="se01").exists()

    assert during == ("Executing", "Executing", "")
    assert written_during is False
    assert packages.wait(imported) == "Succeeded"
    assert set(rows("CustomersV3").filter(company="se01").values_list("key", flat=True)) == {"J1"}
    # The export's job read the rows when it ran, after the import's job had written its row.
    assert packages.wait(exported) == "Succeeded"
    assert packages.package_rows(exported)["CustomersV3"][0]["CustomerAccount"] == "J1"


def test_a_package_flow_and_a_package_load_wait_for_the_batch_job(finops_system: System, load_flow):
    """The shipped package paths against a job that runs for a while: a delivery's import and an initial
    load's export each wait for Executing to end and carry every row once."""
    finops.configure(job_seconds=1.0)
    finops.data_project("CustomerImport", entities=["CustomersV3"], direction="import")
    options = {"transport": "package", "package_project": "CustomerImport"}
    batch = [
        DeliveryRequest(
            entity="CustomersV3",
            operation="upsert",
            key={"CustomerAccount": f"W{n}"},
            payload={"OrganizationName": f"W{n}", "CustomerGroupId": "10"},
            idempotency_key=f"w-{n}",
            company="SE01",
            options=options,
        )  # fmt: skip
        for n in range(3)
    ]

    results = get_connector(finops_system).deliver_many(batch)

    assert [r.target_key for r in results] == [f"dataAreaId='se01',CustomerAccount='W{n}'" for n in range(3)]
    assert rows("CustomersV3").filter(company="se01").count() == 3
    finops.data_project("CustomerExport", entities=["CustomersV3"])
    load_flow.options = {**load_flow.options, "transport": "package", "package_project": "CustomerExport"}
    load_flow.save()
    run = run_pages(load.load_start(flow=load_flow, company="SE01", page_size=2))
    assert (run.state, run.read, run.written) == (LoadRun.State.DONE, 3, 3)


def test_a_first_page_read_again_while_fos_job_runs_waits_for_the_same_export(load_flow, settings):
    """F&O's export job outlasting the page's wait (half the load lease) fails the read as transient; the page
    read again after its lease waits for the export it started, by the load's execution id, not a second one
    (an incremental export moves change tracking on: a second would not hold those rows)."""
    seed_customers(3)
    finops.data_project("CustomerExport", entities=["CustomersV3"])
    finops.configure(job_seconds=2.5)
    settings.ICBRIDGE_LOAD_LEASE_SECONDS = 2  # the page's read ends within 1 s
    load_flow.options = {**load_flow.options, "transport": "package", "package_project": "CustomerExport"}
    load_flow.save()
    run = load.load_start(flow=load_flow, company="SE01")

    load.load_page(run_id=run.pk)
    run.refresh_from_db()
    assert (run.state, run.read) == (LoadRun.State.RUNNING, 0)
    assert "still Executing" in run.last_error
    time.sleep(2.6)  # F&O's job ends meanwhile
    LoadRun.objects.filter(pk=run.pk).update(lease_expires_at=None)  # as the sweeper does once it ran out
    done = run_pages(run)

    assert (done.state, done.read, done.written) == (LoadRun.State.DONE, 3, 3)
    exports = EmulatorRecord.objects.filter(emulator="finops", entity="$dmf_execution")
    assert list(exports.values_list("key", flat=True)) == [run.filters["execution"]]
