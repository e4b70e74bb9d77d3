"""The F&O emulator refuses order lines whose item or unit F&O does not know, however the line is written.

Followed: "Sales order lines V2" (ITEMNUMBER is a foreign key to a product; SalesUnitSymbol the line's unit;
use the entity after the header has been created), "Purchase order lines V2" (PurchaseUnitSymbol), the "Units"
entity (UnitsOfMeasure, UnitSymbol; unit symbols compare case-insensitively) and "Data management package REST
API" (ImportFromPackage, GetExecutionSummaryStatus, GetExecutionErrors). The relation check answers
"The value '…' in field '…' is not found in the relating table '…'.", as for currencies.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from integrations import errors
from integrations.models import System
from integrations.protocols import dmf
from integrations.systems import get_connector
from sandbox import finops
from sandbox.finops.lines import reference_data_seed
from sandbox.models import EmulatorRecord
from tests.connectors.microsoft_support import MsClient
from tests.connectors.test_finops_lines import line, order, stored_lines

pytest_plugins = ["tests.connectors.microsoft_support"]

DATA = "/sandbox/finops/data"
ACTIONS = f"{DATA}/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities"


@pytest.fixture
def items(fo: MsClient) -> None:
    """se01 releases A0001 (Pcs); U0001 is released in usmf only; the units are Pcs and ea."""
    reference_data_seed(companies=["se01"], items=[("A0001", "Pcs", "12.50")], units=["Pcs", "ea"])
    reference_data_seed(companies=["usmf"], items=[("U0001", "Pcs", "1.00")], units=[])


def post(fo: MsClient, entity: str, body: dict[str, Any]) -> requests.Response:
    return fo.call("POST", f"{DATA}/{entity}?cross-company=true", json={"dataAreaId": "se01", **body})


def sales_order(fo: MsClient, number: str, **fields: Any) -> None:
    response = post(fo, "SalesOrderHeadersV2", {"SalesOrderNumber": number, "OrderingCustomerAccountNumber": "C-1",
                                                 **fields})  # fmt: skip
    assert response.status_code == 201, response.text


def infolog(response: requests.Response) -> str:
    return response.json()["error"]["innererror"]["message"]


def lines_of(entity: str) -> list[dict[str, Any]]:
    return [r.data for r in EmulatorRecord.objects.filter(emulator="finops", entity=entity, deleted=False)]


def test_a_line_naming_an_item_that_is_no_released_product_of_its_company_is_refused(fo: MsClient, items) -> None:
    """Sales order lines V2: ITEMNUMBER is a foreign key to a product, released in the line's legal entity."""
    sales_order(fo, "SO-1", DefaultShippingSiteId="1")

    unknown = post(fo, "SalesOrderLines", {"SalesOrderNumber": "SO-1", "ItemNumber": "NOPE", "SalesUnitSymbol": "Pcs"})
    elsewhere = post(fo, "SalesOrderLines", {"SalesOrderNumber": "SO-1", "ItemNumber": "U0001"})

    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"] == "An error has occurred."
    assert infolog(unknown).endswith(
        "Error: The value 'NOPE' in field 'ItemNumber' is not found in the relating table 'Released products'."
    )
    assert elsewhere.status_code == 400  # released in usmf, not in se01
    assert "'U0001' in field 'ItemNumber'" in infolog(elsewhere)
    assert lines_of("SalesOrderLines") == []


def test_a_line_naming_an_unknown_unit_is_refused_on_sales_quotation_and_purchase_lines(fo: MsClient, items) -> None:
    """Sales order lines V2 (SalesUnitSymbol), Purchase order lines V2 (PurchaseUnitSymbol), Units."""
    sales_order(fo, "SO-1", DefaultShippingSiteId="1")
    quotation = post(fo, "SalesQuotationHeadersV2", {"SalesQuotationNumber": "SQ-1",
                                                     "RequestingCustomerAccountNumber": "C-1"})  # fmt: skip
    assert quotation.status_code == 201, quotation.text
    header = post(fo, "PurchaseOrderHeadersV2", {"PurchaseOrderNumber": "PO-1", "OrderVendorAccountNumber": "V-1"})
    assert header.status_code == 201, header.text

    sales = post(fo, "SalesOrderLines", {"SalesOrderNumber": "SO-1", "ItemNumber": "A0001", "SalesUnitSymbol": "crate"})
    quote = post(fo, "SalesQuotationLines", {"SalesQuotationNumber": "SQ-1", "ItemNumber": "A0001",
                                             "SalesUnitSymbol": "crate"})  # fmt: skip
    purchase = post(fo, "PurchaseOrderLinesV2", {"PurchaseOrderNumber": "PO-1", "LineNumber": 1,
                                                 "ItemNumber": "A0001", "PurchaseUnitSymbol": "crate"})  # fmt: skip

    assert sales.status_code == 400
    assert infolog(sales).endswith(
        "Error: The value 'crate' in field 'SalesUnitSymbol' is not found in the relating table 'Units'."
    )
    assert quote.status_code == 400
    assert "'crate' in field 'SalesUnitSymbol'" in infolog(quote)
    assert purchase.status_code == 400
    assert "'crate' in field 'PurchaseUnitSymbol'" in infolog(purchase)
    assert lines_of("SalesOrderLines") == lines_of("SalesQuotationLines") == lines_of("PurchaseOrderLinesV2") == []


