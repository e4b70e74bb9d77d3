"""Business chains: one correlation id across every message and record of one order.

A flow that continues a chain says so in its options:

    Flow.options["chain"] = {
        "follows": "ic-dk01-po-to-se01-so",   # the flow whose RecordLink holds the order
        "match": "target_key",                # this event's key is that link's target key (or "source_key")
        "key": ["SalesOrderNumber"],          # payload paths of the key, first one present wins
        "key_field": "SalesOrderNumber",      # optional: the link's key is an F&O key of this field …
        "company": "LegalEntity",             # … in the company at this path (dataAreaId='se01',…)
        "as": "order",                        # the mapping sees $ctx.chain.order.source_key …
        "step": 2,                            # position in the chain view
        "optional": False,                    # a chain is complete without this step (e.g. order holds)
    }
    Flow.options["links"] = [{"follows": …, "match": "source_key", "key": […], "as": "customer"}]
                                              # lookups for the mapping only ($ctx.chain.customer.target_key)

Before such a flow maps a message, message_prepare() (the pipeline's hook) skips filtered
events and echoes, reads what key-only events name (options.fetch), finds the followed
flow's RecordLink, gives the message that link's correlation id and hands the link's keys
to the mapping (the AX purchase order number for an F&O packing slip, say). chain_for()
reads the whole chain back for the operator.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from integrations import errors
from integrations.errors import MappingError
from integrations.models import Flow, Message, RecordLink

logger = logging.getLogger(__name__)

Status = Message.Status


class ChainNotFound(Exception):
    pass


def chain_rule(flow: Flow) -> dict[str, Any] | None:
    rule = flow.options.get("chain") if isinstance(flow.options, dict) else None
    return rule if isinstance(rule, dict) and rule.get("follows") else None


def _key_paths(rule: dict[str, Any]) -> list[str]:
    key = rule.get("key") or []
    return [key] if isinstance(key, str) else list(key)


def payload_value(payload: Any, path: str) -> Any:
    """A dotted path into a payload: dict keys, list indices, and Dataverse key/value attribute lists."""
    value = payload
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, list) and all(isinstance(item, dict) and "key" in item for item in value):
            # Dataverse RemoteExecutionContext: [{"key": "accountid", "value": ...}, ...]
            value = next((item.get("value") for item in value if item["key"] == part), None)
            if value is None:
                return None
        else:
            return None
    return value


def _find_link(message: Message, rule: dict[str, Any], *, where: str) -> RecordLink:
    """The followed flow's RecordLink for the key the payload carries.

    MappingError when the payload has no key; TransientError when no link has it yet.
    """
    paths = _key_paths(rule)
    key = next((payload_value(message.payload_in, p) for p in paths if payload_value(message.payload_in, p)), None)
    if isinstance(key, dict):  # a Dataverse lookup: {"LogicalName", "Id", "Name"}
        key = key.get("Id")
    if key in (None, ""):
        raise MappingError(
            f"{where}: none of the key paths {paths} is in the event; cannot tell which record it belongs to",
            field=where,
            path=",".join(paths),
        )
    match = rule.get("match", "target_key")
    if match not in ("target_key", "source_key"):
        raise MappingError(f"{where}: 'match' must be target_key or source_key, not {match!r}", field=where)
    if rule.get("key_field"):
        key = _odata_key(message, rule, str(key), where)
    link = (
        RecordLink.objects.filter(flow__slug=rule["follows"], **{match: str(key)}).order_by("-synced_at", "-pk").first()
    )
    if link is None:
        # Events overtake each other (an order's webhook before its account's delivery): wait and retry.
        raise errors.TransientError(
            f"{where}: {key} is not linked by flow '{rule['follows']}' yet (looked up by {match}); "
            "waiting for that record to be delivered"
        )
    return link


# One name='value' pair of an OData key segment (quotes inside a value are doubled).
_KEY_PART = re.compile(r"(\w+)='((?:[^']|'')*)'")


def parse_key(key: str) -> dict[str, str]:
    """The fields of an OData key segment, as the F&O connector writes target keys; {} for a plain key.

    "dataAreaId='se01',CustomerAccount='C-1'" → {"dataAreaId": "se01", "CustomerAccount": "C-1"}
    """
    return {name: value.replace("''", "'") for name, value in _KEY_PART.findall(key or "")}


def _odata_key(message: Message, rule: dict[str, Any], value: str, where: str) -> str:
    """The key as the F&O connector writes it (dataAreaId='se01',SalesOrderNumber='SO-1'), from the event."""
    from integrations.systems.finops.connector import format_key

    company = payload_value(message.payload_in, rule.get("company", "dataAreaId"))
    if not company:
        raise MappingError(f"{where}: the event has no company at '{rule.get('company', 'dataAreaId')}'", field=where)
    return format_key(str(company).lower(), {rule["key_field"]: value})


def _link_values(link: RecordLink) -> dict[str, Any]:
    """What a mapping sees of a link: both keys, the correlation id, and the target key's fields."""
    return {
        "source_key": link.source_key,
        "target_key": link.target_key,
        "correlation_id": link.correlation_id,
        "target": parse_key(link.target_key),
        "source": parse_key(link.source_key),
    }


