"""Prepare: complete, screen, fetch and transform a claimed message before it is delivered.

payload_in is the event as received and is never changed here. What the stage reads from the
source (the full record of a truncated event, the documents a key-only event names) goes to
payload_fetched, and the mapping reads the two merged (integrations.scenarios.payloads.message_payload).
A replay therefore starts from the event as the source sent it, and reads again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from integrations import errors, mapping
from integrations.errors import MappingError
from integrations.flow_options import FetchRule
from integrations.models import Flow, Message, RecordLink
from integrations.protocols.events import PARTIAL_FLAG, TRUNCATED_FLAG
from integrations.protocols.transport import DELETE
from integrations.scenarios import chains, echo
from integrations.scenarios.payloads import message_payload, payload_value
from integrations.systems import get_connector


def content_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def mapping_context(flow: Flow) -> dict[str, Any]:
    return flow.company_link.context_for(flow.source) if flow.company_link else {}


@dataclass
class Prepared:
    """What the stage adds before a message is mapped: a reason to skip it, or more mapping context."""

    skip_reason: str = ""
    context: dict[str, Any] = field(default_factory=dict)


def message_prepare(*, message: Message) -> Prepared:
    """Complete, screen and fetch a message, and find its chain; call before map_payload.

    0. A Delete goes no further than its policy (options.on_delete): ignored, or never written by
       this flow (no RecordLink with a target key: nothing to delete), it is skipped with the reason.
    1. A truncated event (Dataverse over 256 KB) is completed from the source, so the screens see
       the whole record.
    2. A flow filter (options.only_when) or an echo of our own write: skip, with the reason. While a
       forward flow is still writing this very record, TransientError: retry once its link is written.
    3. options.fetch: events that carry only a key (SAP CloudEvents) get the documents they name, read
       from the source, under payload_fetched["fetched"][<as>] (stored, so a retry need not read again).
       Connector errors propagate, classified, so the pipeline retries them.
    4. A flow that continues a chain: the chain's links for the mapping ($ctx.chain.<as>.source_key …),
       and the chain's correlation id on the message. A link not there yet raises TransientError (the
       event overtook the record it follows: retry per the flow's policy); an event without the key
       raises MappingError (→ failed).
    5. A partial event (PARTIAL_FLAG: an Update sent without a PostImage) whose mapping needs more
       than the event carries is completed from the source, like a truncated one.
    """
    if is_delete(message):
        return Prepared(skip_reason=delete_skip_reason(message))
    complete_truncated(message=message)
    reason = echo.message_skip_reason(message=message)
    if reason:
        return Prepared(skip_reason=reason)
    if in_flight := echo.forward_write_in_flight(message=message):
        raise errors.TransientError(in_flight)  # its RecordLink is about to say whether this is our echo
    message_fetch(message=message)
    context = chains.message_link_context(message=message)
    complete_partial(message=message, context=context)
    return Prepared(context=context)


# --- deletes --------------------------------------------------------------------------------------


def is_delete(message: Message) -> bool:
    """The event says the source record was deleted (a Dataverse Delete step, a $deletedEntity change)."""
    return isinstance(message.payload_in, dict) and message.payload_in.get("event") == "Delete"


def delivery_operation(message: Message) -> str:
    """What the connector is asked to do: the flow's write, or for a Delete event the delete operation."""
    return DELETE if is_delete(message) else message.flow.target_operation


def delete_skip_reason(message: Message) -> str:
    """Why a Delete needs no call: the flow ignores deletes, or it never wrote this record ("" to carry it)."""
    flow = message.flow
    action = flow.opts.on_delete.action
    if action == "ignore":
        return f"Delete of {message.source_record_key}: the flow ignores deletes (options.on_delete)"
    link = RecordLink.objects.filter(flow=flow, source_key=message.source_record_key).first()
    if link is None or not link.target_key:
        return f"Delete of {message.source_record_key}: this flow never wrote it to {flow.target}, nothing to {action}"
    return ""


def delete_payload(message: Message) -> dict[str, Any]:
    """What a Delete carries: the policy's action, and for block/deactivate the fields it writes.

    Never the record's fields: a Delete is not an upsert. Its content hash, kept on the RecordLink,
    records the delete, so a later re-create of the same content is not taken as unchanged.
    """
    policy = message.flow.opts.on_delete
    return {"@delete": policy.action, **policy.set}


# --- read-back ------------------------------------------------------------------------------------


def complete_truncated(*, message: Message) -> Message:
    """Fill in a message whose event Dataverse truncated (over 256 KB) by reading the record from the source.

    Call before transforming. The record's attributes go to payload_fetched["attributes"] (the
    mapping reads them over the event's); payload_in stays as received, so a replay reads again.
    A message that is not truncated is returned unchanged; a Delete needs no attributes.
    Connector errors propagate, classified, so the pipeline retries them; a record that no longer
    exists is a RejectedError.
    """
    if not message.headers.get(TRUNCATED_FLAG):
        return message
    return read_back(message=message, flag=TRUNCATED_FLAG)


def complete_partial(*, message: Message, context: dict[str, Any]) -> Message:
    """Read the record of a partial event when the mapping needs more than the event carries.

    The rule: an event the source marked partial (PARTIAL_FLAG: a Dataverse Update step registered
    without a PostImage sends only the changed attributes) is mapped as it came; only if that raises
    a MappingError (a required field the event lacks) is the record read from the source, as for a
    truncated event. A partial event that maps as it is goes on without a read.
    """
    if not message.headers.get(PARTIAL_FLAG):
        return message
    try:
        map_payload(message, context)
    except MappingError:
        return read_back(message=message, flag=PARTIAL_FLAG)
    return message


