"""Lookups on the Dataverse emulator: set with @odata.bind, read back as _<name>_value, never set as text."""

from __future__ import annotations

from sandbox.dataverse.store import live
from tests.connectors.microsoft_support import MsClient

pytest_plugins = ["tests.connectors.microsoft_support"]

API = "/sandbox/dataverse/api/data/v9.2"
UOM = "6f1b0f6e-0000-4000-8000-000000000001"


def test_a_lookup_set_as_text_is_refused_and_nothing_is_stored(dv: MsClient) -> None:
    """Associate and disassociate table rows using the Web API: a lookup is set with @odata.bind only."""
    response = dv.call("POST", f"{API}/products", json={"name": "Chair", "productnumber": "P1", "defaultuomid": "ea"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x80048d19"
    assert "navigation property 'defaultuomid'" in response.json()["error"]["message"]
    assert live("products").exists() is False


def test_the_lookup_value_property_cannot_be_written(dv: MsClient) -> None:
    """Lookup properties: _<name>_value is read-only; writes go through the navigation property."""
    response = dv.call("POST", f"{API}/products", json={"name": "Chair", "_defaultuomid_value": UOM})

    assert response.status_code == 400
    assert "Use Navigation properties instead" in response.json()["error"]["message"]


def test_a_bound_lookup_reads_back_as_its_value_property(dv: MsClient) -> None:
    """Lookup properties: a row bound with "/uoms(<id>)" reads back with _defaultuomid_value = <id>."""
    body = {"name": "Chair", "productnumber": "P2", "defaultuomid@odata.bind": f"/uoms({UOM})"}

    created = dv.call("POST", f"{API}/products", json=body)
    read = dv.call("GET", f"{API}/products(productnumber='P2')", params={"$select": "_defaultuomid_value"})
    garbage = dv.call("POST", f"{API}/products", json={"name": "X", "defaultuomid@odata.bind": "ea"})

    assert created.status_code == 204, created.text
    assert read.json()["_defaultuomid_value"] == UOM
    assert garbage.status_code == 400


def test_lookups_carry_their_table_and_name_when_the_read_asks_for_annotations(dv: MsClient) -> None:
    """Select columns using OData (lookup property values, formatted values): with Prefer:
    odata.include-annotations, a _<lookup>_value carries @Microsoft.Dynamics.CRM.lookuplogicalname and
    @OData.Community.Display.V1.FormattedValue (the related row's primary name); without it, neither."""
    created = dv.call("POST", f"{API}/accounts", json={"name": "Contoso", "accountnumber": "ACC-1"})
    account_id = created.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    contact = {"lastname": "Smith", "parentcustomerid_account@odata.bind": f"/accounts({account_id})"}
    contact_id = dv.call("POST", f"{API}/contacts", json=contact).headers["OData-EntityId"].rsplit("(", 1)[1][:-1]
    lookup = "_parentcustomerid_value"

    every = dv.call("GET", f"{API}/contacts", headers={"Prefer": 'odata.include-annotations="*"'})
    one_term = dv.call(
        "GET",
        f"{API}/contacts({contact_id})",
        headers={"Prefer": 'odata.include-annotations="Microsoft.Dynamics.CRM.*",odata.maxpagesize=10'},
    )
    formatted = {"Prefer": 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'}
    related = dv.call("GET", f"{API}/accounts({account_id})/contact_customer_accounts", headers=formatted)
    plain = dv.call("GET", f"{API}/contacts({contact_id})")

    row = every.json()["value"][0]
    assert row[lookup] == account_id
    assert row[f"{lookup}@Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
    assert row[f"{lookup}@OData.Community.Display.V1.FormattedValue"] == "Contoso"
    assert every.headers["Preference-Applied"] == 'odata.include-annotations="*"'
    assert one_term.json()[f"{lookup}@Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
    assert f"{lookup}@OData.Community.Display.V1.FormattedValue" not in one_term.json()
    assert related.json()["value"][0][f"{lookup}@OData.Community.Display.V1.FormattedValue"] == "Contoso"
    assert f"{lookup}@Microsoft.Dynamics.CRM.lookuplogicalname" not in related.json()["value"][0]
    assert not [name for name in plain.json() if "@" in name and not name.startswith("@odata")]
    assert "Preference-Applied" not in plain.headers


def test_annotation_preferences_take_a_quoted_list_and_exclusions_and_a_lookup_reads_its_own_table(
    dv: MsClient,
) -> None:
    """Select columns using OData: odata.include-annotations takes a comma-separated list of terms (quoted)
    and "-" exclusions; a lookup with one target table (productid) is that table's row, even where another
    table holds a row with the same id."""
    shared_id = "0b5c3e52-0000-4000-8000-0000000000aa"
    dv.call("POST", f"{API}/accounts", json={"accountid": shared_id, "name": "Contoso", "accountnumber": "A-9"})
    dv.call("POST", f"{API}/products", json={"productid": shared_id, "name": "Chair", "productnumber": "P-9"})
    order = dv.call("POST", f"{API}/salesorders", json={"name": "Order SO-A", "ordernumber": "SO-A"})
    order_id = order.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    line = {"salesorderid@odata.bind": f"/salesorders({order_id})", "productid@odata.bind": f"/products({shared_id})"}
    assert dv.call("POST", f"{API}/salesorderdetails", json={**line, "quantity": 1}).status_code == 204
    both = (
        'odata.include-annotations="OData.Community.Display.V1.FormattedValue,Microsoft.Dynamics.CRM.lookuplogicalname"'
    )

    listed = dv.call("GET", f"{API}/salesorderdetails", headers={"Prefer": both}).json()["value"][0]
    excluded = dv.call(
        "GET",
        f"{API}/salesorderdetails",
        headers={"Prefer": 'odata.include-annotations="*,-OData.Community.Display.V1.FormattedValue"'},
    ).json()["value"][0]

    assert listed["_productid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "product"
    assert listed["_productid_value@OData.Community.Display.V1.FormattedValue"] == "Chair"
    assert listed["_salesorderid_value@OData.Community.Display.V1.FormattedValue"] == "Order SO-A"
    assert excluded["_productid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "product"
    assert "_productid_value@OData.Community.Display.V1.FormattedValue" not in excluded
