"""Dataverse webhooks: a RemoteExecutionContext as a plugin step posts it, parsed into an InboundEvent."""

from __future__ import annotations

import re
from typing import Any

from integrations.protocols.events import (
    PARTIAL_FLAG,
    TRUNCATED_FLAG,
    EventError,
    InboundEvent,
    InboundFormat,
    iso_to_micros,
    object_of,
    require,
    wcf_date,
)

# Dataverse headers worth keeping with the message (the docs' "Header Data" table).
DATAVERSE_HEADERS = (
    "x-ms-dynamics-organization",
    "x-ms-dynamics-entity-name",
    "x-ms-dynamics-request-name",
    "x-ms-correlation-request-id",
    "x-ms-dynamics-msg-size-exceeded",
    "x-request-id",
)

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
            if isinstance(candidate, str) and candidate.isdecimal() and len(candidate) <= 19:
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
    context = object_of(body)
    message_name = require(context, "MessageName")
    entity = require(context, "PrimaryEntityName")
    record_id = require(context, "PrimaryEntityId")
    correlation = require(context, "CorrelationId")
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
        source_version = iso_to_micros(modified, "modifiedon") or iso_to_micros(
            context.get("OperationCreatedOn"), "OperationCreatedOn"
        )

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
    elif message_name == "Update" and not post_images:
        # A step without a PostImage sends only the changed attributes in the Target (and the pre-image,
        # if registered, the values before): the record as it is now is not in the event.
        kept[PARTIAL_FLAG] = True
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


FORMAT = InboundFormat(
    prefix="webhooks/dataverse",
    url_name="webhook-dataverse",
    summary="Dataverse webhook (RemoteExecutionContext)",
    system_summary="Dataverse webhook for every entity of one system",
    parse=lambda document, *, headers, endpoint: dataverse_event(document, headers=headers),
    entity_field="PrimaryEntityName",
    entity_is_flow_entity=True,
)


_LOOKUP_VALUE = re.compile(r"^_(\w+)_value$")
_LOGICAL_NAME, _FORMATTED = "@Microsoft.Dynamics.CRM.lookuplogicalname", "@OData.Community.Display.V1.FormattedValue"


def update_event(logical_name: str, record_id: str, row: dict[str, Any]) -> dict[str, Any]:
    """A table row as the message a webhook's Update makes of it (the flows' mappings read `attributes.*`):
    what the change-tracking poll, an initial load and a reconciliation repair store for a row they read.

    A lookup reads back as `_<lookup>_value` (with its table and name as annotations, when asked for);
    a webhook carries it as an EntityReference under the lookup's name, {"LogicalName", "Id", "Name"}, and
    that is what the flows' links and mappings read (attributes.customerid): so it becomes one.
    """
    attributes: dict[str, Any] = {}
    for key, value in row.items():
        if key.startswith("@odata") or "@" in key:
            continue
        if match := _LOOKUP_VALUE.match(key):
            reference = {"LogicalName": row.get(key + _LOGICAL_NAME), "Id": value, "Name": row.get(key + _FORMATTED)}
            attributes[match.group(1)] = reference if value else None
        else:
            attributes[key] = value
    etag = row.get("@odata.etag", "")
    return {"event": "Update", "entity": logical_name, "id": record_id, "attributes": attributes, "etag": etag}
