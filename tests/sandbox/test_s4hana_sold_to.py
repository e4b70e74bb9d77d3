"""S/4HANA emulator: a business partner is a sold-to party only as a customer with sales area data."""

from __future__ import annotations

import pytest
import requests

AUTH = ("ICBRIDGE", "sandbox")


@pytest.fixture
def client(live_server) -> tuple[requests.Session, str]:
    root = f"{live_server.url}/sandbox/s4hana/sap/opu/odata/sap"
    session = requests.Session()
    session.auth = AUTH
    token = session.get(f"{root}/API_BUSINESS_PARTNER/", headers={"x-csrf-token": "Fetch"}, timeout=5)
    session.headers.update({"x-csrf-token": token.headers["x-csrf-token"], "Accept": "application/json"})
    return session, root


def partner(number: str, **parts) -> dict:
    return {
        "BusinessPartner": number,
        "BusinessPartnerCategory": "2",
        "BusinessPartnerGrouping": "BP02",
        "OrganizationBPName1": f"Partner {number}",
        **parts,
    }


def order(sold_to: str) -> dict:
    return {
        "SalesOrderType": "OR",
        "SalesOrganization": "1710",
        "DistributionChannel": "10",
        "OrganizationDivision": "00",
        "SoldToParty": sold_to,
        "to_Item": [{"Material": "A0001", "RequestedQuantity": "1", "RequestedQuantityUnit": "PC"}],
    }


SALES_AREA = {"SalesOrganization": "1710", "DistributionChannel": "10", "Division": "00", "Currency": "USD"}


def test_a_partner_without_customer_role_and_sales_area_is_no_sold_to_party(client):
    """SAP Help "Customer-Vendor Integration" / API_BUSINESS_PARTNER: the customer role FLCU01 and sales
    area data (to_Customer/to_CustomerSalesArea) make a business partner a sold-to party."""
    session, root = client
    assert session.post(f"{root}/API_BUSINESS_PARTNER/A_BusinessPartner", json=partner("BP-PLAIN"), timeout=5).ok
    roles_only = partner("BP-ROLE", to_BusinessPartnerRole=[{"BusinessPartnerRole": "FLCU01"}])
    assert session.post(f"{root}/API_BUSINESS_PARTNER/A_BusinessPartner", json=roles_only, timeout=5).ok

    for number in ("BP-PLAIN", "BP-ROLE", "NOBODY"):
        refused = session.post(f"{root}/API_SALES_ORDER_SRV/A_SalesOrder", json=order(number), timeout=5)
        assert refused.status_code == 400, number
        error = refused.json()["error"]
        assert error["message"]["value"] == f"Sold-to party {number} not maintained for sales area 1710 10 00"
        assert error["innererror"]["errordetails"][0]["target"] == "SoldToParty"


def test_a_customer_created_by_deep_insert_is_accepted_as_sold_to_party(client):
    """API_BUSINESS_PARTNER deep insert: A_BusinessPartner with to_BusinessPartnerRole and
    to_Customer/to_CustomerSalesArea; the customer takes the partner's number."""
    session, root = client
    body = partner(
        "BP-CUST",
        to_BusinessPartnerRole=[{"BusinessPartnerRole": "FLCU01"}, {"BusinessPartnerRole": "FLCU00"}],
        to_Customer={"to_CustomerSalesArea": [SALES_AREA]},
    )
    created = session.post(f"{root}/API_BUSINESS_PARTNER/A_BusinessPartner", json=body, timeout=5)
    assert created.status_code == 201, created.text
    read = session.get(
        f"{root}/API_BUSINESS_PARTNER/A_BusinessPartner('BP-CUST')",
        params={"$expand": "to_Customer/to_CustomerSalesArea,to_BusinessPartnerRole"},
        timeout=5,
    ).json()["d"]
    assert read["Customer"] == "BP-CUST"
    assert read["to_Customer"]["to_CustomerSalesArea"]["results"][0]["SalesOrganization"] == "1710"

    accepted = session.post(f"{root}/API_SALES_ORDER_SRV/A_SalesOrder", json=order("BP-CUST"), timeout=5)

    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["d"]["SoldToParty"] == "BP-CUST"
