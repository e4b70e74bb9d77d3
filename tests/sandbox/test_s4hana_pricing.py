"""S/4HANA emulator: computed amounts are S/4's (sap:creatable="false" refused, items priced from conditions)."""

from __future__ import annotations

from decimal import Decimal

import pytest
import requests

from integrations import mapping
from integrations.scenarios.templates.order_to_cash import ORDER_TO_S4
from sandbox.s4hana.model import load_service

AUTH = ("ICBRIDGE", "sandbox")


@pytest.fixture
def session(live_server) -> tuple[requests.Session, str]:
    root = f"{live_server.url}/sandbox/s4hana/sap/opu/odata/sap/API_SALES_ORDER_SRV"
    client = requests.Session()
    client.auth = AUTH
    response = client.get(f"{root}/", headers={"x-csrf-token": "Fetch"}, timeout=5)
    client.headers.update({"x-csrf-token": response.headers["x-csrf-token"], "Accept": "application/json"})
    return client, root


def order(*items: dict) -> dict:
    return {
        "SalesOrderType": "OR",
        "SalesOrganization": "1710",
        "DistributionChannel": "10",
        "OrganizationDivision": "00",
        "SoldToParty": "17100001",
        "PurchaseOrderByCustomer": "PO-PRICE",
        "to_Item": list(items),
    }


def test_a_create_carrying_a_non_creatable_net_amount_is_refused(session):
    """SAP Annotations for OData Version 2.0: sap:creatable="false" — the value cannot be set on create."""
    client, root = session
    item = {"Material": "A0001", "RequestedQuantity": "2", "RequestedQuantityUnit": "PC", "NetAmount": "99.00"}

    response = client.post(f"{root}/A_SalesOrder", json=order(item), timeout=5)

    assert response.status_code == 400
    error = response.json()["error"]
    assert "'NetAmount'" in error["message"]["value"]
    assert "not creatable" in error["message"]["value"]
    assert not client.get(f"{root}/A_SalesOrder", params={"$filter": "PurchaseOrderByCustomer eq 'PO-PRICE'"}).json()[
        "d"
    ]["results"]
    header = client.post(f"{root}/A_SalesOrder", json={**order(), "TotalNetAmount": "1"}, timeout=5)
    assert header.status_code == 400
    assert "'TotalNetAmount'" in header.json()["error"]["message"]["value"]


def test_items_are_priced_from_condition_records_and_the_header_sums_them(session):
    """SAP Help "Pricing and Conditions" (simplified: one PR00 price per material, no discounts or taxes)."""
    client, root = session
    items = [
        {"Material": "A0001", "RequestedQuantity": "3", "RequestedQuantityUnit": "PC"},  # 12.50
        {"Material": "C0420", "RequestedQuantity": "2.5", "RequestedQuantityUnit": "KG"},  # 3.35
    ]

    created = client.post(f"{root}/A_SalesOrder", json=order(*items), timeout=5)

    assert created.status_code == 201, created.text
    number = created.json()["d"]["SalesOrder"]
    read = client.get(f"{root}/A_SalesOrder('{number}')", params={"$expand": "to_Item"}, timeout=5).json()["d"]
    assert [Decimal(i["NetAmount"]) for i in read["to_Item"]["results"]] == [Decimal("37.50"), Decimal("8.38")]
    assert Decimal(read["TotalNetAmount"]) == Decimal("45.88")


@pytest.mark.django_db  # mapping reads its value maps' stamps when a map is cached from an earlier test
def test_the_order_template_writes_only_creatable_properties():
    """The shipped order mapping sends nothing API_SALES_ORDER_SRV's $metadata marks sap:creatable="false"."""
    service = load_service("API_SALES_ORDER_SRV")
    header, item = service.entity_set("A_SalesOrder"), service.entity_set("A_SalesOrderItem")
    payload = {
        "attributes": {"ordernumber": "ORD-1", "totalamount": 25},
        "fetched": {"lines": [{"productdescription": "A0001", "quantity": 2, "priceperunit": 12.5}]},
    }
    context = {
        "sales_organization": "1710",
        "distribution_channel": "10",
        "division": "00",
        "chain": {"customer": {"target_key": "C-1"}},
    }

    mapped = mapping.apply(spec=ORDER_TO_S4, payload=payload, context=context)

    assert mapped["to_Item"]
    assert all(header.props[name].creatable for name in mapped if name in header.props)
    assert all(item.props[name].creatable for line in mapped["to_Item"] for name in line)