def test_a_unit_symbol_is_matched_case_insensitively(fo: MsClient, items) -> None:
    """Units: F&O compares unit symbols case-insensitively, so the Sales unit 'pcs' is the unit 'Pcs'."""
    sales_order(fo, "SO-1", DefaultShippingSiteId="1")

    lower = post(fo, "SalesOrderLines", {"SalesOrderNumber": "SO-1", "ItemNumber": "A0001", "SalesUnitSymbol": "pcs"})
    upper = post(fo, "SalesOrderLines", {"SalesOrderNumber": "SO-1", "ItemNumber": "A0001", "SalesUnitSymbol": "EA"})

    assert lower.status_code == 201, lower.text
    assert upper.status_code == 201, upper.text
    units = fo.call("GET", f"{DATA}/UnitsOfMeasure?cross-company=true").json()["value"]
    assert {u["UnitSymbol"] for u in units} == {"Pcs", "ea"}


def test_an_update_to_an_unknown_item_or_unit_is_refused_and_changes_nothing(fo: MsClient, items) -> None:
    """Sales order lines V2 supports updating lines: a changed ItemNumber or unit is checked as on create."""
    sales_order(fo, "SO-1", DefaultShippingSiteId="1")
    created = post(fo, "SalesOrderLines", {"SalesOrderNumber": "SO-1", "ItemNumber": "A0001", "SalesUnitSymbol": "ea"})
    assert created.status_code == 201, created.text
    url = f"{DATA}/SalesOrderLines(dataAreaId='se01',InventoryLotId='{created.json()['InventoryLotId']}')"

    item = fo.call("PATCH", f"{url}?cross-company=true", json={"ItemNumber": "NOPE"})
    unit = fo.call("PATCH", f"{url}?cross-company=true", json={"SalesUnitSymbol": "crate"})
    quantity = fo.call("PATCH", f"{url}?cross-company=true", json={"OrderedSalesQuantity": 3})

    assert item.status_code == 400
    assert "'NOPE' in field 'ItemNumber'" in infolog(item)
    assert unit.status_code == 400
    assert "'crate' in field 'SalesUnitSymbol'" in infolog(unit)
    assert quantity.status_code == 204  # a line whose item and unit are left alone is updated
    [stored] = lines_of("SalesOrderLines")
    assert (stored["ItemNumber"], stored["SalesUnitSymbol"], stored["OrderedSalesQuantity"]) == ("A0001", "ea", 3)


def test_a_batch_change_set_with_an_unknown_item_writes_nothing(finops_system: System) -> None:
    """OData $batch: a change set is all or nothing; its line POSTs run the same line rules as a lone POST."""
    reference_data_seed(companies=["se01"], items=[("A0001", "Pcs", "12.50")], units=["Pcs"])

    with pytest.raises(errors.RejectedError) as caught:
        get_connector(finops_system).deliver(order("SO-9", [line(1, "A0001"), line(2, "NOPE")], exists=False))

    assert "'NOPE' in field 'ItemNumber' is not found" in caught.value.message
    assert not EmulatorRecord.objects.filter(entity="SalesOrderHeadersV2", key="SO-9").exists()
    assert stored_lines("SO-9") == []


