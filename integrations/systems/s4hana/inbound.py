"""SAP S/4HANA business events as SAP Event Mesh pushes them: CloudEvents 1.0, structured or binary."""

from __future__ import annotations

from typing import Any

from integrations.models import InboundEndpoint
from integrations.protocols.events import (
    EventError,
    InboundEvent,
    InboundFormat,
    body_parse,
    check_storable,
    is_json_type,
    iso_to_micros,
    object_of,
    pointer_key,
    require,
    scalar_text,
)

# --- SAP Event Mesh (CloudEvents 1.0) ------------------------------------------------------

CLOUDEVENT_REQUIRED = ("id", "source", "specversion", "type")


def cloudevent_from_binary(body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """A binary-mode CloudEvent (ce-* headers, data as the body) in its structured form."""
    event: dict[str, Any] = {
        name[3:]: value for name, value in headers.items() if name.startswith("ce-") and len(name) > 3
    }
    content_type = headers.get("content-type", "")
    if content_type:
        event["datacontenttype"] = content_type
    if body.strip():
        if "json" in content_type or not content_type:
            event["data"] = body_parse(body)
        else:
            event["data"] = body.decode(errors="replace")
            check_storable(event["data"])
    check_storable(event)
    return event


def sap_event(body: Any, *, endpoint: InboundEndpoint | None = None) -> InboundEvent:
    """An SAP S/4HANA business event as Event Mesh pushes it: a CloudEvents 1.0 JSON envelope.

    CloudEvents says source + id identify an event, so a redelivery is a duplicate. The record key
    comes from the configured pointer, else the one value of `data` ({"SalesOrder": "1"}).
    """
    event = object_of(body)
    for name in CLOUDEVENT_REQUIRED:
        require(event, name)
    if event["specversion"] != "1.0":
        raise EventError(f"field 'specversion' must be '1.0', got {event['specversion']!r}", "specversion")
    data = event.get("data")
    record_key = pointer_key(event, endpoint)
    if not record_key and isinstance(data, dict):
        scalars = [value for value in data.values() if scalar_text(value)]
        if len(scalars) == 1:
            record_key = scalar_text(scalars[0])
    time_value = event.get("time")
    if time_value is not None and iso_to_micros(time_value, "time") is None:
        raise EventError(f"field 'time' must be an RFC 3339 time, got {time_value!r}", "time")
    return InboundEvent(
        payload=event,
        idempotency_key=f"{event['source']}#{event['id']}",
        entity=event["type"],
        event_type=event["type"],
        source_record_key=record_key,
        source_version=iso_to_micros(time_value, "time"),
        correlation_id=str(event["id"])[:100],
        headers={"ce_type": event["type"], "ce_source": event["source"], "ce_subject": event.get("subject", "")},
    )


def _document(body: bytes, headers: dict[str, str]) -> Any:
    # Structured mode (application/cloudevents+json) carries the envelope in the body; binary
    # mode carries it in ce-* headers with the data as the body.
    if "ce-specversion" in headers and "cloudevents" not in headers.get("content-type", ""):
        return cloudevent_from_binary(body, headers)
    return body_parse(body)


FORMAT = InboundFormat(
    prefix="events/sap",
    summary="SAP Event Mesh CloudEvent (structured or binary mode)",
    parse=lambda document, *, headers, endpoint: sap_event(document, endpoint=endpoint),
    entity_field="type",
    document=_document,
    # Binary mode carries the event's data in its own content type (datacontenttype).
    accepts=lambda headers: "ce-specversion" in headers or is_json_type(headers.get("content-type", "")),
)
