"""DataverseConnector reading an order's lines (salesorderdetail rows) from the Dataverse emulator."""

from __future__ import annotations

from integrations.models import System
from integrations.systems import get_connector
from integrations.systems.dataverse.connector import DataverseConnector

pytest_plugins = ["tests.connectors.microsoft_support"]


def _order_with_lines(connector: DataverseConnector, number: str, *quantities: int) -> str:
    """An order created with its lines in one deep insert ("Create related table rows in one operation")."""
    lines = [{"productdescription": f"{number}-{q}", "isproductoverridden": True, "quantity": q} for q in quantities]
    response = connector.request(
        "POST",
        f"{connector.api}/salesorders",
        json={"name": number, "ordernumber": number, "order_details": lines},
        headers={"Prefer": "return=representation"},
    )
    return response.json()["salesorderid"]


def test_fetch_rows_reads_only_the_lines_of_the_named_order(dataverse_system: System) -> None:
    """Filter rows: _salesorderid_value eq <guid> selects the salesorderdetail rows bound to that order."""
    connector = get_connector(dataverse_system)
    order_id = _order_with_lines(connector, "SO-10", 2, 7)
    _order_with_lines(connector, "SO-11", 5)

    rows = connector.fetch_rows(entity="salesorderdetails", key={"_salesorderid_value": order_id})

    assert sorted(row["quantity"] for row in rows) == [2, 7]
    assert {row["_salesorderid_value"] for row in rows} == {order_id}


def test_fetch_rows_takes_the_order_id_in_any_guid_spelling(dataverse_system: System) -> None:
    """Events and operators may spell a GUID {UPPER}: the filter sends it as Dataverse answers it."""
    connector = get_connector(dataverse_system)
    order_id = _order_with_lines(connector, "SO-12", 3)

    rows = connector.fetch_rows(entity="salesorderdetails", key={"_salesorderid_value": "{" + order_id.upper() + "}"})
    none = connector.fetch_rows(entity="salesorderdetails", key={"productdescription": "no such line"})

    assert [row["quantity"] for row in rows] == [3]
    assert none == []
