"""Record keys after an endpoint's record key pointer changes: the flows' links and waiting messages follow.

A RecordLink keeps the source key its record's events had. When the pointer changes (an operator in the
admin, or a template update: the holds flow's /SalesOrderNumber became /SalesOrderNumber,/HoldCode), the next
event of an old record would get the new key and a second link, and reconciliation would report the old
link's record as missing from the hub; a repair would resend it. So each link the old pointer keyed is
re-keyed from its last message as the new pointer reads it, and so is each message not yet done with.

Only what the old pointer keyed moves: a flow whose events are keyed otherwise (a Dataverse webhook by its
PrimaryEntityId, an AX poll by the document key, a pointer that was empty) keeps its keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from django.db import transaction

from integrations.models import Flow, InboundEndpoint, Message, RecordLink
from integrations.protocols.events import EventError, pointer_key
from integrations.systems import canonical_key

# Messages still to be delivered, retried or resolved carry the key their delivery will link by.
WAITING = (*Message.DELIVERABLE, Message.Status.FAILED, Message.Status.CONFLICT)


@dataclass
class Rekeyed:
    changed: int = 0
    kept: int = 0  # keyed otherwise, or the last message lacks a field the new pointer names: the key stays
    clashes: int = 0  # another link has the new key already: both stay, for an operator to look at
    messages: int = 0  # waiting messages given their new key

    def __str__(self) -> str:
        return (
            f"{self.changed} record links re-keyed, {self.kept} kept their key, {self.clashes} clashed, "
            f"{self.messages} waiting messages re-keyed"
        )


def _flows(endpoint: InboundEndpoint) -> list[Flow]:
    """The flows whose events the endpoint's pointer keys: its flow, or its system's flows with no endpoint of
    their own."""
    if endpoint.flow_id:
        return [endpoint.flow]
    return list(Flow.objects.filter(source_id=endpoint.system_id, inbound__isnull=True))


def _key(flow: Flow, payload: Any, pointer: str) -> str | None:
    """The record key the pointer names in the payload, in the source's normal form; None if it names none."""
    try:
        key = pointer_key(payload, SimpleNamespace(record_key_pointer=pointer))
    except EventError:
        return None
    return canonical_key(flow.source.kind, key)[:255] if key else None


def rekey_links(endpoint: InboundEndpoint, *, previous: str) -> Rekeyed:
    """Move the keys the previous pointer gave the endpoint's flows' links and waiting messages to the keys
    its current pointer names."""
    result = Rekeyed()
    current = endpoint.record_key_pointer
    if not previous.strip() or not current.strip():
        return result  # keys came from elsewhere before, or will from now on: nothing says what they become
    for flow in _flows(endpoint):
        with transaction.atomic():
            taken = set(RecordLink.objects.filter(flow=flow).values_list("source_key", flat=True))
            changed = []
            links = RecordLink.objects.filter(flow=flow).select_related("last_message").order_by("pk")
            for link in links.iterator(chunk_size=2000):
                payload = link.last_message.payload_in if link.last_message else None
                new = _key(flow, payload, current)
                if new is None or _key(flow, payload, previous) != link.source_key:
                    result.kept += 1
                elif new != link.source_key and new in taken:  # every key a link had counts: no index clash
                    result.clashes += 1
                elif new != link.source_key:
                    taken.add(new)
                    link.source_key = new
                    changed.append(link)
            RecordLink.objects.bulk_update(changed, ["source_key"], batch_size=1000)
            result.changed += len(changed)
            waiting = []
            messages = Message.objects.filter(flow=flow, status__in=WAITING).only("source_record_key", "payload_in")
            for message in messages.iterator(chunk_size=2000):
                new = _key(flow, message.payload_in, current)
                if new and new != message.source_record_key == _key(flow, message.payload_in, previous):
                    message.source_record_key = new
                    waiting.append(message)
            Message.objects.bulk_update(waiting, ["source_record_key"], batch_size=1000)
            result.messages += len(waiting)
    return result
