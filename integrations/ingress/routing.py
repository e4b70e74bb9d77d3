"""Ingress: a parsed event stored for the flow it was sent to, or routed to every flow of its source system."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

from django.db import transaction

from integrations.errors import CallerError
from integrations.flow_options import FlowOptionsError
from integrations.models import Flow, Message, System
from integrations.pipeline.ingest import message_ingest
from integrations.protocols.events import InboundEvent, InboundFormat, key_fit


class RoutingError(CallerError, ValueError):
    """No flow takes the event (422): the text names what the event is about and what the flow takes."""

    default_status = 422


@dataclass(frozen=True)
class Stored:
    flow: Flow
    message: Message
    created: bool


def _event_types(flow: Flow) -> list[str]:
    """The event types a flow lists in options.event_types; options that do not fit the schema list none."""
    try:
        return list(flow.opts.event_types)
    except FlowOptionsError:  # routing never fails on one misconfigured flow; its messages name the key
        return []


def check_takes(flow: Flow, entity: str, fmt: InboundFormat) -> None:
    """A flow's endpoint refuses events about something else (a step registered on the wrong URL).

    Called with what the event says it is about before the event is parsed, so an event of another
    type is refused for its type, not for a field only the flow's own type carries.
    """
    types = _event_types(flow)
    if not entity or entity.lower() == flow.entity.lower() or entity in types:
        return
    if fmt.entity_is_flow_entity or types:
        takes = ", ".join(repr(t) for t in types) if types else repr(flow.entity)
        raise RoutingError(f"flow {flow.slug} takes {takes} events, not {entity!r}", field=fmt.entity_field or None)


def routed_flows(system: System, label: str, event: InboundEvent, fmt: InboundFormat) -> list[Flow]:
    """Every enabled flow of the source system whose entity or event_types match the event."""
    wanted = event.entity.lower()
    flows = [
        flow
        for flow in Flow.objects.select_related("source", "target").filter(source=system, enabled=True)
        if flow.entity.lower() == wanted or event.entity in _event_types(flow)
    ]
    if not flows:
        raise RoutingError(f"no enabled flow from {label} takes {event.entity!r}", field=fmt.entity_field or None)
    return flows


def event_ingest(*, event: InboundEvent, flows: list[Flow]) -> list[Stored]:
    """Store the event once per flow, in one commit: routed to two flows, it is stored for both or neither.

    (message_ingest is atomic itself: one flow needs no outer transaction, and saves two round trips.)
    """
    with transaction.atomic() if len(flows) > 1 else nullcontext():
        return [
            Stored(
                flow,
                *message_ingest(
                    flow=flow,
                    payload=event.payload,
                    idempotency_key=key_fit(event.idempotency_key),
                    source_record_key=event.source_record_key,
                    source_version=event.source_version,
                    correlation_id=event.correlation_id,
                    headers=event.headers,
                ),
            )
            for flow in flows
        ]