def message_link_context(*, message: Message) -> dict[str, Any]:
    """The links a message's mapping may use; gives a chain's message its chain's correlation id.

    1. options.chain: the order this event continues. Its link's correlation id becomes the message's.
    2. options.links: further lookups for the mapping only (the F&O customer of a Sales order's account),
       which do not change the correlation id. "optional": true lets an event without the key through.
    3. A missing key is a MappingError; a link not there yet a TransientError (retried): both say which.
    """
    options = message.flow.options if isinstance(message.flow.options, dict) else {}
    found: dict[str, dict[str, str]] = {}
    rule = chain_rule(message.flow)
    if rule is not None:
        link = _find_link(message, rule, where="chain")
        if link.correlation_id and message.correlation_id != link.correlation_id:
            Message.objects.filter(pk=message.pk).update(correlation_id=link.correlation_id)
            message.correlation_id = link.correlation_id
        found[rule.get("as") or "order"] = _link_values(link)
    for lookup in options.get("links") or []:
        try:
            found[lookup["as"]] = _link_values(_find_link(message, lookup, where=f"links.{lookup['as']}"))
        except MappingError:
            if not lookup.get("optional"):
                raise
            # An optional lookup without its key in the event (a contact with no account): nothing to look up.
    if not found:
        return {}
    return {"chain": found, "correlation_id": message.correlation_id}


# --- reading a chain back --------------------------------------------------------------------------------------


@dataclass
class ChainStep:
    flow: Flow
    label: str
    state: str  # a Message status, or "waiting" when no message has arrived for this step
    optional: bool = False
    message: Message | None = None
    link: RecordLink | None = None
    at: datetime | None = None

    @property
    def source_key(self) -> str:
        return self.message.source_record_key if self.message else ""

    @property
    def target_key(self) -> str:
        if self.link and self.link.target_key:
            return self.link.target_key
        return self.message.target_record_key if self.message else ""

    @property
    def error(self) -> str:
        return self.message.last_error if self.message else ""


@dataclass
class Chain:
    correlation_id: str
    steps: list[ChainStep] = field(default_factory=list)

    @property
    def state(self) -> str:
        """complete, attention (a step failed, died or conflicts), or in_progress."""
        if any(step.state in Message.NEEDS_ATTENTION for step in self.steps):
            return "attention"
        if all(step.state in Message.TERMINAL for step in self.steps if not step.optional):
            return "complete"
        return "in_progress"


def _chain_flows(seed: list[Flow]) -> list[Flow]:
    """Every flow of the chains the seed flows belong to, roots first, then in step order."""
    all_flows = {flow.slug: flow for flow in Flow.objects.select_related("source", "target")}
    children: dict[str, list[Flow]] = {}
    for flow in all_flows.values():
        rule = chain_rule(flow)
        if rule:
            children.setdefault(rule["follows"], []).append(flow)
    roots: list[Flow] = []
    for flow in seed:
        current, seen = flow, set()
        while (rule := chain_rule(current)) and rule["follows"] in all_flows and current.slug not in seen:
            seen.add(current.slug)
            current = all_flows[rule["follows"]]
        if current not in roots:
            roots.append(current)
    ordered: list[Flow] = []
    queue = deque(roots)
    while queue:
        flow = queue.popleft()
        if flow in ordered:
            continue
        ordered.append(flow)
        queue.extend(sorted(children.get(flow.slug, []), key=lambda f: ((chain_rule(f) or {}).get("step", 99), f.slug)))
    return ordered


def chain_for(correlation_id: str) -> Chain:
    """The ordered steps of one business transaction, each with its state and cross-references.

    1. Messages with the correlation id, oldest first; none at all is ChainNotFound.
    2. The chain's flows come from the flows' chain rules, so steps that have not happened yet show as waiting.
    3. Each message step carries its RecordLink (source key → target key) when one was written.
    """
    messages = list(
        Message.objects.filter(correlation_id=correlation_id)
        .select_related("flow__source", "flow__target")
        .order_by("created_at", "pk")
    )
    if not messages:
        raise ChainNotFound(f"no message carries correlation id '{correlation_id}'")
    links = {
        (link.flow_id, link.source_key): link
        for link in RecordLink.objects.filter(
            flow__in={m.flow_id for m in messages}, source_key__in={m.source_record_key for m in messages}
        )
    }
    by_flow: dict[int, list[Message]] = {}
    for message in messages:
        by_flow.setdefault(message.flow_id, []).append(message)
    chain = Chain(correlation_id=correlation_id)
    flows = _chain_flows([m.flow for m in messages])
    for flow in [*flows, *(m.flow for m in messages if m.flow not in flows)]:
        if any(step.flow == flow for step in chain.steps):
            continue
        rule = chain_rule(flow) or {}
        optional = bool(rule.get("optional"))
        found = [m for m in by_flow.get(flow.pk, []) if m.status != Status.DISCARDED] or by_flow.get(flow.pk, [])
        if not found:
            chain.steps.append(ChainStep(flow=flow, label=flow.name, state="waiting", optional=optional))
            continue
        for message in found:
            chain.steps.append(
                ChainStep(
                    flow=flow,
                    label=flow.name,
                    state=message.status,
                    optional=optional,
                    message=message,
                    link=links.get((flow.pk, message.source_record_key)),
                    at=message.delivered_at or message.created_at,
                )
            )
    return chain


