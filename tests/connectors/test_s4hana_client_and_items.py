"""S/4HANA: the logon client (sap-client) and updates of an order's items (OData v2 has no deep update)."""

from __future__ import annotations

from decimal import Decimal

import pytest
import requests

from integrations import errors
from integrations.models import System
from integrations.protocols.transport import DeliveryRequest
from integrations.systems import get_connector

ORDERS = "API_SALES_ORDER_SRV/A_SalesOrder"


@pytest.fixture
def s4_system(make_system, live_server) -> System:
    return make_system(
        name="S/4 1710",
        slug="s4-1710",
        kind=System.Kind.S4HANA,
        base_url=f"{live_server.url}/sandbox/s4hana/sap/opu/odata/sap",
        auth_type=System.AuthType.BASIC,
        client_id="ICBRIDGE",
        secret="sandbox",
        timeout_seconds=2,
        settings={"sap_client": "100"},
    )


def order(po: str, *quantities: int) -> dict:
    return {
        "SalesOrderType": "OR",
        "SalesOrganization": "1710",
        "DistributionChannel": "10",
        "OrganizationDivision": "00",
        "SoldToParty": "17100001",
        "PurchaseOrderByCustomer": po,
        "to_Item": [
            {"SalesOrderItem": str(10 * n), "Material": "A0001", "RequestedQuantity": str(q)}
            for n, q in enumerate(quantities, 1)
        ],
    }


def test_a_logon_to_a_client_the_system_does_not_have_fails(live_server):
    """SAP Help "SAP URL Parameters": sap-client names the logon client, else the system's standard client."""
    root = f"{live_server.url}/sandbox/s4hana/sap/opu/odata/sap/API_SALES_ORDER_SRV/"

    assert requests.get(root, params={"sap-client": "100"}, auth=("ICBRIDGE", "sandbox"), timeout=5).status_code == 200
    assert requests.get(root, auth=("ICBRIDGE", "sandbox"), timeout=5).status_code == 200  # the standard client
    wrong = requests.get(root, params={"sap-client": "200"}, auth=("ICBRIDGE", "sandbox"), timeout=5)
    assert wrong.status_code == 401
    assert wrong.text == "Logon failed"


def test_the_connector_sends_the_systems_sap_client_on_every_request(s4_system):
    connector = get_connector(s4_system)
    result = connector.deliver(
        DeliveryRequest(entity=ORDERS, operation="create", payload=order("PO-C", 2), key={}, idempotency_key="c-1")
    )
    assert connector.fetch(entity=ORDERS, key={"SalesOrder": result.target_key})["PurchaseOrderByCustomer"] == "PO-C"

    s4_system.settings = {"sap_client": "200"}
    s4_system.save()
    with pytest.raises(errors.AuthError):
        get_connector(s4_system).fetch(entity=ORDERS, key={"SalesOrder": result.target_key})


def test_an_upsert_of_an_existing_order_writes_its_changed_and_new_items(s4_system):
    """API_SALES_ORDER_SRV: A_SalesOrderItem is updated by PATCH and created through A_SalesOrder(…)/to_Item."""
    connector = get_connector(s4_system)
    key = {"PurchaseOrderByCustomer": "PO-U"}
    connector.deliver(
        DeliveryRequest(entity=ORDERS, operation="upsert", payload=order("PO-U", 2, 3), key=key, idempotency_key="u-1")
    )

    result = connector.deliver(
        DeliveryRequest(
            entity=ORDERS, operation="upsert", payload=order("PO-U", 2, 5, 1), key=key, idempotency_key="u-2"
        )
    )

    stored = connector.fetch_document(entity=ORDERS, key=key, lines=["to_Item"])
    assert [(i["SalesOrderItem"], Decimal(i["RequestedQuantity"])) for i in stored["to_Item"]] == [
        ("10", 2),
        ("20", 5),
        ("30", 1),
    ]
    assert "+ 2 item request(s)" in result.request_summary
    assert Decimal(stored["TotalNetAmount"]) == Decimal("12.50") * 8  # priced again after the change
