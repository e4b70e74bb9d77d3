"""S4HanaConnector against the S/4HANA emulator over real sockets: CSRF, deep insert, $batch, error mapping."""

from __future__ import annotations

import time

import pytest

from integrations import errors
from integrations.models import System
from integrations.protocols.transport import DeliveryRequest
from integrations.systems import get_connector
from integrations.systems.s4hana.connector import sap_error_text
from sandbox import s4hana
from sandbox.common.faults import set_faults

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
    )


def sales_order(po: str = "PO-1", items: int = 5, **overrides) -> dict:
    body = {
        "SalesOrderType": "OR",
        "SalesOrganization": "1710",
        "DistributionChannel": "10",
        "OrganizationDivision": "00",
        "SoldToParty": "17100001",
        "PurchaseOrderByCustomer": po,
        "to_Item": [{"Material": f"TG{n}", "RequestedQuantity": str(n)} for n in range(1, items + 1)],
    }
    body.update(overrides)
    return body


def request(payload: dict, key: dict | None = None, op: str = "create", idem: str = "e-1", **kw) -> DeliveryRequest:
    return DeliveryRequest(entity=ORDERS, operation=op, payload=payload, key=key or {}, idempotency_key=idem, **kw)


def test_deep_insert_of_an_order_with_five_items(s4_system):
    connector = get_connector(s4_system)

    result = connector.deliver(request(sales_order()))
    stored = connector.fetch(entity=ORDERS, key={"SalesOrder": result.target_key})
    items = connector.fetch(
        entity="API_SALES_ORDER_SRV/A_SalesOrderItem", key={"SalesOrder": result.target_key, "SalesOrderItem": "50"}
    )

    assert result.created is True
    assert result.etag.startswith("W/")
    assert len(result.body["to_Item"]) == 5
    assert stored["PurchaseOrderByCustomer"] == "PO-1"
    assert items["Material"] == "TG5"
    assert connector.csrf_fetches == 1


def test_expired_token_gets_403_then_the_connector_fetches_a_new_one_and_succeeds(s4_system):
    connector = get_connector(s4_system)
    connector.deliver(request(sales_order("PO-A", items=1)))
    s4hana.expire_sessions()  # SAP's session timeout: the token and cookie the connector holds are dead

    result = connector.deliver(request(sales_order("PO-B", items=1), idem="e-2"))

    assert result.created is True
    assert connector.csrf_fetches == 2


def test_missing_token_is_fetched_before_the_first_write(s4_system):
    connector = get_connector(s4_system)
    assert connector.csrf_fetches == 0

    connector.deliver(request(sales_order("PO-first", items=1)))

    assert connector.csrf_fetches == 1


def test_sap_error_json_is_rejected_with_saps_message_text(s4_system):
    with pytest.raises(errors.RejectedError) as raised:
        get_connector(s4_system).deliver(request(sales_order(SalesOrderType="ZZZZ")))

    assert "Sales document type ZZZZ is not defined" in raised.value.message
    assert raised.value.status_code == 400
    assert "V1/320" in raised.value.message


def test_upsert_patches_the_order_found_by_alternate_key_with_its_etag(s4_system):
    connector = get_connector(s4_system)
    created = connector.deliver(request(sales_order("PO-UP", items=1)))

    updated = connector.deliver(
        request(
            {"PurchaseOrderByCustomer": "PO-UP", "CustomerPaymentTerms": "0004"},
            {"PurchaseOrderByCustomer": "PO-UP"},
            "upsert",
            "e-3",
        )
    )

    assert updated.created is False
    assert updated.target_key == created.target_key
    assert updated.etag != created.etag
    assert connector.fetch(entity=ORDERS, key={"SalesOrder": created.target_key})["CustomerPaymentTerms"] == "0004"


def test_stale_etag_is_a_conflict_with_the_current_record(s4_system):
    connector = get_connector(s4_system)
    created = connector.deliver(request(sales_order("PO-ETAG", items=1)))
    connector.deliver(
        request({"CustomerPaymentTerms": "0001"}, {"PurchaseOrderByCustomer": "PO-ETAG"}, "update", "e-4")
    )

    with pytest.raises(errors.ConflictError) as raised:
        connector.deliver(
            request(
                {"CustomerPaymentTerms": "0002"},
                {"PurchaseOrderByCustomer": "PO-ETAG"},
                "update",
                "e-5",
                etag=created.etag,
            )
        )

    assert raised.value.status_code == 412
    assert raised.value.current["CustomerPaymentTerms"] == "0001"
    assert raised.value.current_etag != created.etag


