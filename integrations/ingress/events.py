"""Inbound events: turn what a sender posts into what message_ingest stores.

One parser per sender format. Each returns an InboundEvent (payload, idempotency key,
record key and version, correlation id, headers) or raises EventError naming the
field that is wrong. Parsers are pure: no database, no network.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import transaction

from integrations import errors
from integrations.models import InboundEndpoint, Message
from integrations.systems import get_connector

# Dataverse headers worth keeping with the message (the docs' "Header Data" table).
DATAVERSE_HEADERS = (
    "x-ms-dynamics-organization",
    "x-ms-dynamics-entity-name",
    "x-ms-dynamics-request-name",
    "x-ms-correlation-request-id",
    "x-ms-dynamics-msg-size-exceeded",
    "x-request-id",
)
TRUNCATED_FLAG = "truncated"
_WCF_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


class EventError(ValueError):
    """The body is not an event we can take; the text says what is wrong and field where."""

    def __init__(self, text: str, field: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.field = field


def key_fit(key: str, limit: int = 255) -> str:
    """A key that fits the column: a long one keeps its head and gains a hash of the whole, so two stay two."""
    if len(key) <= limit:
        return key
    return f"{key[: limit - 65]}#{hashlib.sha256(key.encode()).hexdigest()}"


@dataclass
class InboundEvent:
    payload: dict[str, Any]
    idempotency_key: str
    entity: str = ""  # what the event is about, for routing a system-level endpoint to flows
    event_type: str = ""
    source_record_key: str = ""
    source_version: int | None = None
    correlation_id: str = ""
    headers: dict[str, Any] = field(default_factory=dict)


def body_parse(body: bytes) -> Any:
    """JSON from the raw body, or an EventError that says where it broke."""
    if not body.strip():
        raise EventError("the body is empty; expected a JSON object")
    try:
        document = json.loads(body, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise EventError("the body is not UTF-8 text; expected a JSON object") from None
    except json.JSONDecodeError as exc:
        raise EventError(f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if b"\\u" in body:
        # JSON may escape what PostgreSQL cannot store (a NUL, half a surrogate pair); refuse it here, as
        # bad input, rather than fail at the INSERT. Only escaped bodies can hold them, so most skip this.
        _check_storable(document)
    return document


def _no_constant(name: str) -> Any:
    # Python's json takes NaN and Infinity; JSON (and PostgreSQL) do not.
    raise EventError(f"the body is not JSON: {name} is not a JSON number")


def _check_storable(value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise EventError("the body holds a NUL character (\\u0000), which cannot be stored")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise EventError("the body holds an unpaired UTF-16 surrogate escape, which is not text") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_storable(key)
            _check_storable(item)
    elif isinstance(value, list):
        for item in value:
            _check_storable(item)


def _require(data: dict[str, Any], name: str, kind: type | tuple[type, ...] = str, where: str = "") -> Any:
    label = f"{where}{name}"
    if name not in data or data[name] is None:
        raise EventError(f"field '{label}' is missing", label)
    value = data[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise EventError(
            f"field '{label}' must be a {_json_type(names)}, got {_json_type(type(value).__name__)}", label
        )
    if isinstance(value, str) and not value.strip():
        raise EventError(f"field '{label}' is empty", label)
    return value


def _json_type(python_name: str) -> str:
    names = {"str": "string", "dict": "object", "list": "array", "int": "integer", "float": "number"}
    return " or ".join(names.get(n, n) for n in python_name.split(" or "))


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise EventError(f"the body must be a JSON object, got {_json_type(type(body).__name__)}")
    return body


def wcf_date(value: str) -> datetime | None:
    """/Date(1506384247000)/ or /Date(1506409448000-0700)/ → aware datetime (the ms are UTC)."""
    match = _WCF_DATE.match(value)
    if not match:
        return None
    try:
        return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def iso_to_micros(value: Any) -> int | None:
    """An ISO 8601 time (or a WCF /Date()/) as µs since the epoch: a version that sorts like time."""
    if not isinstance(value, str):
        return None
    moment = wcf_date(value)
    if moment is None:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


def _pointer(document: Any, pointer: str) -> Any:
    """RFC 6901 JSON pointer lookup; None when any step is absent."""
    if pointer in ("", "/"):
        return document if pointer == "" else None
    if not pointer.startswith("/"):
        pointer = "/" + pointer.replace(".", "/")  # also accept a dotted path: order.id
    value = document
    for raw in pointer[1:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return ""
    return str(value)


# --- Dataverse ---------------------------------------------------------------------


def dataverse_value(value: Any) -> Any:
    """One typed value of a RemoteExecutionContext attribute, as plain JSON.

    EntityReference → {"LogicalName", "Id", "Name"}; OptionSetValue and Money → their Value;
    OptionSetValueCollection → list of values; EntityCollection → list of records;
    /Date(ms)/ → ISO 8601 UTC. Unknown typed objects keep their fields without "__type".
    """
    if isinstance(value, str):
        moment = wcf_date(value)
        return moment.isoformat().replace("+00:00", "Z") if moment else value
    if isinstance(value, list):
        return [dataverse_value(item) for item in value]
    if not isinstance(value, dict):
        return value
    type_name = str(value.get("__type", "")).split(":", 1)[0]
    if type_name == "EntityReference" or ("LogicalName" in value and "Id" in value and "Attributes" not in value):
        return {"LogicalName": value.get("LogicalName"), "Id": value.get("Id"), "Name": value.get("Name")}
    if type_name in ("OptionSetValue", "Money", "BooleanManagedProperty") and "Value" in value:
        return dataverse_value(value["Value"])
    if type_name == "OptionSetValueCollection" or (type_name == "" and set(value) == {"Value"}):
        return dataverse_value(value.get("Value"))
    if type_name == "EntityCollection":
        return [dataverse_entity(item, where="Entities") for item in value.get("Entities") or []]
    if "Attributes" in value:
        return dataverse_entity(value, where="value")
    return {key: dataverse_value(item) for key, item in value.items() if key != "__type"}


def _key_values(items: Any, where: str) -> list[tuple[str, Any]]:
    """Dataverse serialises dictionaries as [{"key": .., "value": ..}, ...]."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise EventError(f"field '{where}' must be an array of key/value pairs", where)
    pairs = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise EventError(f"field '{where}[{index}]' must be an object with a string 'key'", f"{where}[{index}]")
        pairs.append((item["key"], item.get("value")))
    return pairs


