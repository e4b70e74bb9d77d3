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
