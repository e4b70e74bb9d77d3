"""F&O business events, SAP Event Mesh CloudEvents (with the webhook handshake) and the generic JSON endpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from integrations.models import Flow, InboundEndpoint, Message
from tests.api.conftest import SECRET, key_header, load, post_json, raw

pytestmark = pytest.mark.django_db


def test_finops_captured_business_event_is_stored(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    # given a flow taking F&O business events
    flow = inbound_flow(entity="BusinessEventsAlertEvent")
    # when F&O posts the captured alert event
    response = client.post(
        f"/api/events/finops/{flow.slug}",
        data=raw("finops/event-BusinessEventsAlertEvent__captured.json"),
        content_type="application/json",
        **key_header(),
    )
    # then it is stored keyed on its EventId, versioned by ControlNumber
    assert response.status_code == 202, response.content
    message = Message.objects.get(flow=flow)
    assert message.idempotency_key == "BusinessEventsAlertEvent:d60a8657-e87c-43a8-8d7d-826ebf0490d7"
    assert message.source_version == 5637145330
    assert message.payload_in["MessageDetails"] == "View Location: BULK-002, 24"
    assert message.headers["business_event_id"] == "BusinessEventsAlertEvent"


def test_finops_resend_is_a_duplicate(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    # given an event accepted once
    flow = inbound_flow()
    event = load("finops/event-BusinessEventsAlertEvent__captured.json")
    first = post_json(client, f"/api/events/finops/{flow.slug}", event, **key_header())
    # when F&O resends it (same EventId, braces and case as F&O may write them)
    event["EventId"] = "{" + event["EventId"].lower() + "}"
    second = post_json(client, f"/api/events/finops/{flow.slug}", event, **key_header())
    # then it is the same message
    assert second.status_code == 200
    assert second.json() == {"message_id": first.json()["message_id"], "duplicate": True}


def test_finops_custom_event_with_record_key_pointer(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    # given a flow taking a custom business event whose record key is SalesOrderNumber
    flow = inbound_flow(entity="salesorder", record_key_pointer="/SalesOrderNumber")
    event = {
        **load("finops/event-BatchJobStarted__schema-sample.json"),
        "BusinessEventId": "IcbSalesOrderConfirmedBusinessEvent",
        "EventId": "7F1E0C55-3E4B-4F0A-9A61-6A2B0E4D1C11",
        "ControlNumber": 5637150001,
        "BusinessEventLegalEntity": "SE01",
        "SalesOrderNumber": "SO-000123",
    }
    # when it is posted
    response = post_json(client, f"/api/events/finops/{flow.slug}", event, **key_header())
    # then the order number is the record key and the legal entity is kept
    assert response.status_code == 202, response.content
    message = Message.objects.get(flow=flow)
    assert message.source_record_key == "SO-000123"
    assert message.headers["legal_entity"] == "SE01"


def test_a_composite_record_key_joins_its_pointers_and_a_missing_part_is_named(
    client: Client, inbound_flow: Callable[..., Flow]
) -> None:
    # given a flow keyed by two fields of the event (an order's hold: the order and the hold code)
    flow = inbound_flow(entity="orderhold", record_key_pointer="/SalesOrderNumber, /HoldCode")
    event = {
        **load("finops/event-BatchJobStarted__schema-sample.json"),
        "BusinessEventId": "SalesOrderHoldPlacedBusinessEvent",
        "EventId": "7F1E0C55-3E4B-4F0A-9A61-6A2B0E4D1C13",
        "BusinessEventLegalEntity": "SE01",
        "SalesOrderNumber": "SO-000123",
        "HoldCode": "Credit",
    }
    # when it is posted, and then an event without the hold code
    response = post_json(client, f"/api/events/finops/{flow.slug}", event, **key_header())
    incomplete = {**event, "EventId": "7F1E0C55-3E4B-4F0A-9A61-6A2B0E4D1C14", "HoldCode": ""}
    refused = post_json(client, f"/api/events/finops/{flow.slug}", incomplete, **key_header())
    # then the record key is both values joined by "|", and the second is refused naming the missing field
    assert response.status_code == 202, response.content
    assert Message.objects.get(flow=flow).source_record_key == "SO-000123|Credit"
    assert refused.status_code == 400, refused.content
    assert refused.json() == {"error": "field '/HoldCode' is missing", "field": "/HoldCode"}
    assert Message.objects.count() == 1


def test_finops_event_of_another_type_is_refused_for_its_type_not_a_missing_field(
    client: Client, inbound_flow: Callable[..., Flow]
) -> None:
    # given a flow taking invoice events, keyed by a field only invoice events carry
    flow = inbound_flow(
        entity="invoice",
        record_key_pointer="/InvoiceNumber",
        options={"event_types": ["IcbInvoicePostedBusinessEvent"]},
    )
    # when a custom hold event (no InvoiceNumber) is posted to it
    event = {
        **load("finops/event-BatchJobStarted__schema-sample.json"),
        "BusinessEventId": "SalesOrderHoldPlacedBusinessEvent",
        "EventId": "7F1E0C55-3E4B-4F0A-9A61-6A2B0E4D1C12",
    }
    response = post_json(client, f"/api/events/finops/{flow.slug}", event, **key_header())
    # then the answer names the event type the flow takes, as docs/api.md promises
    assert response.status_code == 422, response.content
    assert response.json() == {
        "error": f"flow {flow.slug} takes 'IcbInvoicePostedBusinessEvent' events, "
        "not 'SalesOrderHoldPlacedBusinessEvent'",
        "field": "BusinessEventId",
    }
    assert not Message.objects.exists()


def test_finops_schema_sample_without_event_id_is_refused(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    # given the downloaded schema sample, whose BusinessEventId and EventId are empty
    flow = inbound_flow()
    # when it is posted as an event
    response = client.post(
        f"/api/events/finops/{flow.slug}",
        data=raw("finops/event-BatchJobStarted__schema-sample.json"),
        content_type="application/json",
        **key_header(),
    )
    # then it is refused: there is nothing to tell a resend from a new event
    assert response.status_code == 400
    assert response.json() == {"error": "field 'BusinessEventId' is empty", "field": "BusinessEventId"}


def test_finops_system_endpoint_routes_by_business_event_id(
    client: Client, make_system: Callable[..., Any], make_flow: Callable[..., Flow]
) -> None:
    # given an F&O system whose flow lists the business events it takes
    fo = make_system(kind="finops", slug="fo")
    InboundEndpoint.objects.create(system=fo, auth_type="header", secret=SECRET)
    flow = make_flow(source=fo, entity="alert", options={"event_types": ["BusinessEventsAlertEvent"]})
    # when the event arrives at the system endpoint
    response = post_json(
        client,
        "/api/events/finops/systems/fo",
        load("finops/event-BusinessEventsAlertEvent__captured.json"),
        **key_header(),
    )
    # then it is routed to that flow
    assert response.status_code == 202, response.content
    assert response.json()["messages"][0]["flow"] == flow.slug
    assert Message.objects.filter(flow=flow).exists()


def test_sap_structured_cloudevent_is_stored(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    # given a flow taking S/4HANA sales order events
    flow = inbound_flow(entity="salesorder")
    # when Event Mesh pushes the documented SalesOrder.Created event
    response = client.post(
        f"/api/events/sap/{flow.slug}",
        data=raw("s4hana/event-salesorder-created-v1.json"),
        content_type="application/cloudevents+json",
        **key_header(),
    )
    # then it is keyed on source + id, with the order number as record key
    assert response.status_code == 202, response.content
    message = Message.objects.get(flow=flow)
    assert message.idempotency_key == "/default/sap.s4.beh/DEVCLNT001#db13c94e-c20f-4b2e-8171-6970104721a0"
    assert message.source_record_key == "1"
    assert message.source_version == 1609423155000000
    assert message.headers["ce_type"] == "sap.s4.beh.salesorder.v1.SalesOrder.Created.v1"


def test_sap_binary_mode_cloudevent_is_the_same_event(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    # given the structured event already accepted
    flow = inbound_flow()
    event = load("s4hana/event-salesorder-created-v1.json")
    first = post_json(client, f"/api/events/sap/{flow.slug}", event, **key_header())
    # when the same event comes in binary mode (ce-* headers, data as body)
    second = client.post(
        f"/api/events/sap/{flow.slug}",
        data=json.dumps(event["data"]),
        content_type="application/json",
        HTTP_CE_SPECVERSION="1.0",
        HTTP_CE_ID=event["id"],
        HTTP_CE_SOURCE=event["source"],
        HTTP_CE_TYPE=event["type"],
        HTTP_CE_TIME=event["time"],
        **key_header(),
    )
    # then it is recognised as a duplicate
    assert second.status_code == 200, second.content
    assert second.json()["message_id"] == first.json()["message_id"]


def test_sap_event_with_wrong_specversion_is_refused(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow()
    event = {**load("s4hana/event-salesorder-created-v1.json"), "specversion": "0.3"}
    response = post_json(client, f"/api/events/sap/{flow.slug}", event, **key_header())
    assert response.status_code == 400
    assert response.json()["field"] == "specversion"
    assert not Message.objects.exists()


def test_event_mesh_handshake_grants_the_origin(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    # given an SAP flow that accepts 120 requests a minute
    flow = inbound_flow(throttle_rate="120/min")
    # when Event Mesh validates the webhook with OPTIONS
    response = client.options(
        f"/api/events/sap/{flow.slug}", HTTP_WEBHOOK_REQUEST_ORIGIN="eventmesh.eu10.hana.ondemand.com"
    )
    # then the origin and rate are granted in the response headers
    assert response.status_code == 200
    assert response["WebHook-Allowed-Origin"] == "eventmesh.eu10.hana.ondemand.com"
    assert response["WebHook-Allowed-Rate"] == "120"


def test_handshake_refuses_an_origin_not_allowed(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(allowed_origins=["eventmesh.eu10.hana.ondemand.com"])
    response = client.options(f"/api/events/sap/{flow.slug}", HTTP_WEBHOOK_REQUEST_ORIGIN="evil.example.com")
    assert response.status_code == 403
    assert "WebHook-Allowed-Origin" not in response
    assert response.json()["field"] == "WebHook-Request-Origin"


def test_handshake_without_origin_header_is_a_bad_request(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow()
    response = client.options(f"/api/events/sap/{flow.slug}")
    assert response.status_code == 400
    assert response.json() == {"error": "header 'WebHook-Request-Origin' is missing", "field": "WebHook-Request-Origin"}


def test_generic_json_takes_its_id_from_the_configured_pointer(
    client: Client, inbound_flow: Callable[..., Flow]
) -> None:
    # given a generic flow whose events carry their id at /order/id and a version at /order/rev
    flow = inbound_flow(id_pointer="/order/id", version_pointer="/order/rev")
    body = {"order": {"id": "A-17", "rev": 4, "lines": [1, 2]}}
    # when it is posted twice
    first = post_json(client, f"/api/ingest/{flow.slug}", body, **key_header())
    second = post_json(client, f"/api/ingest/{flow.slug}", body, **key_header())
    # then one message keyed on A-17
    assert first.status_code == 202, first.content
    assert second.json() == {"message_id": first.json()["message_id"], "duplicate": True}
    message = Message.objects.get(flow=flow)
    assert (message.idempotency_key, message.source_version) == ("A-17", 4)


def test_generic_json_takes_its_id_from_a_header(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow()
    response = post_json(
        client, f"/api/ingest/{flow.slug}", {"any": "thing"}, HTTP_IDEMPOTENCY_KEY="evt-1", **key_header()
    )
    assert response.status_code == 202, response.content
    assert Message.objects.get(flow=flow).idempotency_key == "evt-1"


def test_generic_json_without_an_id_names_where_it_looked(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(id_pointer="/order/id")
    response = post_json(client, f"/api/ingest/{flow.slug}", {"order": {}}, **key_header())
    assert response.status_code == 400
    assert response.json() == {"error": "field '/order/id' is missing", "field": "/order/id"}