def dataverse_entity(entity: Any, *, where: str) -> dict[str, Any]:
    """An Entity (Target or image) as {"LogicalName", "Id", "attributes": {name: plain value}}."""
    if not isinstance(entity, dict):
        raise EventError(f"field '{where}' must be an object", where)
    attributes = {
        key: dataverse_value(value) for key, value in _key_values(entity.get("Attributes"), f"{where}.Attributes")
    }
    formatted = dict(_key_values(entity.get("FormattedValues"), f"{where}.FormattedValues"))
    record: dict[str, Any] = {
        "LogicalName": entity.get("LogicalName"),
        "Id": entity.get("Id"),
        "attributes": attributes,
    }
    if formatted:
        record["formatted"] = formatted
    if entity.get("RowVersion"):
        record["RowVersion"] = entity["RowVersion"]
    return record


def _images(context: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: dataverse_entity(value, where=f"{name}.{key}") for key, value in _key_values(context.get(name), name)}


def _version_number(*records: dict[str, Any] | None) -> int | None:
    """Dataverse's versionnumber (rowversion) of the record, from the Target or an image."""
    for record in records:
        if not record:
            continue
        for candidate in (record.get("attributes", {}).get("versionnumber"), record.get("RowVersion")):
            if isinstance(candidate, int) and not isinstance(candidate, bool):
                return candidate
            if isinstance(candidate, str) and candidate.isdigit():
                return int(candidate)
    return None


