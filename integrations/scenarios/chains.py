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

Both are typed (integrations.flow_options.ChainRule / LinkRule, read through Flow.opts) and checked on
save; docs/flow-options.md lists every key with its default.

Before such a flow maps a message, the pipeline's prepare stage (integrations.pipeline.prepare)
calls message_link_context(): it finds the followed flow's RecordLink, gives the message that
link's correlation id and hands the link's keys to the mapping (the AX purchase order number for
an F&O packing slip, say). integrations.selectors.chains reads the whole chain back for the operator.
"""

from __future__ import annotations

import re
from typing import Any

from integrations import errors
from integrations.errors import MappingError
from integrations.flow_options import ChainRule, RecordLookup
from integrations.models import Flow, Message, RecordLink
from integrations.scenarios.payloads import message_payload, payload_value


def chain_rule(flow: Flow) -> ChainRule | None:
    """The flow's options.chain (FlowOptionsError, a MappingError, when its options do not fit the schema)."""
    return flow.opts.chain


def _find_link(message: Message, rule: RecordLookup, *, where: str) -> RecordLink:
    """The followed flow's RecordLink for the key the payload carries.

    MappingError when the payload has no key; TransientError when no link has it yet.
    """
    paths = list(rule.key)
    payload = message_payload(message)  # the key may sit in a document the fetch step read
    key = next((payload_value(payload, p) for p in paths if payload_value(payload, p)), None)
    if isinstance(key, dict):  # a Dataverse lookup: {"LogicalName", "Id", "Name"}
        key = key.get("Id")
    if key in (None, ""):
        raise MappingError(
            f"{where}: none of the key paths {paths} is in the event; cannot tell which record it belongs to",
            field=where,
            path=",".join(paths),
        )
    match = rule.match  # target_key or source_key: the schema allows nothing else
    if rule.key_field:
        key = _odata_key(message, rule, str(key), where)
    link = RecordLink.objects.filter(flow__slug=rule.follows, **{match: str(key)}).order_by("-synced_at", "-pk").first()
    if link is None:
        # Events overtake each other (an order's webhook before its account's delivery): wait and retry.
        raise errors.TransientError(
            f"{where}: {key} is not linked by flow '{rule.follows}' yet (looked up by {match}); "
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


def _odata_key(message: Message, rule: RecordLookup, value: str, where: str) -> str:
    """The key as the F&O connector writes it (dataAreaId='se01',SalesOrderNumber='SO-1'), from the event."""
    from integrations.systems.finops.connector import format_key

    company = payload_value(message_payload(message), rule.company)
    if not company:
        raise MappingError(f"{where}: the event has no company at '{rule.company}'", field=where)
    return format_key(str(company).lower(), {rule.key_field: value})


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
    found: dict[str, dict[str, str]] = {}
    rule = chain_rule(message.flow)
    if rule is not None:
        link = _find_link(message, rule, where="chain")
        if link.correlation_id and message.correlation_id != link.correlation_id:
            Message.objects.filter(pk=message.pk).update(correlation_id=link.correlation_id)
            message.correlation_id = link.correlation_id
        found[rule.as_ or "order"] = _link_values(link)
    for lookup in message.flow.opts.links:
        try:
            found[lookup.as_] = _link_values(_find_link(message, lookup, where=f"links.{lookup.as_}"))
        except MappingError:
            if not lookup.optional:
                raise
            # An optional lookup without its key in the event (a contact with no account): nothing to look up.
    if not found:
        return {}
    return {"chain": found, "correlation_id": message.correlation_id}