def package_import(fo: MsClient, entities: dict[str, list[dict[str, Any]]]) -> tuple[str, list[dict[str, Any]]]:
    """Upload a package (GetAzureWriteUrl, PUT), ImportFromPackage into se01; its status and execution errors."""
    finops.data_project("ICB-LINES", entities=list(entities), direction="import")
    target = json.loads(
        fo.call("POST", f"{ACTIONS}.GetAzureWriteUrl", json={"uniqueFileName": "lines"}).json()["value"]
    )
    package = dmf.package_build(definition_group="ICB-LINES", entities=entities)
    put = requests.put(target["BlobUrl"], data=package, headers={"x-ms-blob-type": "BlockBlob"},
                       verify=fo.server.ca_bundle, timeout=10)  # fmt: skip
    assert put.status_code == 201
    body = {"packageUrl": target["BlobUrl"], "definitionGroupId": "ICB-LINES", "executionId": "", "execute": True,
            "overwrite": True, "legalEntityId": "se01"}  # fmt: skip
    execution_id = fo.call("POST", f"{ACTIONS}.ImportFromPackage", json=body).json()["value"]
    status = fo.call("POST", f"{ACTIONS}.GetExecutionSummaryStatus", json={"executionId": execution_id})
    found = fo.call("POST", f"{ACTIONS}.GetExecutionErrors", json={"executionId": execution_id})
    return status.json()["value"], json.loads(found.json()["value"])


def test_a_package_row_with_an_unknown_item_is_an_execution_error_the_others_are_imported(fo: MsClient, items) -> None:
    """Data management package REST API: the rows F&O refuses are the execution's errors (PartiallySucceeded)."""
    header = {"SalesOrderNumber": "SO-P1", "OrderingCustomerAccountNumber": "C-1", "DefaultShippingSiteId": "1"}
    good = {"InventoryLotId": "IL-1", "SalesOrderNumber": "SO-P1", "ItemNumber": "A0001", "SalesUnitSymbol": "pcs"}
    bad = {"InventoryLotId": "IL-2", "SalesOrderNumber": "SO-P1", "ItemNumber": "NOPE", "SalesUnitSymbol": "Pcs"}

    status, found = package_import(fo, {"SalesOrderHeadersV2": [header], "SalesOrderLines": [good, bad]})

    assert status == "PartiallySucceeded"
    assert [(e["Entity"], e["Row"]) for e in found] == [("SalesOrderLines", 2)]
    assert (
        "The value 'NOPE' in field 'ItemNumber' is not found in the relating table 'Released products'."
        in (found[0]["Message"])
    )
    [stored] = lines_of("SalesOrderLines")
    assert (stored["InventoryLotId"], stored["ShippingSiteId"]) == ("IL-1", "1")  # the header's default site


def test_a_package_line_without_a_site_or_its_header_is_an_execution_error(fo: MsClient, items) -> None:
    """Sales order lines V2: a line needs its header and a site, its own or the header's (a mandatory dimension)."""
    header = {"SalesOrderNumber": "SO-P2", "OrderingCustomerAccountNumber": "C-1"}  # no default site
    no_site = {"InventoryLotId": "IL-3", "SalesOrderNumber": "SO-P2", "ItemNumber": "A0001"}
    no_header = {"InventoryLotId": "IL-4", "SalesOrderNumber": "SO-NONE", "ItemNumber": "A0001", "ShippingSiteId": "1"}

    status, found = package_import(fo, {"SalesOrderHeadersV2": [header], "SalesOrderLines": [no_site, no_header]})

    assert status == "PartiallySucceeded"  # the header was imported
    messages = {e["Row"]: e["Message"] for e in found if e["Entity"] == "SalesOrderLines"}
    assert "Inventory dimension Site is mandatory and must consequently be specified." in messages[1]
    assert "Sales order SO-NONE does not exist." in messages[2]
    assert lines_of("SalesOrderLines") == []


def test_a_purchase_order_line_needs_its_header(fo: MsClient, items) -> None:
    """Purchase order lines V2: a line belongs to a purchase order created first (no deep insert)."""
    orphan = post(fo, "PurchaseOrderLinesV2", {"PurchaseOrderNumber": "PO-404", "LineNumber": 1,
                                               "ItemNumber": "A0001", "PurchaseUnitSymbol": "Pcs"})  # fmt: skip

    assert orphan.status_code == 400
    assert "Purchase order PO-404 does not exist." in infolog(orphan)
    assert lines_of("PurchaseOrderLinesV2") == []