def dataverse_event(body: Any, *, headers: dict[str, str]) -> InboundEvent:
    """Parse a RemoteExecutionContext as a Dataverse webhook posts it.

    1. Check the context's own fields: MessageName, PrimaryEntityName, PrimaryEntityId, CorrelationId.
    2. Take the Target (an Entity on Create/Update, an EntityReference on Delete) and the images,
       unless the sender dropped them for size (x-ms-dynamics-msg-size-exceeded): then flag the
       message so the pipeline reads the full record (complete_truncated) instead of losing it.
    3. The idempotency key: the record's versionnumber when the event carries it (each change has a
       new one; a redelivery repeats it), else the operation: OperationId, RequestId, CorrelationId,
       Depth and Stage, which Dataverse repeats on a retry of the same step execution.
    """
    context = _object(body)
    message_name = _require(context, "MessageName")
    entity = _require(context, "PrimaryEntityName")
    record_id = _require(context, "PrimaryEntityId")
    correlation = _require(context, "CorrelationId")
    depth = context.get("Depth", 1)
    if not isinstance(depth, int) or isinstance(depth, bool):
        raise EventError("field 'Depth' must be an integer", "Depth")

    kept = {name: headers[name] for name in DATAVERSE_HEADERS if name in headers}
    truncated = "x-ms-dynamics-msg-size-exceeded" in headers
    target: dict[str, Any] | None = None
    if not truncated:
        for key, value in _key_values(context.get("InputParameters"), "InputParameters"):
            if key == "Target":
                target = dataverse_entity(value, where="InputParameters.Target") if isinstance(value, dict) else None
                if target is None:
                    raise EventError("field 'InputParameters.Target' must be an object", "InputParameters.Target")
        if target is None and message_name in ("Create", "Update"):
            raise EventError("field 'InputParameters.Target' is missing", "InputParameters.Target")
    pre_images = _images(context, "PreEntityImages")
    post_images = _images(context, "PostEntityImages")
    pre = next(iter(pre_images.values()), None)
    post = next(iter(post_images.values()), None)

    # A Delete has no new version of its own: its pre-image holds the version it removes.
    version = _version_number(target, post, pre if message_name == "Delete" else None)
    if version is not None:
        key = f"{entity}:{record_id}:{message_name}:v{version}"
        source_version = version
    else:
        parts = [context.get(name) for name in ("OperationId", "RequestId")] + [
            correlation,
            depth,
            context.get("Stage"),
        ]
        key = f"{entity}:{record_id}:{message_name}:" + ":".join("" if p is None else str(p) for p in parts)
        modified = (target or {}).get("attributes", {}).get("modifiedon") or (post or {}).get("attributes", {}).get(
            "modifiedon"
        )
        source_version = iso_to_micros(modified) or iso_to_micros(context.get("OperationCreatedOn"))

    attributes: dict[str, Any] = {}
    for image in (pre, post, target):  # the Target is what changed: it wins over the images
        if image and image.get("LogicalName") in (None, entity):
            attributes.update(image.get("attributes", {}))
    payload = {
        "event": message_name,
        "entity": entity,
        "id": record_id,
        "attributes": attributes,
        "target": target,
        "pre_images": pre_images,
        "post_images": post_images,
        "context": {
            name: context.get(name)
            for name in (
                "CorrelationId",
                "Depth",
                "OperationId",
                "RequestId",
                "Stage",
                "Mode",
                "UserId",
                "InitiatingUserId",
                "OrganizationName",
                "OrganizationId",
                "OperationCreatedOn",
            )
        },
    }
    if truncated:
        kept[TRUNCATED_FLAG] = True
    return InboundEvent(
        payload=payload,
        idempotency_key=key,
        entity=entity,
        event_type=message_name,
        source_record_key=record_id,
        source_version=source_version,
        correlation_id=correlation[:100],
        headers=kept,
    )


def complete_truncated(*, message: Message) -> Message:
    """Fill in a message whose event Dataverse truncated (over 256 KB) by reading the record from the source.

    Call before transforming. A message that is not truncated is returned unchanged; a Delete
    needs no attributes. Connector errors propagate, classified, so the pipeline retries them;
    a record that no longer exists is a RejectedError.
    """
    if not message.headers.get(TRUNCATED_FLAG):
        return message
    payload = dict(message.payload_in)
    if payload.get("event") != "Delete":
        entity = payload.get("entity") or message.flow.entity
        record_id = payload.get("id") or message.source_record_key
        record = get_connector(message.flow.source).fetch(entity=entity, key={f"{entity}id": record_id})
        if record is None:
            raise errors.RejectedError(
                f"{entity} {record_id} no longer exists at {message.flow.source}; nothing to carry"
            )
        payload["attributes"] = {key: value for key, value in record.items() if not key.startswith("@odata")}
    headers = {**message.headers, TRUNCATED_FLAG: False, "completed_from_source": True}
    with transaction.atomic():
        Message.objects.filter(pk=message.pk).update(payload_in=payload, headers=headers)
    message.payload_in = payload
    message.headers = headers
    return message


# --- F&O business events -----------------------------------------------------------------