def test_redelivered_create_is_a_duplicate_linked_to_the_existing_order(s4_system):
    connector = get_connector(s4_system)
    first = connector.deliver(request(sales_order("PO-DUP", items=1), {"PurchaseOrderByCustomer": "PO-DUP"}))

    with pytest.raises(errors.DuplicateError) as raised:
        connector.deliver(request(sales_order("PO-DUP", items=1), {"PurchaseOrderByCustomer": "PO-DUP"}))

    assert raised.value.existing_key == first.target_key


def test_deliver_many_sends_one_batch_and_fails_only_the_bad_change_set(s4_system):
    connector = get_connector(s4_system)
    batch = [request(sales_order(f"PO-B{n}", items=2), idem=f"b-{n}") for n in range(3)]
    batch.append(request(sales_order("PO-BAD", SalesOrderType="ZZZZ"), idem="b-bad"))
    posts = []
    connector.session.hooks["response"].append(
        lambda r, **_: posts.append(r.url) if r.request.method == "POST" else None
    )

    results = connector.deliver_many(batch)

    assert [type(r).__name__ for r in results] == ["DeliveryResult"] * 3 + ["RejectedError"]
    assert "Sales document type ZZZZ is not defined" in results[3].message
    assert len({r.target_key for r in results[:3]}) == 3
    assert [url.rsplit("/", 1)[-1] for url in posts] == ["$batch"]


def test_oauth_client_credentials(s4_system, live_server):
    s4_system.auth_type = System.AuthType.CLIENT_CREDENTIALS
    s4_system.auth_url = f"{live_server.url}/sandbox/s4hana/oauth/token"
    s4_system.client_id, s4_system.secret = "icbridge-s4", "sandbox"
    s4_system.save()

    result = get_connector(s4_system).deliver(request(sales_order("PO-OAUTH", items=1)))

    assert result.created is True


def test_wrong_password_is_an_auth_error(s4_system):
    s4_system.secret = "wrong"
    s4_system.save()

    with pytest.raises(errors.AuthError):
        get_connector(s4_system).deliver(request(sales_order(items=1)))


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        ({"down": True}, errors.TransientError),
        ({"error_rate": 1.0}, errors.TransientError),
        ({"latency_ms": 2500}, errors.TransientError),
        ({"throttle_rate": 1.0, "retry_after_seconds": 9}, errors.ThrottledError),
    ],
)
def test_injected_faults_are_classified(s4_system, faults, expected):
    set_faults("s4hana", **faults)

    with pytest.raises(expected) as raised:
        get_connector(s4_system).deliver(request(sales_order(items=1)))

    assert type(raised.value) is expected
    if "latency_ms" in faults:
        # The emulator still finishes the create after we stopped waiting; let it land inside this test,
        # not in the next one's data.
        time.sleep(1.5)
    if expected is errors.ThrottledError:
        assert raised.value.retry_after == 9


def test_fetch_of_a_missing_order_is_none(s4_system):
    assert get_connector(s4_system).fetch(entity=ORDERS, key={"SalesOrder": "999999"}) is None


def test_check_connection_fetches_a_token_and_reads_metadata(s4_system):
    report = get_connector(s4_system).check_connection()

    assert report.ok, report.summary()


def test_sap_error_text_joins_message_and_details_once():
    body = {
        "error": {
            "code": "V1/012",
            "message": {"lang": "en", "value": "Enter a value for field SoldToParty"},
            "innererror": {"errordetails": [{"message": "Enter a value for field SoldToParty"}, {"message": "Second"}]},
        }
    }

    assert sap_error_text(body) == "Enter a value for field SoldToParty; Second [V1/012]"


def test_pipeline_delivers_an_order_with_items_to_s4(make_flow, s4_system):
    from integrations.models import Flow, Message
    from integrations.pipeline import deliver as pipeline
    from integrations.pipeline.ingest import message_ingest

    flow = make_flow(
        target=s4_system,
        target_entity=ORDERS,
        target_operation=Flow.Operation.UPSERT,
        target_key_fields=["PurchaseOrderByCustomer"],
    )
    message, _ = message_ingest(flow=flow, payload=sales_order("PO-PIPE", items=3), idempotency_key="evt-pipe")

    pipeline.message_process(message_id=message.pk)

    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED, message.last_error
    order = get_connector(s4_system).fetch(entity=ORDERS, key={"SalesOrder": message.target_record_key})
    assert order["PurchaseOrderByCustomer"] == "PO-PIPE"
