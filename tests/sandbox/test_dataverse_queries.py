"""Query options the Dataverse emulator does not implement are refused, never silently ignored."""

from __future__ import annotations

import pytest

from tests.connectors.microsoft_support import MsClient

pytest_plugins = ["tests.connectors.microsoft_support"]

API = "/sandbox/dataverse/api/data/v9.2"


@pytest.mark.parametrize(
    "option",
    [
        {"$apply": "aggregate(revenue with sum as total)"},
        {"fetchXml": "<fetch><entity name='account'><attribute name='name'/></entity></fetch>"},
        {"$search": "Contoso"},
        {"$count": "true"},
        {"$expand": "contact_customer_accounts"},  # collection-valued: the sandbox expands simple lookups only
        {"$bogus": "1"},
        {"name": "Contoso"},
    ],
)
def test_an_unknown_or_unemulated_query_option_is_a_400_in_the_web_api_error_shape(
    dv: MsClient, option: dict[str, str]
) -> None:
    """Query data using the Web API; Compose HTTP requests and handle errors: 400 {"error": {code, message}}."""
    dv.call("POST", f"{API}/accounts", json={"name": "Contoso", "accountnumber": "Q1"})

    response = dv.call("GET", f"{API}/accounts", params=option)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "0x80060888"
    assert f"'{next(iter(option))}'" in error["message"]
    assert "value" not in response.json()


def test_a_single_row_read_takes_select_only(dv: MsClient) -> None:
    """Retrieve a table row using the Web API: $select (and $expand, which the sandbox does not emulate)."""
    dv.call("POST", f"{API}/accounts", json={"name": "Contoso", "accountnumber": "Q2"})

    good = dv.call("GET", f"{API}/accounts(accountnumber='Q2')", params={"$select": "name"})
    bad = dv.call("GET", f"{API}/accounts(accountnumber='Q2')", params={"$apply": "groupby((name))"})

    assert good.status_code == 200
    assert bad.status_code == 400