def chain_as_dict(chain: Chain) -> dict[str, Any]:
    """The chain as JSON for the API and for tests."""
    return {
        "correlation_id": chain.correlation_id,
        "state": chain.state,
        "steps": [
            {
                "flow": step.flow.slug,
                "label": step.label,
                "state": step.state,
                "optional": step.optional,
                "message_id": step.message.pk if step.message else None,
                "source_key": step.source_key,
                "target_key": step.target_key,
                "at": step.at.isoformat() if step.at else None,
                "error": step.error,
            }
            for step in chain.steps
        ],
    }


# --- the pipeline's hook ---------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """What the scenarios add before a message is mapped: a reason to skip it, or more mapping context."""

    skip_reason: str = ""
    context: dict[str, Any] = field(default_factory=dict)


def message_prepare(*, message: Message) -> Prepared:
    """Call before mapping a message (integrations.pipeline.deliver._prepare).

    1. A flow filter (options.only_when) or an echo of our own write: skip, with the reason. While a
       forward flow is still writing this very record, TransientError: retry once its link is written.
    2. options.fetch: events that carry only a key (SAP CloudEvents) get the documents they name, read
       from the source, under payload_in["fetched"][<as>] (stored, so a retry need not read again).
       Connector errors propagate, classified, so the pipeline retries them.
    3. A flow that continues a chain: the chain's links for the mapping ($ctx.chain.<as>.source_key …),
       and the chain's correlation id on the message. A link not there yet raises TransientError (the
       event overtook the record it follows: retry per the flow's policy); an event without the key
       raises MappingError (→ failed).
    """
    from integrations.scenarios import echo  # echo reads payloads with this module's helpers

    reason = echo.message_skip_reason(message=message)
    if reason:
        return Prepared(skip_reason=reason)
    if in_flight := echo.forward_write_in_flight(message=message):
        raise errors.TransientError(in_flight)  # its RecordLink is about to say whether this is our echo
    message_fetch(message=message)
    return Prepared(context=message_link_context(message=message))


def message_fetch(*, message: Message) -> dict[str, Any]:
    """Read the documents options.fetch names from the source system into payload_in["fetched"].

    options.fetch = [{"entity": "API_OUTBOUND_DELIVERY_SRV/A_OutbDeliveryItem",
                      "key": {"DeliveryDocument": "data.OutboundDelivery"}, "as": "item", "first": true}]
    "key" maps the document's key fields to payload paths; "first" takes the first document whose
    fields match (a connector with find()), else the one document with that key (fetch()).
    """
    from integrations.systems import get_connector

    rules = message.flow.options.get("fetch") if isinstance(message.flow.options, dict) else None
    if not rules:
        return {}
    payload = message.payload_in if isinstance(message.payload_in, dict) else {}
    fetched = dict(payload.get("fetched") or {})
    missing = [rule for rule in rules if rule["as"] not in fetched]
    if not missing:
        return fetched
    connector = get_connector(message.flow.source)
    for rule in missing:
        seen = {**payload, "fetched": fetched}  # a later document may be named by an earlier one
        key = {field: payload_value(seen, path) for field, path in rule["key"].items()}
        absent = [path for field, path in rule["key"].items() if key[field] in (None, "")]
        if absent:
            raise MappingError(f"fetch {rule['as']}: the event has no {', '.join(absent)}", field="fetch")
        if rule.get("first") and hasattr(connector, "find"):
            service, _, entity_set = rule["entity"].partition("/")
            found = connector.find(service, entity_set, key)
            record = found[0] if found else None
        else:
            record = connector.fetch(entity=rule["entity"], key=key)
        if record is None:
            raise MappingError(
                f"fetch {rule['as']}: {rule['entity']} {key} does not exist at {message.flow.source}",
                field="fetch",
            )
        fetched[rule["as"]] = {k: v for k, v in record.items() if k != "__metadata"}
    message.payload_in = {**payload, "fetched": fetched}
    Message.objects.filter(pk=message.pk).update(payload_in=message.payload_in)
    return fetched
