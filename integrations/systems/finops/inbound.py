"""D365 F&O business events: the standard envelope (BusinessEventId, EventId, ControlNumber…)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from integrations.models import InboundEndpoint
from integrations.protocols.events import (
    BIGINT,
    EventError,
    InboundEvent,
    InboundFormat,
    iso_to_micros,
    object_of,
    pointer_key,
    require,
    scalar_text,
)

# --- F&O business events -----------------------------------------------------------------


def finops_event(body: Any, *, endpoint: InboundEndpoint | None = None) -> InboundEvent:
    """A D365 F&O business event: the standard envelope plus the event's own (or a custom event's) fields.

    The key is EventId (a GUID F&O repeats when it resends); ControlNumber grows with every event,
    so it is the record version. The record key comes from the configured pointer, else
    ContextRecordSubject.
    """
    event = object_of(body)
    event_type = require(event, "BusinessEventId")
    control_number = event.get("ControlNumber")
    if control_number is not None and (not isinstance(control_number, int) or isinstance(control_number, bool)):
        raise EventError("field 'ControlNumber' must be an integer", "ControlNumber")
    if control_number is not None and not BIGINT[0] <= control_number <= BIGINT[1]:
        raise EventError("field 'ControlNumber' is beyond a 64-bit integer", "ControlNumber")
    event_id = event.get("EventId")
    if event_id is not None and not isinstance(event_id, str):
        raise EventError("field 'EventId' must be a string", "EventId")
    if not event_id:
        raise EventError("field 'EventId' is missing", "EventId")
    for name in ("MajorVersion", "MinorVersion"):
        if name in event and (not isinstance(event[name], int) or isinstance(event[name], bool)):
            raise EventError(f"field '{name}' must be an integer", name)
    record_key = pointer_key(event, endpoint) or scalar_text(event.get("ContextRecordSubject"))
    return InboundEvent(
        payload=event,
        idempotency_key=f"{event_type}:{event_id.strip('{}').lower()}",
        entity=event_type,
        event_type=event_type,
        source_record_key=record_key,
        source_version=control_number or iso_to_micros(event.get("EventTime"), "EventTime"),
        correlation_id=event_id.strip("{}").lower()[:100],
        headers={
            "business_event_id": event_type,
            "legal_entity": scalar_text(event.get("BusinessEventLegalEntity")),
            "major_version": event.get("MajorVersion"),
            "minor_version": event.get("MinorVersion"),
        },
    )


def listed_event(fields: Mapping[str, str], row: dict[str, Any]) -> dict[str, Any]:
    """A data entity row as the business event that would have announced it (options.listing.event:
    event field → row field), for a load or a reconciliation repair of an event flow.

    F&O names the legal entity of an event in upper case (BusinessEventLegalEntity: "SE01"), where
    entity rows hold dataAreaId in lower case; so does every event field taken from dataAreaId.
    """
    company = str(row.get("dataAreaId") or "").upper()
    event: dict[str, Any] = {"loaded": True, "BusinessEventLegalEntity": company}
    for name, field in fields.items():
        event[name] = company if field == "dataAreaId" else row.get(field)
    return event


FORMAT = InboundFormat(
    prefix="events/finops",
    summary="D365 F&O business event",
    parse=lambda document, *, headers, endpoint: finops_event(document, endpoint=endpoint),
    entity_field="BusinessEventId",
)
