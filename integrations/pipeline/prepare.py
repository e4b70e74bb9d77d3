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
from integrations.models import Flow, Message
from integrations.protocols.events import TRUNCATED_FLAG
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
    """
    complete_truncated(message=message)
    reason = echo.message_skip_reason(message=message)
    if reason:
        return Prepared(skip_reason=reason)
    if in_flight := echo.forward_write_in_flight(message=message):
        raise errors.TransientError(in_flight)  # its RecordLink is about to say whether this is our echo
    message_fetch(message=message)
    return Prepared(context=chains.message_link_context(message=message))


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
    fetched = dict(message.payload_fetched or {})
    payload = message.payload_in
    if payload.get("event") != "Delete":
        entity = payload.get("entity") or message.flow.entity
        record_id = payload.get("id") or message.source_record_key
        record = get_connector(message.flow.source).fetch(entity=entity, key={f"{entity}id": record_id})
        if record is None:
            raise errors.RejectedError(
                f"{entity} {record_id} no longer exists at {message.flow.source}; nothing to carry"
            )
        fetched["attributes"] = {key: value for key, value in record.items() if not key.startswith("@odata")}
    headers = {**message.headers, TRUNCATED_FLAG: False, "completed_from_source": True}
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
    fields match (a connector with find()), else the one document with that key (fetch()).
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
        if rule.first and hasattr(connector, "find"):
            service, _, entity_set = rule.entity.partition("/")
            found = connector.find(service, entity_set, key)
            record = found[0] if found else None
        else:
            record = connector.fetch(entity=rule.entity, key=key)
        if record is None:
            raise MappingError(
                f"fetch {rule.as_}: {rule.entity} {key} does not exist at {message.flow.source}",
                field="fetch",
            )
        fetched[rule.as_] = {k: v for k, v in record.items() if k != "__metadata"}
    message.payload_fetched = {**(message.payload_fetched or {}), "fetched": fetched}
    Message.objects.filter(pk=message.pk).update(payload_fetched=message.payload_fetched)
    return fetched


def map_payload(message: Message, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """The event and what was fetched for it, through the flow's current mapping.

    Raises MappingError naming field, path and value.
    """
    flow = message.flow
    return mapping.apply(
        spec=flow.mapping_spec,
        payload=message_payload(message),
        context={**mapping_context(flow), **(context or {})},
    )