def test_an_update_cannot_leave_a_line_without_its_item_site_or_order(fo: MsClient, items) -> None:
    """Sales order lines V2: ItemNumber is required and Site a mandatory dimension on the line an update
    leaves, and the order it names must exist; an update is checked as the line it makes, not as a patch."""
    sales_order(fo, "SO-1", DefaultShippingSiteId="1")
    created = post(fo, "SalesOrderLines", {"SalesOrderNumber": "SO-1", "ItemNumber": "A0001", "SalesUnitSymbol": "ea"})
    url = f"{DATA}/SalesOrderLines(dataAreaId='se01',InventoryLotId='{created.json()['InventoryLotId']}')"

    answers = {
        name: fo.call("PATCH", f"{url}?cross-company=true", json=patch)
        for name, patch in {
            "no item": {"ItemNumber": ""},
            "null item": {"ItemNumber": None},
            "no unit": {"SalesUnitSymbol": ""},
            "no site": {"ShippingSiteId": ""},
            "no order": {"SalesOrderNumber": "SO-NONE"},
        }.items()
    }

    assert {name: answer.status_code for name, answer in answers.items()} == dict.fromkeys(answers, 400)
    assert "Field 'ItemNumber' must be filled in." in infolog(answers["null item"])
    assert "Field 'SalesUnitSymbol' must be filled in." in infolog(answers["no unit"])
    assert "Inventory dimension Site is mandatory" in infolog(answers["no site"])
    assert "Sales order SO-NONE does not exist." in infolog(answers["no order"])
    [stored] = lines_of("SalesOrderLines")
    assert (stored["ItemNumber"], stored["SalesUnitSymbol"], stored["ShippingSiteId"]) == ("A0001", "ea", "1")


def test_a_package_row_of_an_existing_line_updates_it_and_keeps_its_own_site(fo: MsClient, items) -> None:
    """Data entities and packages: an imported row of an existing record updates it; the line keeps the site and
    warehouse it has (not the header's defaults again), and the data file's text quantities are numbers."""
    sales_order(fo, "SO-W", DefaultShippingSiteId="1")
    created = post(fo, "SalesOrderLines", {"SalesOrderNumber": "SO-W", "ItemNumber": "A0001", "ShippingSiteId": "2",
                                           "ShippingWarehouseId": "W2"})  # fmt: skip
    lot = created.json()["InventoryLotId"]

    status, found = package_import(fo, {"SalesOrderLines": [
        {"InventoryLotId": lot, "SalesOrderNumber": "SO-W", "ItemNumber": "A0001", "LineDescription": "Re-imported",
         "OrderedSalesQuantity": "2"},
    ]})  # fmt: skip

    assert (status, found) == ("Succeeded", [])
    [stored] = lines_of("SalesOrderLines")
    assert (stored["ShippingSiteId"], stored["ShippingWarehouseId"]) == ("2", "W2")
    assert (stored["LineDescription"], stored["OrderedSalesQuantity"]) == ("Re-imported", 2)


def test_units_of_measure_are_shared_by_every_legal_entity(fo: MsClient, items) -> None:
    """Units (UnitOfMeasureEntity): the unit table saves no data per company, so the entity has no dataAreaId:
    a unit is addressed by its symbol alone, listed in every company, and a dataAreaId is no property of it."""
    by_symbol = fo.call("GET", f"{DATA}/UnitsOfMeasure(UnitSymbol='ea')")
    with_company = fo.call("GET", f"{DATA}/UnitsOfMeasure(dataAreaId='se01',UnitSymbol='ea')")
    listed = fo.call("GET", f"{DATA}/UnitsOfMeasure")  # the caller's default company, no cross-company
    created = fo.call("POST", f"{DATA}/UnitsOfMeasure", json={"UnitSymbol": "crate", "UnitDescription": "Crate"})
    refused = fo.call("POST", f"{DATA}/UnitsOfMeasure", json={"dataAreaId": "se01", "UnitSymbol": "tray"})

    assert by_symbol.status_code == 200, by_symbol.text
    assert "dataAreaId" not in by_symbol.json()
    assert with_company.status_code == 400
    assert sorted(u["UnitSymbol"] for u in listed.json()["value"]) == ["Pcs", "ea"]  # once each, not per company
    assert created.status_code == 201, created.text
    assert created.headers["Location"].endswith("/UnitsOfMeasure(UnitSymbol='crate')")
    assert refused.status_code == 400
    assert "The property 'dataAreaId' does not exist" in refused.json()["error"]["message"]
