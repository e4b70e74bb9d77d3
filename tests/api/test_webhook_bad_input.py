"""Bad input gets one 4xx shape saying what and where, and nothing is stored; throttling answers 429."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client, override_settings

from integrations.models import Flow, InboundEndpoint, Message
from tests.api.conftest import SECRET, dataverse_update, key_header, post_json, raw, with_change

pytestmark = pytest.mark.django_db


def _error(response: Any, status: int, field: str | None) -> str:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error", "field"}
    assert body["field"] == field
    assert not Message.objects.exists()
    return body["error"]


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"", "the body is empty; expected a JSON object"),
        (b"<xml/>", "the body is not JSON: Expecting value at line 1 column 1"),
        (b'{"MessageName": "Update",', "the body is not JSON: Expecting property name enclosed in double quotes"),
        (b"\xff\xfe\x00", "the body is not UTF-8 text; expected a JSON object"),
    ],
)
def test_not_json(client: Client, inbound_flow: Callable[..., Flow], body: bytes, text: str) -> None:
    flow = inbound_flow()
    response = client.post(
        f"/api/webhooks/dataverse/{flow.slug}", data=body, content_type="application/json", **key_header()
    )
    assert _error(response, 400, None).startswith(text)


@pytest.mark.parametrize("body", [[], "text", 42, None])
def test_json_that_is_not_an_object(client: Client, inbound_flow: Callable[..., Flow], body: Any) -> None:
    flow = inbound_flow()
    response = post_json(client, f"/api/webhooks/dataverse/{flow.slug}", json.dumps(body), **key_header())
    assert _error(response, 400, None).startswith("the body must be a JSON object")


def test_missing_primary_entity_id(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow()
    context = dataverse_update()
    del context["PrimaryEntityId"]
    response = post_json(client, f"/api/webhooks/dataverse/{flow.slug}", context, **key_header())
    assert response.json() == {"error": "field 'PrimaryEntityId' is missing", "field": "PrimaryEntityId"}
    _error(response, 400, "PrimaryEntityId")


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        ({"MessageName": 7}, "MessageName", "field 'MessageName' must be a string, got integer"),
        ({"PrimaryEntityName": ""}, "PrimaryEntityName", "field 'PrimaryEntityName' is empty"),
        ({"Depth": "one"}, "Depth", "field 'Depth' must be an integer"),
        ({"InputParameters": {"Target": {}}}, "InputParameters", "field 'InputParameters' must be an array"),
        ({"InputParameters": []}, "InputParameters.Target", "field 'InputParameters.Target' is missing"),
        ({"InputParameters": [{"value": 1}]}, "InputParameters[0]", "field 'InputParameters[0]' must be an object"),
        ({"PostEntityImages": "x"}, "PostEntityImages", "field 'PostEntityImages' must be an array"),
    ],
)
def test_wrong_shape_names_the_field(
    client: Client, inbound_flow: Callable[..., Flow], change: dict[str, Any], field: str, text: str
) -> None:
    flow = inbound_flow()
    response = post_json(
        client, f"/api/webhooks/dataverse/{flow.slug}", with_change(dataverse_update(), **change), **key_header()
    )
    assert _error(response, 400, field).startswith(text)


def test_target_attributes_of_the_wrong_shape(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow()
    context = dataverse_update()
    context["InputParameters"][0]["value"]["Attributes"] = {"firstname": "James"}
    response = post_json(client, f"/api/webhooks/dataverse/{flow.slug}", context, **key_header())
    _error(response, 400, "InputParameters.Target.Attributes")


def test_body_over_the_global_limit(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow()
    big = json.dumps({**dataverse_update(), "padding": "x" * 5000})
    with override_settings(ICBRIDGE_INGRESS_MAX_BODY_BYTES=4096):
        response = post_json(client, f"/api/webhooks/dataverse/{flow.slug}", big, **key_header())
    assert "the limit is 4096" in _error(response, 413, None)


def test_body_over_the_endpoints_own_limit(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(max_body_bytes=1000)
    response = post_json(client, f"/api/webhooks/dataverse/{flow.slug}", dataverse_update(), **key_header())
    assert "the limit is 1000" in _error(response, 413, None)


def test_body_over_djangos_own_upload_limit(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(max_body_bytes=10_000_000)
    big = json.dumps({**dataverse_update(), "padding": "x" * 3000})
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=2000):
        response = post_json(client, f"/api/webhooks/dataverse/{flow.slug}", big, **key_header())
    _error(response, 413, None)


def test_unknown_flow(client: Client, db: None) -> None:
    response = post_json(client, "/api/webhooks/dataverse/no-such-flow", dataverse_update(), **key_header())
    assert _error(response, 404, "flow_slug") == "no flow 'no-such-flow'"


def test_unknown_system(client: Client, db: None) -> None:
    response = post_json(client, "/api/events/sap/systems/nowhere", {}, **key_header())
    assert _error(response, 404, "system_slug") == "no system 'nowhere'"


def test_disabled_flow(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(enabled=False)
    response = post_json(client, f"/api/webhooks/dataverse/{flow.slug}", dataverse_update(), **key_header())
    assert "is disabled" in _error(response, 409, "flow_slug")


def test_disabled_flow_still_needs_credentials(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(enabled=False)
    response = post_json(client, f"/api/webhooks/dataverse/{flow.slug}", dataverse_update())
    _error(response, 401, None)


def test_disabled_system(client: Client, make_system: Callable[..., Any]) -> None:
    system = make_system(enabled=False)
    InboundEndpoint.objects.create(system=system, auth_type="header", secret=SECRET)
    response = post_json(client, f"/api/webhooks/dataverse/systems/{system.slug}", dataverse_update(), **key_header())
    _error(response, 409, "system_slug")


def test_get_is_not_allowed(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow()
    response = client.get(f"/api/webhooks/dataverse/{flow.slug}", **key_header())
    _error(response, 405, None)


def test_a_failure_while_storing_leaves_nothing(
    client: Client, make_system: Callable[..., Any], make_flow: Callable[..., Flow], monkeypatch: Any
) -> None:
    # given a system event routed to two flows, the second of which fails to store
    crm = make_system(slug="crm")
    InboundEndpoint.objects.create(system=crm, auth_type="header", secret=SECRET)
    make_flow(source=crm, entity="contact", slug="a-first")
    make_flow(source=crm, entity="contact", slug="b-second")
    from integrations.ingress import routing

    real = routing.message_ingest

    def failing(*, flow: Flow, **kwargs: Any) -> Any:
        if flow.slug == "b-second":
            raise RuntimeError("database went away")
        return real(flow=flow, **kwargs)

    monkeypatch.setattr(routing, "message_ingest", failing)
    client.raise_request_exception = False
    # when the event arrives
    response = post_json(client, "/api/webhooks/dataverse/systems/crm", dataverse_update(), **key_header())
    # then the sender sees a failure (and will resend), and the first flow's message was rolled back too
    assert response.status_code == 500
    assert not Message.objects.exists()


def test_throttled_endpoint_answers_429_with_retry_after(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    # given an endpoint allowing two requests a minute
    flow = inbound_flow(throttle_rate="2/min")
    url = f"/api/webhooks/dataverse/{flow.slug}"
    statuses = [post_json(client, url, dataverse_update(), **key_header()).status_code for _ in range(2)]
    # when a third comes within the minute
    response = post_json(client, url, dataverse_update(), **key_header())
    # then it is refused with a Retry-After, and another flow's endpoint is not affected
    assert statuses == [202, 200]
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert response.json()["error"].startswith("too many requests")
    other = inbound_flow(throttle_rate="2/min")
    assert post_json(
        client, f"/api/webhooks/dataverse/{other.slug}", dataverse_update(), **key_header()
    ).status_code == (202)


def test_global_throttle_rate_applies_without_an_own_rate(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow()
    url = f"/api/webhooks/dataverse/{flow.slug}"
    with override_settings(ICBRIDGE_INGRESS_THROTTLE_RATE="1/h"):
        first = post_json(client, url, dataverse_update(), **key_header())
        second = post_json(client, url, dataverse_update(), **key_header())
    assert (first.status_code, second.status_code) == (202, 429)


@pytest.mark.parametrize(
    "body",
    [b'{"id": "a\\u0000b"}', b'{"id": "1", "note": "\\ud800"}', b'{"id": "1", "k\\u0000": 1}'],
)
def test_json_that_postgresql_cannot_store_is_refused(
    client: Client, inbound_flow: Callable[..., Flow], body: bytes
) -> None:
    flow = inbound_flow()
    response = client.post(f"/api/ingest/{flow.slug}", data=body, content_type="application/json", **key_header())
    assert "cannot be stored" in _error(response, 400, None) or "surrogate" in response.json()["error"]


def test_escaped_emoji_is_fine(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow()
    body = b'{"id": "1", "note": "\\ud83d\\ude00"}'
    response = client.post(f"/api/ingest/{flow.slug}", data=body, content_type="application/json", **key_header())
    assert response.status_code == 202
    assert Message.objects.get(flow=flow).payload_in["note"] == "\N{GRINNING FACE}"


def test_overlong_ids_are_kept_apart_and_fit(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    # given two events whose ids differ only after 300 characters, and a 500-character correlation id
    flow = inbound_flow()
    url = f"/api/webhooks/dataverse/{flow.slug}"
    first = with_change(dataverse_update(), CorrelationId="c" * 500, OperationId="x" * 300 + "1")
    second = with_change(first, OperationId="x" * 300 + "2")
    # when both arrive
    responses = [post_json(client, url, body, **key_header()) for body in (first, second)]
    # then both are stored as two messages
    assert [r.status_code for r in responses] == [202, 202]
    assert Message.objects.filter(flow=flow).count() == 2


def test_disabling_a_flow_applies_at_once(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow()
    url = f"/api/webhooks/dataverse/{flow.slug}"
    assert post_json(client, url, dataverse_update(), **key_header()).status_code == 202
    flow.enabled = False
    flow.save()
    response = post_json(client, url, with_change(dataverse_update(), OperationId="other"), **key_header())
    assert response.status_code == 409


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_json_numbers_are_refused(client: Client, inbound_flow: Callable[..., Flow], constant: bytes) -> None:
    # Python's json module reads them; PostgreSQL's jsonb does not (found by the fuzz test).
    flow = inbound_flow()
    body = b'{"id": "1", "amount": ' + constant + b"}"
    response = client.post(f"/api/ingest/{flow.slug}", data=body, content_type="application/json", **key_header())
    assert _error(response, 400, None) == f"the body is not JSON: {constant.decode()} is not a JSON number"


def test_a_flows_endpoint_refuses_an_event_about_another_entity(client: Client, inbound_flow: Callable[..., Flow]):
    # A webhook step registered on the accounts flow's URL for contacts, and an F&O event the flow does not list.
    accounts = inbound_flow(entity="account")
    invoices = inbound_flow(entity="invoice", options={"event_types": ["SalesOrderInvoicedBusinessEvent"]})
    anything = inbound_flow(entity="alert")  # lists no event types: it takes what its sender sends

    contact = post_json(client, f"/api/webhooks/dataverse/{accounts.slug}", dataverse_update(), **key_header())
    alert = client.post(
        f"/api/events/finops/{invoices.slug}",
        data=raw("finops/event-BusinessEventsAlertEvent__captured.json"),
        content_type="application/json",
        **key_header(),
    )

    assert _error(contact, 422, "PrimaryEntityName") == f"flow {accounts.slug} takes 'account' events, not 'contact'"
    assert _error(alert, 422, "BusinessEventId") == (
        f"flow {invoices.slug} takes 'SalesOrderInvoicedBusinessEvent' events, not 'BusinessEventsAlertEvent'"
    )
    accepted = client.post(
        f"/api/events/finops/{anything.slug}",
        data=raw("finops/event-BusinessEventsAlertEvent__captured.json"),
        content_type="application/json",
        **key_header(),
    )
    assert accepted.status_code == 202, accepted.content


def test_database_down_answers_503_with_retry_after_and_stores_nothing(
    client: Client, inbound_flow: Callable[..., Flow], monkeypatch: Any
) -> None:
    # given a database that refuses connections while an event is stored
    from django.db import OperationalError

    from integrations.ingress import routing

    def refused(**kwargs: Any) -> Any:
        raise OperationalError("connection to server at 127.0.0.1, port 5432 failed: Connection refused")

    monkeypatch.setattr(routing, "message_ingest", refused)
    flow = inbound_flow()
    # when the event arrives
    response = post_json(client, f"/api/webhooks/dataverse/{flow.slug}", dataverse_update(), **key_header())
    # then the sender is told to send again later, in the one error shape
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response.json()["field"] is None
    assert "send again later" in response.json()["error"]
    assert not Message.objects.exists()
