"""The S/4HANA OData v2 emulator over real sockets: CSRF, deep insert, query options, ETags, $batch, events."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyodata
import pytest
import requests

from sandbox import s4hana
from sandbox.common.faults import set_faults
from sandbox.models import EmulatorSubscription
from tests.conftest import fixture_path, wait_until

AUTH = ("ICBRIDGE", "sandbox")


@pytest.fixture
def root(live_server) -> str:
    return f"{live_server.url}/sandbox/s4hana/sap/opu/odata/sap"


@pytest.fixture
def session(root) -> requests.Session:
    """A client that fetched a CSRF token the way SAP documents it."""
    client = requests.Session()
    client.auth = AUTH
    response = client.get(f"{root}/API_SALES_ORDER_SRV/", headers={"x-csrf-token": "Fetch"}, timeout=5)
    client.headers.update({"x-csrf-token": response.headers["x-csrf-token"], "Accept": "application/json"})
    return client


def order(items: int = 2, **overrides) -> dict:
    body = {
        "SalesOrderType": "OR",
        "SalesOrganization": "1710",
        "DistributionChannel": "10",
        "OrganizationDivision": "00",
        "SoldToParty": "17100001",
        "PurchaseOrderByCustomer": "PO-1",
        "to_Item": [
            {"Material": f"TG{n}", "RequestedQuantity": str(n), "RequestedQuantityUnit": "PC"}
            for n in range(1, items + 1)
        ],
    }
    body.update(overrides)
    return body


def test_write_without_csrf_token_is_refused_like_sap_gateway(root):
    response = requests.post(f"{root}/API_SALES_ORDER_SRV/A_SalesOrder", json=order(), auth=AUTH, timeout=5)

    assert response.status_code == 403
    assert response.headers["x-csrf-token"] == "Required"
    assert response.text == "CSRF token validation failed"


def test_token_is_bound_to_the_session_cookie(root, session):
    without_cookie = requests.post(
        f"{root}/API_SALES_ORDER_SRV/A_SalesOrder",
        json=order(),
        auth=AUTH,
        headers={"x-csrf-token": session.headers["x-csrf-token"]},
        timeout=5,
    )

    assert without_cookie.status_code == 403
    assert session.post(f"{root}/API_SALES_ORDER_SRV/A_SalesOrder", json=order(), timeout=5).status_code == 201


def test_deep_insert_creates_order_with_items_and_expand_reads_them(root, session):
    partners = [{"PartnerFunction": "SH", "Customer": "17100002"}]
    created = session.post(
        f"{root}/API_SALES_ORDER_SRV/A_SalesOrder", json=order(items=5, to_Partner=partners), timeout=5
    )
    number = created.json()["d"]["SalesOrder"]

    read = session.get(
        f"{root}/API_SALES_ORDER_SRV/A_SalesOrder('{number}')", params={"$expand": "to_Item,to_Partner"}, timeout=5
    )

    assert created.status_code == 201
    assert created.headers["Location"].endswith(f"A_SalesOrder('{number}')")
    body = read.json()["d"]
    assert body["__metadata"]["type"] == "API_SALES_ORDER_SRV.A_SalesOrderType"
    assert body["__metadata"]["etag"].startswith("W/\"datetimeoffset'")
    assert [i["SalesOrderItem"] for i in body["to_Item"]["results"]] == ["10", "20", "30", "40", "50"]
    assert body["to_Item"]["results"][4]["RequestedQuantity"] == "5"
    assert [(p["PartnerFunction"], p["Customer"]) for p in body["to_Partner"]["results"]] == [("SH", "17100002")]
    assert body["to_Text"] == {"__deferred": {"uri": f"{body['__metadata']['uri']}/to_Text"}}
    assert body["CreationDate"].startswith("/Date(")
    # Every property of the real type is there, as in the captured answer.
    captured = json.loads(fixture_path("s4hana/a-salesorder-expand-to_item.response.json").read_text())["d"]
    assert set(captured) - {"to_Item"} <= set(body)


def test_query_options_filter_top_skip_inlinecount(root, session):
    for po in ("A-1", "A-2", "B-1"):
        session.post(
            f"{root}/API_SALES_ORDER_SRV/A_SalesOrder", json=order(items=1, PurchaseOrderByCustomer=po), timeout=5
        )

    response = session.get(
        f"{root}/API_SALES_ORDER_SRV/A_SalesOrder",
        params={
            "$filter": "startswith(PurchaseOrderByCustomer,'A') and SalesOrderType eq 'OR'",
            "$top": "1",
            "$skip": "1",
            "$inlinecount": "allpages",
            "$orderby": "PurchaseOrderByCustomer desc",
        },
        timeout=5,
    )

    body = response.json()["d"]
    assert body["__count"] == "2"
    assert [r["PurchaseOrderByCustomer"] for r in body["results"]] == ["A-1"]


def test_navigation_and_count(root, session):
    number = session.post(f"{root}/API_SALES_ORDER_SRV/A_SalesOrder", json=order(items=3), timeout=5).json()["d"][
        "SalesOrder"
    ]

    items = session.get(f"{root}/API_SALES_ORDER_SRV/A_SalesOrder('{number}')/to_Item", timeout=5).json()["d"][
        "results"
    ]
    count = session.get(f"{root}/API_SALES_ORDER_SRV/A_SalesOrderItem/$count", timeout=5).text

    assert len(items) == 3
    assert count == "3"


def test_patch_needs_the_current_etag(root, session):
    created = session.post(f"{root}/API_SALES_ORDER_SRV/A_SalesOrder", json=order(items=1), timeout=5)
    uri, etag = created.json()["d"]["__metadata"]["uri"], created.headers["ETag"]

    missing = session.patch(uri, json={"PurchaseOrderByCustomer": "X"}, timeout=5)
    ok = session.patch(uri, json={"PurchaseOrderByCustomer": "X"}, headers={"If-Match": etag}, timeout=5)
    stale = session.request("MERGE", uri, json={"PurchaseOrderByCustomer": "Y"}, headers={"If-Match": etag}, timeout=5)

    assert missing.status_code == 428
    assert ok.status_code == 204
    assert ok.headers["ETag"] != etag
    assert stale.status_code == 412
    assert session.get(uri, timeout=5).json()["d"]["PurchaseOrderByCustomer"] == "X"


def test_business_error_uses_sap_error_json(root, session):
    response = session.post(f"{root}/API_SALES_ORDER_SRV/A_SalesOrder", json=order(SalesOrderType="ZZZZ"), timeout=5)

    error = response.json()["error"]
    assert response.status_code == 400
    assert error["message"]["value"] == "Sales document type ZZZZ is not defined"
    assert error["innererror"]["errordetails"][0]["target"] == "SalesOrderType"
    assert error["innererror"]["application"]["service_id"] == "API_SALES_ORDER_SRV"
    assert set(error) == set(
        json.loads(fixture_path("s4hana/odata-v2-error-404-resource-not-found.json").read_text())["error"]
    )


def test_unknown_entity_set_is_the_gateway_404(root, session):
    response = session.get(f"{root}/API_BUSINESS_PARTNER/A_BusinessPartnerType", timeout=5)

    assert response.status_code == 404
    assert response.json()["error"]["message"]["value"] == "Resource not found for segment 'A_BusinessPartnerType'"


def test_batch_change_set_is_all_or_nothing(root, session):
    good, bad = json.dumps(order(items=1)), json.dumps(order(items=1, SalesOrderType="ZZZZ"))

    def changeset(name: str, *bodies: str) -> str:
        parts = "".join(
            f"--{name}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            f"POST A_SalesOrder HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{body}\r\n"
            for body in bodies
        )
        return f"--batch\r\nContent-Type: multipart/mixed; boundary={name}\r\n\r\n{parts}--{name}--\r\n"

    body = (
        changeset("cs1", good, good)
        + changeset("cs2", good, bad)
        + (
            "--batch\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            "GET A_SalesOrder?$inlinecount=allpages&$top=0 HTTP/1.1\r\nAccept: application/json\r\n\r\n"
            "\r\n--batch--\r\n"
        )
    )

    response = session.post(
        f"{root}/API_SALES_ORDER_SRV/$batch",
        data=body,
        headers={"Content-Type": "multipart/mixed; boundary=batch"},
        timeout=5,
    )

    assert response.status_code == 202
    assert response.text.count("HTTP/1.1 201 Created") == 2
    assert "HTTP/1.1 400 Bad Request" in response.text
    assert '"__count": "2"' in response.text  # the failed change set left nothing behind


def test_business_partner_and_sales_order_events_are_pushed(root, session):
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            received.append(
                {
                    "type": self.headers["Content-Type"],
                    "event": json.loads(self.rfile.read(int(self.headers["Content-Length"]))),
                }
            )
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        EmulatorSubscription.objects.create(emulator="s4hana", url=f"http://127.0.0.1:{server.server_port}/events")
        created = session.post(
            f"{root}/API_BUSINESS_PARTNER/A_BusinessPartner",
            json={"BusinessPartnerCategory": "2", "OrganizationBPName1": "Contoso SE"},
            timeout=5,
        )
        session.patch(created.json()["d"]["__metadata"]["uri"], json={"SearchTerm1": "CONTOSO"}, timeout=5)
        number = session.post(f"{root}/API_SALES_ORDER_SRV/A_SalesOrder", json=order(), timeout=5).json()["d"][
            "SalesOrder"
        ]

        wait_until(lambda: len(received) == 3, timeout=10)
    finally:
        server.shutdown()

    partner = created.json()["d"]["BusinessPartner"]
    # Each push runs in its own thread after its commit: compare without relying on arrival order.
    by_type = {r["event"]["type"]: r for r in received}
    assert set(by_type) == {
        "sap.s4.beh.businesspartner.v1.BusinessPartner.Created.v1",
        "sap.s4.beh.businesspartner.v1.BusinessPartner.Changed.v1",
        "sap.s4.beh.salesorder.v1.SalesOrder.Created.v1",
    }
    created_event = by_type["sap.s4.beh.businesspartner.v1.BusinessPartner.Created.v1"]
    assert created_event["event"]["data"] == {"BusinessPartner": partner}
    assert by_type["sap.s4.beh.salesorder.v1.SalesOrder.Created.v1"]["event"]["data"] == {"SalesOrder": number}
    assert created_event["type"] == "application/cloudevents+json"
    sample = json.loads(fixture_path("s4hana/event-salesorder-created-v1.json").read_text())
    assert set(created_event["event"]) == set(sample)
    assert created_event["event"]["source"].startswith("/default/sap.s4.beh/")


def test_delivery_and_billing_documents_for_an_order(root, session, live_server):
    number = session.post(f"{root}/API_SALES_ORDER_SRV/A_SalesOrder", json=order(items=2), timeout=5).json()["d"][
        "SalesOrder"
    ]
    operations = f"{live_server.url}/sandbox/s4hana/emulator"
    session.post(f"{operations}/outbound-deliveries", json={"SalesOrder": number}, timeout=5).raise_for_status()
    session.post(f"{operations}/billing-documents", json={"SalesOrder": number}, timeout=5).raise_for_status()

    deliveries = session.get(
        f"{root}/API_OUTBOUND_DELIVERY_SRV/A_OutbDeliveryItem",
        params={"$filter": f"ReferenceSDDocument eq '{number}'"},
        timeout=5,
    ).json()["d"]["results"]
    billing = session.get(
        f"{root}/API_BILLING_DOCUMENT_SRV/A_BillingDocument", params={"$expand": "to_Item"}, timeout=5
    ).json()["d"]["results"]

    assert [d["Material"] for d in deliveries] == ["TG1", "TG2"]
    assert billing[0]["BillingDocumentType"] == "F2"
    assert [i["ReferenceSDDocument"] for i in billing[0]["to_Item"]["results"]] == [number, number]
    read_only = session.post(f"{root}/API_BILLING_DOCUMENT_SRV/A_BillingDocument", json={}, timeout=5)
    assert read_only.status_code == 405


def test_oauth_client_credentials_token_is_accepted(root, live_server):
    token = requests.post(
        f"{live_server.url}/sandbox/s4hana/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("icbridge-s4", "sandbox"),
        timeout=5,
    ).json()["access_token"]

    response = requests.get(
        f"{root}/API_BUSINESS_PARTNER/A_BusinessPartner",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        timeout=5,
    )
    refused = requests.post(
        f"{live_server.url}/sandbox/s4hana/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("icbridge-s4", "nope"),
        timeout=5,
    )

    assert response.status_code == 200
    assert response.json() == {"d": {"results": []}}
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"


def test_pyodata_loads_the_metadata_and_creates_and_reads_a_sales_order(root, session):
    client = pyodata.Client(f"{root}/API_SALES_ORDER_SRV/", session)
    create = client.entity_sets.A_SalesOrder.create_entity()
    create.set(**order(items=2))

    created = create.execute()
    read = client.entity_sets.A_SalesOrder.get_entity(created.SalesOrder).expand("to_Item").execute()

    assert read.SalesOrderType == "OR"
    assert read.PurchaseOrderByCustomer == "PO-1"
    assert [item.Material for item in read.to_Item] == ["TG1", "TG2"]


def test_outage_and_errors_answer_in_sap_error_json(root, session):
    set_faults("s4hana", down=True)

    response = session.get(f"{root}/API_SALES_ORDER_SRV/A_SalesOrder", timeout=5)

    assert response.status_code == 503
    assert "down" in response.json()["error"]["message"]["value"]


def test_reset_clears_orders_sessions_and_subscriptions(root, session):
    session.post(f"{root}/API_SALES_ORDER_SRV/A_SalesOrder", json=order(items=1), timeout=5)
    EmulatorSubscription.objects.create(emulator="s4hana", url="http://127.0.0.1:9/events")

    s4hana.reset()

    assert session.get(f"{root}/API_SALES_ORDER_SRV/A_SalesOrder", timeout=5).json() == {"d": {"results": []}}
    assert session.post(f"{root}/API_SALES_ORDER_SRV/A_SalesOrder", json=order(), timeout=5).status_code == 403
    assert not EmulatorSubscription.objects.exists()