def read_back(*, message: Message, flag: str) -> Message:
    """Read the event's record from the source into payload_fetched["attributes"]; clear the flag.

    The source connector resolves the event's entity (a Dataverse logical name → its entity set).
    """
    fetched = dict(message.payload_fetched or {})
    payload = message.payload_in
    if payload.get("event") != "Delete":
        entity = payload.get("entity") or message.flow.entity
        record_id = str(payload.get("id") or message.source_record_key)
        record = get_connector(message.flow.source).fetch_event_record(entity=entity, record_id=record_id)
        if record is None:
            raise errors.RejectedError(
                f"{entity} {record_id} no longer exists at {message.flow.source}; nothing to carry"
            )
        fetched["attributes"] = {key: value for key, value in record.items() if not key.startswith("@odata")}
    headers = {**message.headers, flag: False, "completed_from_source": True}
    stored = fetched or None
    Message.objects.filter(pk=message.pk).update(payload_fetched=stored, headers=headers)
    message.payload_fetched = stored
    message.headers = headers
    return message


def message_fetch(*, message: Message) -> dict[str, Any]:
    """Read the documents options.fetch names from the source system into payload_fetched["fetched"].

    options.fetch = [{"entity": "API_OUTBOUND_DELIVERY_SRV/A_OutbDeliveryItem",
                      "key": {"DeliveryDocument": "data.OutboundDelivery"}, "as": "item", "first": true}]
    "key" maps the document's key fields to payload paths; "first" takes the first document whose
    fields match (a connector with find()), else the one document with that key (fetch()). "many" takes
    every row whose fields match, as a list (fetch_rows(): an F&O order's lines after its business event,
    which carries none); "company" is the payload path of the company the rows belong to (F&O dataAreaId).
    """
    rules = message.flow.opts.fetch
    if not rules:
        return {}
    payload = message_payload(message)
    fetched = dict(payload.get("fetched") or {})
    missing = [rule for rule in rules if rule.as_ not in fetched]
    if not missing:
        return fetched
    connector = get_connector(message.flow.source)
    for rule in missing:
        seen = {**payload, "fetched": fetched}  # a later document may be named by an earlier one
        key = {field: payload_value(seen, path) for field, path in rule.key.items()}
        absent = [path for field, path in rule.key.items() if key[field] in (None, "")]
        if absent:
            raise MappingError(f"fetch {rule.as_}: the event has no {', '.join(absent)}", field="fetch")
        # A key is a value (text, a number, a flag): an object or a list from the event is no key, and a
        # connector would build a URL or $filter of its Python text, or crash on it.
        if shapeless := [path for field, path in rule.key.items() if not _is_key_value(key[field])]:
            raise MappingError(
                f"fetch {rule.as_}: the event's {', '.join(shapeless)} is not a value a key can hold "
                f"({', '.join(type(key[f]).__name__ for f, p in rule.key.items() if p in shapeless)})",
                field="fetch",
                path=shapeless[0],
            )
        company = _fetch_company(rule, seen)
        if rule.expand and not rule.many:
            raise MappingError(f"fetch {rule.as_}: expand reads with the rows of a many rule only", field="fetch")
        if rule.many:
            fetched[rule.as_] = _fetch_rows(connector, rule, key, company)
            continue
        if rule.first and hasattr(connector, "find"):
            service, _, entity_set = rule.entity.partition("/")
            found = connector.find(service, entity_set, key)
            record = found[0] if found else None
        else:
            record = connector.fetch(entity=rule.entity, key=key, company=company)
        if record is None:
            raise MappingError(
                f"fetch {rule.as_}: {rule.entity} {key} does not exist at {message.flow.source}",
                field="fetch",
            )
        fetched[rule.as_] = {k: v for k, v in record.items() if k != "__metadata"}
    message.payload_fetched = {**(message.payload_fetched or {}), "fetched": fetched}
    Message.objects.filter(pk=message.pk).update(payload_fetched=message.payload_fetched)
    return fetched


def _fetch_company(rule: FetchRule, payload: dict[str, Any]) -> str:
    """The company a fetch rule reads in (options.fetch[].company, a payload path); "" when it names none."""
    if not rule.company:
        return ""
    company = payload_value(payload, rule.company)
    if company in (None, "") or not isinstance(company, str):
        raise MappingError(f"fetch {rule.as_}: the event has no company at {rule.company}", field="fetch")
    return company


def _fetch_rows(connector: Any, rule: FetchRule, key: dict[str, Any], company: str) -> list[dict[str, Any]]:
    """Every row a many-rule names; none found is an empty list (an order may have no lines yet)."""
    if not hasattr(connector, "fetch_rows"):
        raise MappingError(f"fetch {rule.as_}: {connector.kind} cannot read many rows (many)", field="fetch")
    if rule.expand and not getattr(connector, "expands", False):
        raise MappingError(f"fetch {rule.as_}: {connector.kind} takes no expand", field="fetch")
    more = {"expand": rule.expand} if rule.expand else {}
    rows = connector.fetch_rows(entity=rule.entity, key=key, company=company, **more)
    return [{k: v for k, v in row.items() if k != "__metadata"} for row in rows]


def _is_key_value(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return isinstance(value, bool)
    if isinstance(value, int):
        return abs(value) < 10**38
    if isinstance(value, float):
        return value - value == 0
    return isinstance(value, str) and len(value) <= 1000 and "\x00" not in value


def map_payload(message: Message, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """The event and what was fetched for it, through the flow's current mapping.

    Raises MappingError naming field, path and value. A Delete is not mapped: it carries its policy.
    """
    flow = message.flow
    if is_delete(message):
        return delete_payload(message)
    return mapping.apply(
        spec=flow.mapping_spec,
        payload=message_payload(message),
        context={**mapping_context(flow), **(context or {})},
    )
