"""F&O refuses currencies and countries/regions given by name: it stores ISO codes."""

from __future__ import annotations

import pytest

from sandbox.models import EmulatorRecord
from tests.connectors.microsoft_support import MsClient

pytest_plugins = ["tests.connectors.microsoft_support"]

DATA = "/sandbox/finops/data"


@pytest.mark.parametrize(
    ("field", "value", "table"),
    [
        ("SalesCurrencyCode", "Danish Krone", "Currency"),
        ("AddressCountryRegionISOCode", "Denmark", "Country/region"),
        ("AddressCountryRegionId", "DK", "Country/region"),
    ],
)
def test_a_name_where_f_and_o_needs_a_code_is_not_found_in_the_relating_table(
    fo: MsClient, field: str, value: str, table: str
) -> None:
    """Currencies and exchange rates; Configure country/region: currency and country are ISO codes."""
    body = {"dataAreaId": "usmf", "CustomerAccount": "C-1", "CustomerGroupId": "10", field: value}

    response = fo.call("POST", f"{DATA}/CustomersV3?cross-company=true", json=body)

    assert response.status_code == 400
    inner = response.json()["error"]["innererror"]["message"]
    assert f"The value '{value}' in field '{field}' is not found in the relating table '{table}'." in inner
    assert EmulatorRecord.objects.filter(emulator="finops", entity="CustomersV3").exists() is False


def test_iso_codes_are_accepted(fo: MsClient) -> None:
    """Currencies and exchange rates: DKK / DK / DNK are the codes F&O holds."""
    body = {
        "dataAreaId": "usmf",
        "CustomerAccount": "C-2",
        "CustomerGroupId": "10",
        "SalesCurrencyCode": "DKK",
        "AddressCountryRegionISOCode": "DK",
        "AddressCountryRegionId": "DNK",
    }

    response = fo.call("POST", f"{DATA}/CustomersV3?cross-company=true", json=body)

    assert response.status_code == 201, response.text