def finops_event(body: Any, *, endpoint: InboundEndpoint | None = None) -> InboundEvent:
    """A D365 F&O business event: the standard envelope plus the event's own (or a custom event's) fields.

    The key is EventId (a GUID F&O repeats when it resends); ControlNumber grows with every event,
    so it is the record version. The record key comes from the configured pointer, else
    ContextRecordSubject.
    """
    event = _object(body)
    event_type = _require(event, "BusinessEventId")
    control_number = event.get("ControlNumber")
    if control_number is not None and (not isinstance(control_number, int) or isinstance(control_number, bool)):
        raise EventError("field 'ControlNumber' must be an integer", "ControlNumber")
    event_id = event.get("EventId")
    if event_id is not None and not isinstance(event_id, str):
        raise EventError("field 'EventId' must be a string", "EventId")
    if not event_id:
        raise EventError("field 'EventId' is missing", "EventId")
    for name in ("MajorVersion", "MinorVersion"):
        if name in event and (not isinstance(event[name], int) or isinstance(event[name], bool)):
            raise EventError(f"field '{name}' must be an integer", name)
    record_key = _record_key(event, endpoint) or _scalar_text(event.get("ContextRecordSubject"))
    return InboundEvent(
        payload=event,
        idempotency_key=f"{event_type}:{event_id.strip('{}').lower()}",
        entity=event_type,
        event_type=event_type,
        source_record_key=record_key,
        source_version=control_number or iso_to_micros(event.get("EventTime")),
        correlation_id=event_id.strip("{}").lower()[:100],
        headers={
            "business_event_id": event_type,
            "legal_entity": _scalar_text(event.get("BusinessEventLegalEntity")),
            "major_version": event.get("MajorVersion"),
            "minor_version": event.get("MinorVersion"),
        },
    )


def _record_key(document: Any, endpoint: InboundEndpoint | None) -> str:
    if endpoint is None or not endpoint.record_key_pointer:
        return ""
    value = _scalar_text(_pointer(document, endpoint.record_key_pointer))
    if not value:
        raise EventError(f"field '{endpoint.record_key_pointer}' is missing", endpoint.record_key_pointer)
    return value


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
            _check_storable(event["data"])
    _check_storable(event)
    return event


def sap_event(body: Any, *, endpoint: InboundEndpoint | None = None) -> InboundEvent:
    """An SAP S/4HANA business event as Event Mesh pushes it: a CloudEvents 1.0 JSON envelope.

    CloudEvents says source + id identify an event, so a redelivery is a duplicate. The record key
    comes from the configured pointer, else the one value of `data` ({"SalesOrder": "1"}).
    """
    event = _object(body)
    for name in CLOUDEVENT_REQUIRED:
        _require(event, name)
    if event["specversion"] != "1.0":
        raise EventError(f"field 'specversion' must be '1.0', got {event['specversion']!r}", "specversion")
    data = event.get("data")
    record_key = _record_key(event, endpoint)
    if not record_key and isinstance(data, dict):
        scalars = [value for value in data.values() if _scalar_text(value)]
        if len(scalars) == 1:
            record_key = _scalar_text(scalars[0])
    time_value = event.get("time")
    if time_value is not None and iso_to_micros(time_value) is None:
        raise EventError(f"field 'time' must be an RFC 3339 time, got {time_value!r}", "time")
    return InboundEvent(
        payload=event,
        idempotency_key=f"{event['source']}#{event['id']}",
        entity=event["type"],
        event_type=event["type"],
        source_record_key=record_key,
        source_version=iso_to_micros(time_value),
        correlation_id=str(event["id"])[:100],
        headers={"ce_type": event["type"], "ce_source": event["source"], "ce_subject": event.get("subject", "")},
    )


# --- generic JSON ------------------------------------------------------------------------------

DEFAULT_ID_HEADER = "idempotency-key"
DEFAULT_ID_POINTER = "/id"


def generic_event(body: Any, *, headers: dict[str, str], endpoint: InboundEndpoint | None = None) -> InboundEvent:
    """Any JSON object; its id from the configured header or JSON pointer (default: Idempotency-Key, then /id)."""
    document = _object(body)
    id_header = (endpoint.id_header if endpoint and endpoint.id_header else DEFAULT_ID_HEADER).lower()
    id_pointer = endpoint.id_pointer if endpoint and endpoint.id_pointer else DEFAULT_ID_POINTER
    event_id = headers.get(id_header, "").strip() or _scalar_text(_pointer(document, id_pointer)).strip()
    if not event_id:
        also = "" if endpoint and endpoint.id_pointer else f", nor header '{id_header}'"
        raise EventError(f"field '{id_pointer}' is missing{also}", id_pointer)
    version = None
    if endpoint and endpoint.version_pointer:
        raw = _pointer(document, endpoint.version_pointer)
        if isinstance(raw, int) and not isinstance(raw, bool):
            version = raw
        elif isinstance(raw, float | Decimal):
            version = int(raw)
        else:
            version = iso_to_micros(raw)
            if version is None and isinstance(raw, str) and raw.isdigit():
                version = int(raw)
        if raw is not None and version is None:
            raise EventError(f"field '{endpoint.version_pointer}' must be a number or a time", endpoint.version_pointer)
    return InboundEvent(
        payload=document,
        idempotency_key=event_id,
        source_record_key=_record_key(document, endpoint) or event_id,
        source_version=version,
        correlation_id=headers.get("x-correlation-id", "")[:100],
    )
